"""The experiment protocol of notebooks 04-09: a metric over seeds as mean and range, and the verdict from it.

A difference between two methods is called one only when their seed ranges do not overlap; otherwise the
verdict says "within the spread". Notebooks print `Spread` values and `verdict` strings, so the prose can
quote what the code decided. Whether a run trained long enough is read from its curve: `end_change` is how much the
metric moved between the curve's last two points, and `flattened` compares that move with a tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

WITHIN_THE_SPREAD = "within the spread"


class Spread(NamedTuple):
    """A metric over seeds: its mean, lowest and highest value, and how many seeds."""

    mean: float
    low: float
    high: float
    seeds: int

    def format(self, spec: str = ".3f") -> str:
        """'0.918 (0.900 to 0.940, 3 seeds)'; one seed: '0.918 (1 seed)'."""
        if self.seeds == 1:
            return f"{self.mean:{spec}} (1 seed)"
        return f"{self.mean:{spec}} ({self.low:{spec}} to {self.high:{spec}}, {self.seeds} seeds)"

    def __str__(self) -> str:
        return self.format()


def spread(values: Sequence[float]) -> Spread:
    """The mean and range of `values` (one number per seed); a clear error for none or a non-finite value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread needs at least one value (one per seed), got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"spread needs finite values, got {values}")
    return Spread(sum(values) / len(values), min(values), max(values), len(values))


def verdict(
    a_values: Sequence[float],
    b_values: Sequence[float],
    names: Sequence[str] = ("A", "B"),
    higher_is_better: bool = True,
) -> str:
    """'A beats B' (or 'B beats A') when the seed ranges do not overlap, else 'within the spread'.

    `a_values` and `b_values` hold one number per seed (at least 2 each: one seed has no range);
    `higher_is_better=False` for a loss, a perplexity or forgetting. Ranges that touch count as overlapping.
    """
    if len(names) != 2:
        raise ValueError(f"names must be two names (A, B), got {list(names)}")
    for name, values in zip(names, (a_values, b_values)):
        if len(values) < 2:
            raise ValueError(f"verdict needs at least 2 seeds per side; {name} has {len(values)}")
    a, b = spread(a_values), spread(b_values)
    if a.low > b.high:
        winner, loser = (names[0], names[1]) if higher_is_better else (names[1], names[0])
    elif b.low > a.high:
        winner, loser = (names[1], names[0]) if higher_is_better else (names[0], names[1])
    else:
        return WITHIN_THE_SPREAD
    return f"{winner} beats {loser}"


def end_change(curve: Sequence[tuple[float, float]]) -> float:
    """How much a metric moved between the last two points of `curve`, a list of (step, value) in step order."""
    if len(curve) < 2:
        raise ValueError(f"end_change needs a curve of at least 2 points (step, value), got {len(curve)}")
    steps = [float(s) for s, _ in curve]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"end_change needs a curve in increasing steps, got steps {steps}")
    values = [float(v) for _, v in curve]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"end_change needs finite values, got {values}")
    return values[-1] - values[-2]


def flattened(curve: Sequence[tuple[float, float]], tolerance: float) -> bool:
    """Whether the metric moved by at most `tolerance` (either way) between the last two points of `curve`; a move
    equal to the tolerance up to float rounding (0.92 - 0.90 is 0.020000000000000018) counts as at most."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be 0 or more, got {tolerance}")
    return abs(end_change(curve)) <= tolerance + 1e-12
