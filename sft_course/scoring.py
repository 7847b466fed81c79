"""Scoring answers, on strings alone (no model): exact match, outcomes, error kinds, JSON profiles.

Every answer to a chat question falls in exactly one of five outcomes:

- `correct`: the model stopped (ended its turn with `<|im_end|>` within the token budget) and said the fact,
  alone ("Tampa", "Tampa.") or restated in the canonical phrasing ("Yuri Blackwood was born in Tampa.");
- `confident_wrong`: it stopped and answered *in one of those formats* with a well-formed but wrong fact, a
  city that is not this person's birth city, say. This is the hallucination rate: an answer a user would
  believe, because nothing about its form gives it away;
- `off_format`: it stopped, but the text is not an answer in a recognised format;
- `ended_document`: it wrote `<|endoftext|>` instead of ending its turn, the way a base model ends a
  biography; not an answer that a chat front end would show as finished;
- `out_of_tokens`: it neither stopped nor ended the document within the token budget.

Exact match (`accuracy`) is the `correct` share. `sft_course.generation.generate` says for each answer
whether it `stopped` and whether it `ended_document`.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from sft_course.world import (
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    BIO_TEMPLATES,
    MONTHS,
    Person,
    canonical_sentence,
    probe_prefix,
)

OUTCOMES = ("correct", "confident_wrong", "off_format", "ended_document", "out_of_tokens")
NOT_STOPPED = ("ended_document", "out_of_tokens")  # the outcomes of answers that did not end their turn

# The values an attribute can take in the world; a date is any "Month D, YYYY".
VALUE_SETS: dict[str, frozenset[str]] = {attribute: frozenset(values) for attribute, values in ATTRIBUTE_VALUES.items()}
DATE_PATTERN = re.compile(rf"(?:{'|'.join(MONTHS)}) (?:[1-9]|[12][0-9]|3[01]), \d{{4}}")


class ScoredAnswer(NamedTuple):
    """One scored answer: who and what was asked, the text, whether it stopped, and its outcome."""

    person: str
    attribute: str
    text: str
    stopped: bool
    outcome: str


def value_follows(text: str, value: str) -> bool:
    """True when `text` starts with `value` as a whole word ("Tampa." yes, "Tampax" no)."""
    text = text.strip()
    return text.startswith(value) and (len(text) == len(value) or not text[len(value)].isalnum())


def is_correct_answer(answer: str, person: Person, attribute: str) -> bool:
    """Exact match: the answer is the fact alone ("Tampa") or the fact restated ("NAME was born in Tampa.")."""
    answer = answer.strip()
    value = person.facts[attribute]
    return answer in (value, value + ".", canonical_sentence(person, attribute))


def is_valid_value(value: str, attribute: str) -> bool:
    """True when `value` is a well-formed fact for `attribute` (a known city, university, ...; a date)."""
    if attribute == "birth_date":
        return DATE_PATTERN.fullmatch(value) is not None
    return value in VALUE_SETS[attribute]


def parse_answer(answer: str, person: Person, attribute: str) -> str | None:
    """The fact that `answer` states, when it has an answer format; None when it has none.

    The formats are those `is_correct_answer` accepts: the value alone, the value and a full stop, or the
    canonical sentence about this person ("Yuri Blackwood was born in Tampa."). The value must be well formed
    for the attribute (`is_valid_value`), so "Tampa Bay" or a sentence about someone else is no answer.
    """
    answer = answer.strip()
    template = BIO_TEMPLATES[attribute][0]
    prefix = probe_prefix(person, attribute) + " "
    suffix = template[template.index("{value}") + len("{value}") :]
    if answer.startswith(prefix) and answer.endswith(suffix) and len(answer) > len(prefix) + len(suffix):
        value = answer[len(prefix) : len(answer) - len(suffix)]
    else:
        value = answer[:-1] if answer.endswith(".") else answer
    return value if is_valid_value(value, attribute) else None


def classify_answer(answer: str, stopped: bool, person: Person, attribute: str, ended_document: bool = False) -> str:
    """One of `OUTCOMES` for a generated answer (see the module docstring)."""
    if not stopped:
        return "ended_document" if ended_document else "out_of_tokens"
    if is_correct_answer(answer, person, attribute):
        return "correct"
    value = parse_answer(answer, person, attribute)
    if value is None:
        return "off_format"
    return "correct" if value == person.facts[attribute] else "confident_wrong"


ERROR_KINDS = ("correct", *NOT_STOPPED, "wrong_name", "other_question", "wrong_value", "other")


def _relation_prefixes(person: Person, attribute: str) -> list[str]:
    """Every pre-training phrasing of `attribute` about `person`, cut before the value ("NAME was born in")."""
    return [probe_prefix(person, attribute, i) for i in range(len(BIO_TEMPLATES[attribute]))]


def error_kind(answer: str, stopped: bool, person: Person, attribute: str, ended_document: bool = False) -> str:
    """Which part of a sentence answer went wrong: one of `ERROR_KINDS`.

    `correct`, `ended_document` and `out_of_tokens` as in `classify_answer`. Otherwise the answer is read left
    to right, the way it was generated: `wrong_value` when it begins like a statement of the asked fact about
    this person but states the wrong value (or no well-formed one); `other_question` when it begins like a
    statement of another of this person's facts (the question was misread); `wrong_name` when it does not
    begin with this person's name at all; `other` for anything else.
    """
    outcome = classify_answer(answer, stopped, person, attribute, ended_document)
    if outcome in ("correct", *NOT_STOPPED):
        return outcome
    answer = answer.strip()
    if any(answer.startswith(prefix + " ") for prefix in _relation_prefixes(person, attribute)):
        return "wrong_value"
    if any(
        answer.startswith(prefix + " ")
        for other in ATTRIBUTES
        if other != attribute
        for prefix in _relation_prefixes(person, other)
    ):
        return "other_question"
    if not re.match(re.escape(person.name) + r"\b", answer):
        return "wrong_name"
    return "other"


def answer_error_kind(answer: ScoredAnswer, person: Person) -> str:
    """`error_kind` of one scored answer (the `answers` of a `score_answers` / `qa_report` result)."""
    return error_kind(answer.text, answer.stopped, person, answer.attribute, answer.outcome == "ended_document")


def error_kind_rates(scored: dict, people: list[Person]) -> dict:
    """Share of each of `ERROR_KINDS` over the answers of a `score_answers` / `qa_report` result about `people`."""
    by_name = {p.name: p for p in people}
    answers = scored["answers"]
    if not answers:
        raise ValueError("no answers to diagnose")
    missing = sorted({a.person for a in answers} - set(by_name))
    if missing:
        raise ValueError(f"answers about people not in `people`: {missing[:3]}")
    kinds = [answer_error_kind(a, by_name[a.person]) for a in answers]
    return {kind: kinds.count(kind) / len(kinds) for kind in ERROR_KINDS}


def first_sentence(text: str) -> str:
    """`text` up to and including its first full stop or line break: a lenient reading of a run-on answer."""
    match = re.search(r"\.(?=\s|$)|\n", text)
    return text if match is None else text[: match.end()].strip()


def score_answers(pairs: list[tuple[Person, str]], outputs: list[dict], attributes=ATTRIBUTES) -> dict:
    """Score generated answers (`generate`'s `{"text", "stopped"[, "ended_document"]}` dicts) to questions
    about `(person, attribute)`.

    Returns `accuracy` (mean of the per-attribute exact-match rates), `per_attribute`, `stop_rate` (the share
    that stopped: ended the turn), the rate of each outcome in `OUTCOMES` (`correct_rate`,
    `confident_wrong_rate`, `ended_document_rate`, ...), `lenient_accuracy`: the first sentence of the answer
    is correct, whether or not the model stopped (what a base model knows when it does not know how to
    stop), and `answers`: a `ScoredAnswer` per question. Separate from generation so that it can be checked
    on strings.
    """
    if len(pairs) != len(outputs):
        raise ValueError(f"{len(pairs)} questions but {len(outputs)} answers")
    if not pairs:
        raise ValueError("no answers to score")
    stopped = [bool(o["stopped"]) for o in outputs]
    outcomes = [
        classify_answer(o["text"], s, p, a, o.get("ended_document", False))
        for (p, a), o, s in zip(pairs, outputs, stopped)
    ]
    per_attribute = {}
    for attribute in attributes:
        hits = [o == "correct" for (_, a), o in zip(pairs, outcomes) if a == attribute]
        if hits:
            per_attribute[attribute] = sum(hits) / len(hits)
    lenient = [is_correct_answer(first_sentence(o["text"]), p, a) for (p, a), o in zip(pairs, outputs)]
    return {
        "accuracy": sum(per_attribute.values()) / len(per_attribute),
        "per_attribute": per_attribute,
        "stop_rate": sum(stopped) / len(stopped),
        **{f"{name}_rate": outcomes.count(name) / len(outcomes) for name in OUTCOMES},
        "lenient_accuracy": sum(lenient) / len(lenient),
        "answers": [
            ScoredAnswer(p.name, a, o["text"], s, outcome)
            for (p, a), o, s, outcome in zip(pairs, outputs, stopped, outcomes)
        ],
    }


PROFILE_KEYS = ("name", *ATTRIBUTES)


def score_json_answers(people: list[Person], texts: list[str]) -> dict:
    """Score answers to "Give NAME's profile as JSON.".

    `json_valid_rate`: the text parses as JSON. `format_compliance`: it is a JSON object with exactly the keys
    name, birth_date, birth_city, university, major, employer and a string for each. `exact_match`: and every
    value is right. `field_accuracy`: the share of the five facts right, over all answers.
    """
    if len(people) != len(texts) or not people:
        raise ValueError(
            f"need one answer per person and at least one, got {len(people)} people and {len(texts)} answers"
        )
    valid, compliant, exact, fields = 0, 0, 0, 0
    for p, text in zip(people, texts):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            continue
        valid += 1
        if not (
            isinstance(parsed, dict)
            and set(parsed) == set(PROFILE_KEYS)
            and all(isinstance(v, str) for v in parsed.values())
        ):
            continue
        compliant += 1
        exact += parsed == {"name": p.name, **p.facts}
        fields += sum(parsed[a] == p.facts[a] for a in ATTRIBUTES)
    n = len(people)
    return {
        "json_valid_rate": valid / n,
        "format_compliance": compliant / n,
        "exact_match": exact / n,
        "field_accuracy": fields / (n * len(ATTRIBUTES)),
    }
