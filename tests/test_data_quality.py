"""Data-quality transforms: label noise and one-template rewriting change exactly what they say."""

import copy
from collections import defaultdict

import pytest

from sft_course.data_quality import add_label_noise, noisy_label_detection, one_template, wrong_value
from sft_course.experiment import training_rows
from sft_course.scoring import classify_answer, is_valid_value
from sft_course.world import ATTRIBUTES, make_world

PEOPLE = {p.name: p for p in make_world().people}


@pytest.fixture(scope="module", params=["sentence", "short"])
def rows(request):
    return training_rows(request.param, n_people=40)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_label_noise_corrupts_exactly_the_asked_share_of_facts(rows, fraction):
    before = copy.deepcopy(rows)
    noisy, report = add_label_noise(rows, fraction, seed=3)
    assert rows == before  # the input is not modified
    facts = {(r["person"], r["attribute"]) for r in rows}
    assert report["facts"] == len(facts) == 200
    assert report["noisy_facts"] == round(fraction * len(facts))
    assert report["rows"] == len(noisy) == len(rows)
    assert report["noisy_rows"] == sum(r.get("noisy", False) for r in noisy)
    values = defaultdict(set)
    for old, new in zip(rows, noisy):
        assert new["instruction"] == old["instruction"] and new["person"] == old["person"]
        values[(new["person"], new["attribute"])].add(new["answer"])
        if new.get("noisy"):
            person = PEOPLE[new["person"]]
            assert new["true_answer"] == old["answer"] == person.facts[new["attribute"]]
            assert new["answer"] != old["answer"] and is_valid_value(new["answer"], new["attribute"])
            # the corrupted response is a well-formed answer with a wrong fact: a confident wrong answer
            assert classify_answer(new["response"], True, person, new["attribute"]) == "confident_wrong"
        else:
            assert new == old
    assert all(len(v) == 1 for v in values.values())  # every paraphrase of a fact gets the same label
    assert sum(v != {PEOPLE[n].facts[a]} for (n, a), v in values.items()) == report["noisy_facts"]


def test_label_noise_is_seeded(rows):
    assert add_label_noise(rows, 0.3, seed=1) == add_label_noise(rows, 0.3, seed=1)
    assert add_label_noise(rows, 0.3, seed=1)[0] != add_label_noise(rows, 0.3, seed=2)[0]


def test_label_noise_refuses_bad_input():
    with pytest.raises(ValueError, match="between 0 and 1"):
        add_label_noise([], 1.5)
    with pytest.raises(ValueError, match="row 0 lacks"):
        add_label_noise([{"instruction": "Hi", "response": "Hello"}], 0.5)


def test_one_template_keeps_rows_and_answers_and_drops_diversity(rows):
    out, report = one_template(rows)
    assert len(out) == len(rows) == report["rows"]
    assert [(r["person"], r["attribute"], r["response"]) for r in out] == [
        (r["person"], r["attribute"], r["response"]) for r in rows
    ]
    assert {r["paraphrase"] for r in out} == {0}
    assert report["distinct_instructions_after"] == 40 * len(ATTRIBUTES)
    assert report["distinct_instructions_before"] == 3 * report["distinct_instructions_after"]
    assert report["rewritten"] == sum(r["paraphrase"] != 0 for r in rows) > 0


def test_wrong_value_differs_and_is_well_formed():
    import random

    rng = random.Random(0)
    for attribute in ATTRIBUTES:
        for _ in range(50):
            v = wrong_value(attribute, "Tampa", rng)
            assert v != "Tampa" and is_valid_value(v, attribute)


def test_noisy_label_detection_scores_the_highest_loss_rows():
    rows = [{"noisy": True}, {}, {"noisy": True}, {}, {}]
    losses = [3.0, 1.0, 0.5, 2.0, 1.5]
    report = noisy_label_detection(rows, losses, n_flagged=2)
    assert report["flagged"] == [0, 3]
    assert report["precision"] == 0.5 and report["noisy_share"] == 0.4
    assert report["noisy_loss"] == 1.75 and report["clean_loss"] == 1.5
    with pytest.raises(ValueError, match="5 rows but 4 losses"):
        noisy_label_detection(rows, losses[:4], 2)
    with pytest.raises(ValueError, match="n_flagged"):
        noisy_label_detection(rows, losses, 0)
    with pytest.raises(ValueError, match="both noisy and clean"):
        noisy_label_detection([{}, {}], [1.0, 2.0], 1)
