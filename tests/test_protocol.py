"""The protocol's helpers: mean and range over seeds, and verdicts only where seed ranges do not overlap."""

import math

import pytest

from sft_course.protocol import WITHIN_THE_SPREAD, Spread, end_change, flattened, spread, verdict


def test_spread_is_mean_low_high_and_count():
    s = spread([0.9, 0.95, 1.0])
    assert s == Spread(pytest.approx(0.95), 0.9, 1.0, 3)
    assert str(s) == "0.950 (0.900 to 1.000, 3 seeds)"
    assert s.format(".1%") == "95.0% (90.0% to 100.0%, 3 seeds)"
    assert spread([0.5]).format() == "0.500 (1 seed)"


@pytest.mark.parametrize("values", [[], [0.1, math.nan], [math.inf]])
def test_spread_refuses_empty_or_non_finite_values(values):
    with pytest.raises(ValueError, match="spread needs"):
        spread(values)


def test_separate_ranges_give_a_winner_either_way_round():
    assert verdict([0.9, 0.95, 0.92], [0.3, 0.46, 0.4], names=("LoRA", "full")) == "LoRA beats full"
    assert verdict([0.3, 0.46, 0.4], [0.9, 0.95, 0.92], names=("LoRA", "full")) == "full beats LoRA"


def test_lower_is_better_turns_the_verdict_round():
    assert verdict([3.1, 3.2], [5.0, 6.0], names=("LoRA", "full"), higher_is_better=False) == "LoRA beats full"
    assert verdict([5.0, 6.0], [3.1, 3.2], names=("LoRA", "full"), higher_is_better=False) == "full beats LoRA"


@pytest.mark.parametrize("a, b", [([0.3, 0.5], [0.45, 0.9]), ([0.1, 0.9], [0.4, 0.5]), ([0.5, 0.6], [0.6, 0.7])])
def test_overlapping_or_touching_ranges_are_within_the_spread(a, b):
    assert verdict(a, b) == WITHIN_THE_SPREAD == "within the spread"


def test_one_seed_gives_no_verdict():
    with pytest.raises(ValueError, match="at least 2 seeds per side; full has 1"):
        verdict([0.9, 0.91], [0.3], names=("LoRA", "full"))
    with pytest.raises(ValueError, match="two names"):
        verdict([0.9, 0.91], [0.3, 0.2], names=("a", "b", "c"))


def test_end_change_is_the_move_between_the_last_two_points():
    assert end_change([(100, 0.2), (200, 0.9), (300, 0.92)]) == pytest.approx(0.02)
    assert end_change([(1, 0.5), (2, 0.4)]) == pytest.approx(-0.1)


def test_flattened_compares_the_last_move_with_a_tolerance():
    assert flattened([(100, 0.2), (200, 0.9), (300, 0.92)], tolerance=0.02)
    assert not flattened([(100, 0.2), (200, 0.8), (300, 0.9)], tolerance=0.02)
    assert flattened([(1, 3.0), (2, 3.01)], tolerance=0.02)  # a small move either way counts as flat


@pytest.mark.parametrize(
    "curve, message",
    [
        ([(1, 0.5)], "at least 2 points"),
        ([(2, 0.5), (1, 0.6)], "increasing steps"),
        ([(1, 0.5), (2, math.nan)], "finite"),
    ],
)
def test_end_change_refuses_a_curve_it_cannot_read(curve, message):
    with pytest.raises(ValueError, match=message):
        end_change(curve)


def test_flattened_refuses_a_negative_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        flattened([(1, 0.5), (2, 0.5)], tolerance=-0.1)
