"""Scoring answers on strings: exact match, the five outcomes, error kinds, named answers, JSON profiles."""

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sft_course.data_quality import wrong_value
from sft_course.scoring import (
    ERROR_KINDS,
    OUTCOMES,
    ScoredAnswer,
    classify_answer,
    error_kind,
    error_kind_rates,
    first_sentence,
    is_correct_answer,
    is_valid_value,
    parse_answer,
    score_answers,
    score_json_answers,
    value_follows,
)
from sft_course.world import ATTRIBUTES, canonical_sentence, make_world, profile_json

WORLD = make_world()
PEOPLE = WORLD.people[:20]


def pairs_of(people):
    return [(p, a) for a in ATTRIBUTES for p in people]


@pytest.fixture(scope="module")
def person():
    return PEOPLE[0]


@pytest.mark.parametrize(
    "text,ok",
    [(" Tampa.", True), ("Tampa", True), (" Tampa, then", True), (" Tampax", False), (" Denver.", False), ("", False)],
)
def test_value_follows_needs_the_whole_value_as_a_word(text, ok):
    assert value_follows(text, "Tampa") is ok


def test_exact_answer_is_the_value_alone_or_the_canonical_sentence(person):
    city = person.facts["birth_city"]
    assert is_correct_answer(city, person, "birth_city")
    assert is_correct_answer(f" {city}.", person, "birth_city")
    assert is_correct_answer(f"{person.name} was born in {city}.", person, "birth_city")


def test_answers_with_extra_text_or_another_fact_are_wrong(person):
    city = person.facts["birth_city"]
    assert not is_correct_answer(f"{person.name} was born in {city}. {person.name} studied at", person, "birth_city")
    assert not is_correct_answer("Somewhere", person, "birth_city")
    assert not is_correct_answer(f"{person.name} is a native of {city}.", person, "birth_city")  # not canonical


def test_a_model_that_answers_perfectly_scores_one():
    pairs = pairs_of(PEOPLE)
    sentences = [{"text": canonical_sentence(p, a), "stopped": True} for p, a in pairs]
    short = [{"text": p.facts[a], "stopped": True} for p, a in pairs]
    for outputs in (sentences, short):
        s = score_answers(pairs, outputs)
        assert s["accuracy"] == s["correct_rate"] == s["stop_rate"] == s["lenient_accuracy"] == 1.0
        assert s["per_attribute"] == {a: 1.0 for a in ATTRIBUTES}
        assert s["confident_wrong_rate"] == s["off_format_rate"] == s["ended_document_rate"] == 0.0
        assert s["out_of_tokens_rate"] == 0.0


def test_right_text_without_a_stop_is_not_correct_but_is_lenient_correct():
    pairs = pairs_of(PEOPLE[:4])
    run_on = [
        {"text": canonical_sentence(p, a) + " " + canonical_sentence(p, "major"), "stopped": False} for p, a in pairs
    ]
    s = score_answers(pairs, run_on)
    assert s["accuracy"] == 0.0 and s["out_of_tokens_rate"] == 1.0 and s["stop_rate"] == 0.0
    assert s["lenient_accuracy"] == 1.0


def test_ending_the_document_is_not_stopping_and_is_counted_as_such():
    pairs = pairs_of(PEOPLE[:2])
    doc_end = [
        {"text": canonical_sentence(p, a), "stopped": False, "ended_document": True, "stop_token": "<|endoftext|>"}
        for p, a in pairs
    ]
    turn_end = [dict(o, stopped=True, ended_document=False, stop_token="<|im_end|>") for o in doc_end]
    s = score_answers(pairs, doc_end)
    assert s["ended_document_rate"] == 1.0 and s["out_of_tokens_rate"] == 0.0
    assert s["stop_rate"] == 0.0 and s["accuracy"] == 0.0 and s["lenient_accuracy"] == 1.0
    assert {a.outcome for a in s["answers"]} == {"ended_document"}
    assert score_answers(pairs, turn_end)["accuracy"] == score_answers(pairs, turn_end)["stop_rate"] == 1.0


