"""SFT data files: generating the course's JSONL files, validating them, loading them, and filtering rows.

The row formats (seed, prompt-completion, messages, Alpaca, ShareGPT; one per file) and `to_messages` live in
`sft_course.formats`.

Every problem is reported as a `DataValidationError` naming the file, the 1-based line and the field, and
nothing is dropped without being counted: `filter_examples` returns a report of what it removed and why.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from sft_course.formats import (
    ALPACA,
    FORMATS,
    MESSAGES,
    PROMPT_COMPLETION,
    SEED,
    SHAREGPT,
    DataValidationError,
    RowProblem,
    row_messages,
    to_messages,
)
from sft_course.masking import rendered_length
from sft_course.world import (
    ATTRIBUTES,
    HELD_OUT_SPLIT,
    JSON_PROFILE_QUESTION,
    QUESTION_TEMPLATES,
    TRAIN_SPLIT,
    Person,
    World,
    canonical_sentence,
    make_world,
    profile_json,
    question,
)

# The course's source document shows these three lines; they are written out byte for byte.
SEED_EXAMPLE_LINES = (
    '{"instruction": "세상에서 가장 높은 산은 무엇인가요?", "response": "세상에서 가장 높은 산은 에베레스트 산입니다."}',  # noqa: E501 (byte for byte)
    '{"instruction": "Python으로 두 숫자를 더하는 함수를 작성해줘.", "response": "def add_numbers(a, b):\\n  return a + b"}',  # noqa: E501 (byte for byte)
    '{"instruction": "\'행복\'을 주제로 짧은 시를 써줘.", "response": "작은 햇살 한 줌에 미소 짓고,\\n따스한 차 한 잔에 온기를 느끼네.\\n소박한 일상 속에 피어나는 것,\\n그것이 바로 행복이라네."}',  # noqa: E501 (byte for byte)
)

DATA_SHUFFLE_SEED = 1234


def _response_field(fmt: str) -> str:
    return {
        SEED: "response",
        PROMPT_COMPLETION: "completion",
        MESSAGES: "messages",
        ALPACA: "output",
        SHAREGPT: "conversations",
    }[fmt]


def _dedup_key(messages: list[dict]) -> str:
    return json.dumps(messages, ensure_ascii=False, sort_keys=True)


# ----------------------------------------------------------------------------------------------------------
# Reading and validating files


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield `(line number, text)` for every non-blank line; undecodable bytes are reported with their line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataValidationError(f"not valid UTF-8 ({e.reason} at byte {e.start})", path, number) from None
            if text.strip():
                yield number, text


def _validated_rows(path: str | os.PathLike) -> Iterator[tuple[int, str, dict, list[dict]]]:
    """Yield `(line, format, row, messages)` for each row of a JSONL file, raising on the first bad line."""
    path = Path(path)
    first_line_of: dict[str, int] = {}
    file_format: tuple[str, int] | None = None  # the format of the file's first row, and its line
    for number, text in _iter_lines(path):
        try:
            row = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            raise DataValidationError(f"malformed JSON: {e.msg} (column {e.colno})", path, number) from None
        try:
            fmt, messages = row_messages(row)
        except RowProblem as problem:
            raise DataValidationError(problem.problem, path, number, problem.field) from None
        if file_format is None:
            file_format = (fmt, number)
        elif fmt != file_format[0]:
            raise DataValidationError(
                f"a row in the {fmt} format, but line {file_format[1]} is in the {file_format[0]} format: one format "
                "per file (split the file, or convert the rows)",
                path,
                number,
            )
        key = _dedup_key(messages)
        if key in first_line_of:
            raise DataValidationError(
                f"duplicate example: line {number} repeats the prompt and response of line {first_line_of[key]}",
                path,
                number,
                _response_field(fmt),
            )
        first_line_of[key] = number
        yield number, fmt, row, messages


def validate_jsonl(path: str | os.PathLike) -> dict[str, int]:
    """Check every line of a JSONL file; return `{"rows": n, "format": its format, "seed": ..., ...}` (a count per
    format of `FORMATS`, all zero but the file's).

    Raises `DataValidationError` (file, line, field) on malformed JSON, a row that is not an object, a missing or
    non-string field, an empty response, bad chat messages, a duplicate of an earlier line, an unknown format,
    a row in another format than the file's first row, or a file with no examples at all.
    """
    counts = {"rows": 0, "format": None, **{fmt: 0 for fmt in FORMATS}}
    for _, fmt, _, _ in _validated_rows(path):
        counts["rows"] += 1
        counts[fmt] += 1
        counts["format"] = fmt
    if counts["rows"] == 0:
        raise DataValidationError("no examples in the file", path)
    return counts


def read_examples(path: str | os.PathLike) -> list[dict]:
    """The rows of a validated JSONL file as plain dicts, metadata kept, in file order (no `datasets` needed)."""
    rows = [row for _, _, row, _ in _validated_rows(path)]
    if not rows:
        raise DataValidationError("no examples in the file", path)
    return rows


def read_file_rows(path: str | os.PathLike) -> tuple[str, list[dict], list[list[dict]]]:
    """`(format, rows, messages)` of a validated JSONL file: its one format, the rows as written, and each row
    as chat messages (`to_messages`)."""
    parsed = list(_validated_rows(path))
    if not parsed:
        raise DataValidationError("no examples in the file", path)
    return parsed[0][1], [row for _, _, row, _ in parsed], [messages for _, _, _, messages in parsed]


def load_sft_dataset(path_or_paths: str | os.PathLike | Iterable[str | os.PathLike]):
    """Validate the file(s), load them with `datasets` and add a `messages` column in chat format.

    Files in different formats (or with different metadata) are loaded one by one and joined; a column one
    file lacks is filled with None for its rows.
    """
    from datasets import concatenate_datasets, load_dataset

    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not paths:
        raise ValueError("load_sft_dataset: no files given")
    for path in paths:
        validate_jsonl(path)

    def add_messages(row):
        # Arrow fills the fields a row lacks with None; absent is what they mean.
        return {"messages": to_messages({k: v for k, v in row.items() if v is not None})}

    parts = [load_dataset("json", data_files=str(path), split="train").map(add_messages) for path in paths]
    features = {}
    for part in parts:
        for name, feature in part.features.items():
            features.setdefault(name, feature)
    for i, part in enumerate(parts):
        for name, feature in features.items():
            if name not in part.column_names:
                part = part.add_column(name, [None] * len(part), feature=feature)
        parts[i] = part.select_columns(list(features))
    try:
        return parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    except ValueError as error:
        raise ValueError(
            f"load_sft_dataset: the files' columns have incompatible types ({error}); load them separately"
        ) from None


# ----------------------------------------------------------------------------------------------------------
# Filters that report what they remove


FILTER_REASONS = ("invalid", "empty", "duplicate", "too_long")


def filter_examples(
    rows: Iterable[dict],
    tokenizer=None,
    max_length: int | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """Keep the usable rows; return `(kept, report)` with how many were removed for each reason.

    Reasons, checked in this order: `invalid` (not a row of an accepted format: missing or non-string field,
    bad messages), `empty` (an empty or whitespace-only prompt or response), `duplicate` (same prompt and
    response as an earlier kept row), `too_long` (more than `max_length` tokens once rendered with the
    tokenizer's chat template; needs `tokenizer`). `report["input"] == report["kept"] + removals`.
    """
    if max_length is not None and tokenizer is None:
        raise ValueError("filter_examples: max_length needs a tokenizer to count tokens")
    report = {"input": 0, "kept": 0, **{reason: 0 for reason in FILTER_REASONS}}
    kept, seen = [], set()
    for row in rows:
        report["input"] += 1
        try:
            _, messages = row_messages(row)
        except RowProblem as problem:
            report["empty" if problem.problem.startswith("empty") else "invalid"] += 1
            continue
        key = _dedup_key(messages)
        if key in seen:
            report["duplicate"] += 1
            continue
        if max_length is not None:
            if rendered_length(tokenizer, messages) > max_length:
                report["too_long"] += 1
                continue
        seen.add(key)
        kept.append(row)
        report["kept"] += 1
    return kept, report


# ----------------------------------------------------------------------------------------------------------
# The course's data files


def _qa_row(person: Person, attribute: str, kind: str, paraphrase: int, response: str) -> dict:
    return {
        "instruction": question(person, attribute, paraphrase, kind),
        "response": response,
        "person": person.name,
        "attribute": attribute,
        "question_kind": kind,
        "paraphrase": paraphrase,
        "answer": person.facts[attribute],
    }


def _profile_row(person: Person) -> dict:
    return {
        "instruction": JSON_PROFILE_QUESTION.format(name=person.name),
        "response": profile_json(person),
        "person": person.name,
        "attribute": "profile",
        "question_kind": "trained",
        "paraphrase": 0,
        "answer": profile_json(person),
    }


def _shuffled(rows: list[dict], seed: int) -> list[dict]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def _write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def make_sft_data(out_dir: str | os.PathLike = "data/sft", world: World | None = None) -> dict[str, int]:
    """Write the course's SFT files under `out_dir`, deterministically; return `{file name: row count}`.

    - `train_sentence.jsonl` / `train_short.jsonl`: the same questions (every trained paraphrase of every
      attribute of every training-split person, in the same shuffled order), answered with the canonical
      sentence ("Yuri Blackwood was born in Tampa.") or the bare value ("Tampa").
    - `eval_seen.jsonl` / `eval_held_out.jsonl`: questions about training-split / held-out people, in trained
      paraphrase 0 and both unseen paraphrases, with sentence answers; metadata says what is asked
      (`person`, `attribute`, `question_kind`, `paraphrase`, and the bare `answer`).
    - `train_json_profile.jsonl` / `eval_json_profile.jsonl`: "Give NAME's profile as JSON." for training /
      held-out people, a format pre-training never shows.
    - `seed_examples.jsonl`: the three Korean seed examples of the course's source document.
    """
    world = world or make_world()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_people, held_out_people = world.split(TRAIN_SPLIT), world.split(HELD_OUT_SPLIT)

    train_questions = _shuffled(
        [(p, a, i) for p in train_people for a in ATTRIBUTES for i in range(len(QUESTION_TEMPLATES[a]["trained"]))],
        DATA_SHUFFLE_SEED,
    )

    def eval_rows(people: list[Person]) -> list[dict]:
        rows = []
        for p in people:
            for a in ATTRIBUTES:
                asked = [("trained", 0)] + [("unseen", i) for i in range(len(QUESTION_TEMPLATES[a]["unseen"]))]
                rows += [_qa_row(p, a, kind, i, canonical_sentence(p, a)) for kind, i in asked]
        return _shuffled(rows, DATA_SHUFFLE_SEED)

    files = {
        "train_sentence.jsonl": [_qa_row(p, a, "trained", i, canonical_sentence(p, a)) for p, a, i in train_questions],
        "train_short.jsonl": [_qa_row(p, a, "trained", i, p.facts[a]) for p, a, i in train_questions],
        "eval_seen.jsonl": eval_rows(train_people),
        "eval_held_out.jsonl": eval_rows(held_out_people),
        "train_json_profile.jsonl": _shuffled([_profile_row(p) for p in train_people], DATA_SHUFFLE_SEED),
        "eval_json_profile.jsonl": _shuffled([_profile_row(p) for p in held_out_people], DATA_SHUFFLE_SEED),
    }
    counts = {name: _write_jsonl(out / name, rows) for name, rows in files.items()}
    (out / "seed_examples.jsonl").write_text("".join(line + "\n" for line in SEED_EXAMPLE_LINES), encoding="utf-8")
    counts["seed_examples.jsonl"] = len(SEED_EXAMPLE_LINES)
    return counts
