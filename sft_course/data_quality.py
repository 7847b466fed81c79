"""Controlled damage to SFT data, for the data-quality experiments of notebook 05.

Each transform takes training rows (dicts with `instruction`, `response`, `person`, `attribute`, `paraphrase`,
`answer`, as in `data/sft/train_*.jsonl`), returns new rows (the input is never modified) and a report that
counts what it changed, so an experiment can say exactly how much damage it did.

- `add_label_noise`: a share of the facts answered with a wrong but well-formed value (a wrong city, ...),
  the way a careless annotator or a stale source produces confident, wrong labels.
- `one_template`: every question rewritten to one wording; same rows, same facts, less diversity.

`noisy_label_detection` scores the cheap fix: rank rows by a model's loss (`evaluation.text_losses`) and
see how many of the highest-loss rows are the corrupted ones.
"""

from __future__ import annotations

import random

from sft_course.world import ATTRIBUTE_VALUES, ATTRIBUTES, QUESTION_TEMPLATES, make_world, random_date


def wrong_value(attribute: str, true_value: str, rng: random.Random) -> str:
    """A well-formed value for `attribute` that differs from `true_value` (a date for birth_date)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}: expected one of {ATTRIBUTES}")
    while True:
        value = random_date(rng) if attribute == "birth_date" else rng.choice(ATTRIBUTE_VALUES[attribute])
        if value != true_value:
            return value


def _fact_rows(rows: list[dict]) -> list[dict]:
    for i, row in enumerate(rows):
        missing = [k for k in ("instruction", "response", "person", "attribute", "answer") if k not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing}: the transforms need the metadata of data/sft/train_*.jsonl")
        if row["attribute"] not in ATTRIBUTES:
            raise ValueError(f"row {i} asks about {row['attribute']!r}, not one fact ({ATTRIBUTES})")
    return rows


def _with_answer(row: dict, value: str, index: int) -> dict:
    """The row answered with `value` instead of its answer, in the same style (bare value or sentence)."""
    response, answer = row["response"], row["answer"]
    if response == answer:
        new_response = value
    elif response.count(answer) == 1:
        new_response = response.replace(answer, value)
    else:
        raise ValueError(f"row {index}: cannot find the answer {answer!r} exactly once in the response {response!r}")
    return {**row, "response": new_response, "answer": value, "true_answer": answer, "noisy": True}


def add_label_noise(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], dict]:
    """Replace the answer of `fraction` of the facts by a wrong, well-formed value; return `(rows, report)`.

    The unit is a fact, a (person, attribute) pair: every row about a corrupted fact (all its question
    paraphrases) gets the same wrong value, as when the source of the labels is wrong rather than one row
    mistyped. Corrupted rows carry `"noisy": True` and the `true_answer`. The report counts `facts`,
    `noisy_facts`, `rows` and `noisy_rows`.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    rows = _fact_rows(rows)
    facts = sorted({(r["person"], r["attribute"]) for r in rows})
    rng = random.Random(seed)
    chosen = rng.sample(facts, round(fraction * len(facts)))
    true_values = {(r["person"], r["attribute"]): r["answer"] for r in rows}
    wrong = {fact: wrong_value(fact[1], true_values[fact], rng) for fact in chosen}
    out = [
        _with_answer(r, wrong[(r["person"], r["attribute"])], i) if (r["person"], r["attribute"]) in wrong else dict(r)
        for i, r in enumerate(rows)
    ]
    report = {
        "facts": len(facts),
        "noisy_facts": len(wrong),
        "rows": len(out),
        "noisy_rows": sum(bool(r.get("noisy")) for r in out),
    }
    return out, report


def one_template(rows: list[dict], paraphrase: int = 0) -> tuple[list[dict], dict]:
    """Rewrite every question to trained wording `paraphrase` of its attribute; return `(rows, report)`.

    Same number of rows, same people and answers, same training compute: only the diversity of the
    instructions drops. The report counts `rows`, `rewritten` and `distinct_instructions` before and after.
    """
    rows = _fact_rows(rows)
    people = {p.name: p for p in make_world().people}
    out, rewritten = [], 0
    for i, r in enumerate(rows):
        if r["person"] not in people:
            raise ValueError(f"row {i}: {r['person']!r} is not a person of the world")
        templates = QUESTION_TEMPLATES[r["attribute"]]["trained"]
        if not 0 <= paraphrase < len(templates):
            raise ValueError(f"paraphrase must be below {len(templates)}, got {paraphrase}")
        instruction = templates[paraphrase].format(name=r["person"])
        rewritten += instruction != r["instruction"]
        out.append({**r, "instruction": instruction, "paraphrase": paraphrase, "question_kind": "trained"})
    report = {
        "rows": len(out),
        "rewritten": rewritten,
        "distinct_instructions_before": len({r["instruction"] for r in rows}),
        "distinct_instructions_after": len({r["instruction"] for r in out}),
    }
    return out, report


def noisy_label_detection(rows: list[dict], losses: list[float], n_flagged: int) -> dict:
    """How well a per-row loss finds the corrupted rows (`"noisy": True`) of `add_label_noise`.

    The `n_flagged` rows of highest loss are flagged (ties keep row order). Returns `flagged` (their indices,
    highest loss first), `precision` (the share of flagged rows that are noisy), `noisy_share` (what a random
    pick would get), and the mean loss of the `noisy_loss` and `clean_loss` rows.
    """
    if len(rows) != len(losses):
        raise ValueError(f"{len(rows)} rows but {len(losses)} losses")
    if not 1 <= n_flagged <= len(rows):
        raise ValueError(f"n_flagged must be between 1 and {len(rows)}, got {n_flagged}")
    noisy = [bool(r.get("noisy")) for r in rows]
    if all(noisy) or not any(noisy):
        raise ValueError("the rows need both noisy and clean ones to compare")
    flagged = sorted(range(len(losses)), key=lambda i: -losses[i])[:n_flagged]

    def mean(values):
        return sum(values) / len(values)

    return {
        "flagged": flagged,
        "precision": mean([noisy[i] for i in flagged]),
        "noisy_share": mean(noisy),
        "noisy_loss": mean([v for v, n in zip(losses, noisy) if n]),
        "clean_loss": mean([v for v, n in zip(losses, noisy) if not n]),
    }