def test_outcomes_of_typical_answers():
    p = PEOPLE[0]
    city = p.facts["birth_city"]
    other_city = next(c for c in ("Tampa", "Denver") if c != city)
    assert classify_answer(city, True, p, "birth_city") == "correct"
    assert classify_answer(f"{city}.", True, p, "birth_city") == "correct"
    assert classify_answer(f"{p.name} was born in {city}.", True, p, "birth_city") == "correct"
    assert classify_answer(other_city, True, p, "birth_city") == "confident_wrong"
    assert classify_answer(f"{p.name} was born in {other_city}.", True, p, "birth_city") == "confident_wrong"
    assert classify_answer(f"{p.name} was born in {city}.", False, p, "birth_city") == "out_of_tokens"
    assert (
        classify_answer(f"{p.name} was born in {city}.", False, p, "birth_city", ended_document=True)
        == "ended_document"
    )
    assert classify_answer("I do not know.", True, p, "birth_city") == "off_format"
    assert classify_answer(f"{city} Bay", True, p, "birth_city") == "off_format"  # not a city of the world
    assert classify_answer(f"{PEOPLE[1].name} was born in {other_city}.", True, p, "birth_city") == "off_format"
    assert classify_answer(f"{p.name} was born on {city}.", True, p, "birth_city") == "off_format"  # wrong template


def test_mixed_answers_give_the_expected_rates():
    p, q = PEOPLE[0], PEOPLE[1]
    pairs = [(p, "employer"), (q, "employer"), (p, "major"), (q, "major")]
    wrong_major = wrong_value("major", q.facts["major"], random.Random(0))
    outputs = [
        {"text": p.facts["employer"], "stopped": True},
        {"text": "Hmm", "stopped": True},
        {"text": canonical_sentence(p, "major"), "stopped": True},
        {"text": wrong_major, "stopped": True},
    ]
    s = score_answers(pairs, outputs, attributes=("employer", "major"))
    assert s["per_attribute"] == {"employer": 0.5, "major": 0.5}
    assert (s["correct_rate"], s["confident_wrong_rate"], s["off_format_rate"]) == (0.5, 0.25, 0.25)
    assert sum(s[f"{o}_rate"] for o in OUTCOMES) == pytest.approx(1.0)


def test_score_answers_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        score_answers(pairs_of(PEOPLE[:1])[:2], [{"text": "x", "stopped": True}])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(WORLD.people), st.sampled_from(ATTRIBUTES), st.integers(0, 2**32 - 1), st.booleans())
def test_any_well_formed_wrong_fact_is_confident_wrong(person, attribute, seed, sentence):
    value = wrong_value(attribute, person.facts[attribute], random.Random(seed))
    assert is_valid_value(value, attribute) and value != person.facts[attribute]
    text = canonical_sentence(person, attribute).replace(person.facts[attribute], value) if sentence else value
    assert parse_answer(text, person, attribute) == value
    assert classify_answer(text, True, person, attribute) == "confident_wrong"
    assert classify_answer(canonical_sentence(person, attribute), True, person, attribute) == "correct"


def test_first_sentence():
    assert first_sentence("Ann was born in Tampa. Ann works for Sony.") == "Ann was born in Tampa."
    assert first_sentence("Tampa\nAnn works") == "Tampa"
    assert first_sentence("May 3, 1960") == "May 3, 1960"


def test_scored_answers_have_named_fields_and_still_unpack():
    p = PEOPLE[0]
    s = score_answers([(p, "birth_city")], [{"text": p.facts["birth_city"], "stopped": True}])
    answer = s["answers"][0]
    assert isinstance(answer, ScoredAnswer)
    assert (answer.person, answer.attribute, answer.text, answer.stopped, answer.outcome) == (
        p.name,
        "birth_city",
        p.facts["birth_city"],
        True,
        "correct",
    )
    name, attribute, text, stopped, outcome = answer
    assert outcome == answer.outcome


