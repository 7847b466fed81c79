"""Scoring of probes and answers: what counts as knowing a fact and as answering it exactly."""

import pytest

from sft_course.probes import is_correct_answer, value_follows
from sft_course.world import make_world


@pytest.fixture(scope="module")
def person():
    return make_world(n_people=10).people[0]


@pytest.mark.parametrize("text,ok", [(" Tampa.", True), ("Tampa", True), (" Tampa, then", True),
                                     (" Tampax", False), (" Denver.", False), ("", False)])
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