def test_json_scoring_separates_valid_compliant_and_exact():
    p, q, r, s = PEOPLE[:4]
    broken_value = json.loads(profile_json(r))
    broken_value["employer"] = wrong_value("employer", r.facts["employer"], random.Random(1))
    texts = [
        profile_json(p),  # exact
        json.dumps({"name": q.name}),  # valid JSON, wrong keys
        json.dumps(broken_value),  # compliant, one field wrong
        profile_json(s)[:-1],  # truncated: not JSON
    ]
    out = score_json_answers([p, q, r, s], texts)
    assert out["json_valid_rate"] == 0.75
    assert out["format_compliance"] == 0.5
    assert out["exact_match"] == 0.25
    assert out["field_accuracy"] == pytest.approx((5 + 4) / 20)


def test_json_list_or_numbers_are_not_compliant():
    p = PEOPLE[0]
    as_list = json.dumps(list(json.loads(profile_json(p)).values()))
    numbers = json.dumps({"name": p.name, **{a: 1 for a in ATTRIBUTES}})
    assert score_json_answers([p, p], [as_list, numbers])["format_compliance"] == 0.0


def test_error_kind_says_which_part_of_the_answer_went_wrong():
    p, other = PEOPLE[0], PEOPLE[1]
    city, date = p.facts["birth_city"], p.facts["birth_date"]
    other_city = next(c for c in ("Tampa", "Denver") if c != city)
    assert error_kind(f"{p.name} was born in {city}.", True, p, "birth_city") == "correct"
    assert error_kind(f"{p.name} was born in {city}.", False, p, "birth_city") == "out_of_tokens"
    assert error_kind(f"{p.name} was born in {city}.", False, p, "birth_city", ended_document=True) == "ended_document"
    assert error_kind(f"{p.name} was born in {other_city}.", True, p, "birth_city") == "wrong_value"
    assert error_kind(f"{p.name} is a native of {other_city}.", True, p, "birth_city") == "wrong_value"
    assert error_kind(f"{p.name} was born in Tampa Bay.", True, p, "birth_city") == "wrong_value"  # no such city
    assert error_kind(f"{p.name} was born on {date}.", True, p, "birth_city") == "other_question"
    assert error_kind(f"{p.name} works for {p.facts['employer']}.", True, p, "birth_city") == "other_question"
    assert error_kind(f"{other.name} was born in {city}.", True, p, "birth_city") == "wrong_name"
    assert error_kind(f"{p.name} likes long walks.", True, p, "birth_city") == "other"
    assert error_kind(f"{p.name}.", True, p, "birth_city") == "other"
    assert error_kind(f"{p.name}son was born in {city}.", True, p, "birth_city") == "wrong_name"


def test_error_kind_rates_cover_every_answer_and_name_unknown_people():
    pairs = [(p, a) for a in ("birth_city", "employer") for p in PEOPLE[:2]]
    texts = [
        canonical_sentence(PEOPLE[0], "birth_city"),
        f"{PEOPLE[0].name} majored in Music.",
        canonical_sentence(PEOPLE[1], "employer"),
        f"{PEOPLE[1].name} likes tea.",
    ]
    outputs = [{"text": t, "stopped": True} for t in texts]
    # pairs order: (p0, city), (p1, city), (p0, employer), (p1, employer)
    rates = error_kind_rates(score_answers(pairs, outputs), PEOPLE[:2])
    assert set(rates) == set(ERROR_KINDS)
    assert math.isclose(sum(rates.values()), 1.0)
    assert rates["correct"] == 0.25  # only (p0, city) is right
    assert rates["wrong_name"] == 0.5  # p0's name in the answer about p1, and p1's in the answer about p0
    assert rates["other"] == 0.25  # the right name, then no statement of a fact
    with pytest.raises(ValueError, match=PEOPLE[1].name):
        error_kind_rates(score_answers(pairs, outputs), PEOPLE[:1])
