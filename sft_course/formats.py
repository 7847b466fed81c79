"""SFT row formats: checking one row and turning it into chat messages.

Three row formats are accepted, one per line of a JSONL file, with any extra fields kept as metadata:
- seed:              {"instruction": str, "response": str}
- prompt-completion: {"prompt": str, "completion": str}, or both as lists of chat messages (TRL's format)
- messages:          {"messages": [{"role": ..., "content": ...}, ...]} ending with the assistant's turn

`data` (files) and `masking` (tokens) both build on this module; it imports neither.
"""

from __future__ import annotations

import os

from sft_course.errors import DataError

SEED = "seed"
PROMPT_COMPLETION = "prompt_completion"
MESSAGES = "messages"
FORMATS = (SEED, PROMPT_COMPLETION, MESSAGES)
ROLES = ("system", "user", "assistant")


class DataValidationError(DataError):
    """A bad example: `path` and 1-based `line` say where (None for a row not read from a file), `field` what."""

    def __init__(
        self, problem: str, path: str | os.PathLike | None = None, line: int | None = None, field: str | None = None
    ):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = [part for part in (self.path, None if line is None else f"line {line}") if part]
        if field is not None:
            where.append(f'field "{field}"')
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class RowProblem(Exception):
    """Raised while checking one row; the caller adds the file and line."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


# ----------------------------------------------------------------------------------------------------------
# Checking and normalising one row


def _string(row: dict, key: str, field: str | None = None, what: str | None = None) -> str:
    """`row[key]`, checked to be a non-blank string; problems name `field` (default: `key`)."""
    field = field or key
    if key not in row:
        raise RowProblem(field, "missing field")
    value = row[key]
    if not isinstance(value, str):
        raise RowProblem(field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise RowProblem(field, f"empty {what or key}")
    return value


def _check_messages(messages, field: str, allowed_roles=ROLES) -> list[dict]:
    if not isinstance(messages, list):
        raise RowProblem(field, f"expected a list of messages, got {type(messages).__name__}")
    if not messages:
        raise RowProblem(field, "empty list of messages")
    checked = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise RowProblem(where, f"expected a message object, got {type(message).__name__}")
        role = _string(message, "role", f"{where}.role")
        if role not in allowed_roles:
            raise RowProblem(f"{where}.role", f"unknown role {role!r}, expected one of {', '.join(allowed_roles)}")
        what = "response" if role == "assistant" else f"{role} message"
        content = _string(message, "content", f"{where}.content", what)
        checked.append({"role": role, "content": content})
    return checked


def row_format(row) -> str:
    """Which accepted format `row` is in ("seed", "prompt_completion" or "messages"); raises if none."""
    if not isinstance(row, dict):
        raise RowProblem(None, f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        return MESSAGES
    if "prompt" in row or "completion" in row:
        return PROMPT_COMPLETION
    if "instruction" in row or "response" in row:
        return SEED
    raise RowProblem(
        None,
        "unknown format: expected fields instruction/response, prompt/completion or messages, "
        f"got {', '.join(sorted(row)) or 'none'}",
    )


def row_messages(row) -> tuple[str, list[dict]]:
    """Check one row and return `(format, messages)`; raises `RowProblem` on the first problem found."""
    fmt = row_format(row)
    if fmt == SEED:
        instruction = _string(row, "instruction")
        response = _string(row, "response")
        return fmt, [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    if fmt == PROMPT_COMPLETION:
        for key in ("prompt", "completion"):
            if key not in row:
                raise RowProblem(key, "missing field")
        if isinstance(row["prompt"], list) or isinstance(row["completion"], list):  # conversational
            prompt = _check_messages(row["prompt"], "prompt", allowed_roles=ROLES)
            completion = _check_messages(row["completion"], "completion", allowed_roles=("assistant",))
            if prompt[-1]["role"] == "assistant":
                raise RowProblem("prompt", "the prompt must end with a user (or system) message")
            return fmt, prompt + completion
        prompt = _string(row, "prompt")
        completion = _string(row, "completion")
        return fmt, [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    messages = _check_messages(row["messages"], "messages")
    if not any(m["role"] == "assistant" for m in messages):
        raise RowProblem("messages", "no assistant turn: nothing to train on")
    if messages[-1]["role"] != "assistant":
        raise RowProblem(
            f"messages[{len(messages) - 1}].role",
            "the last message must be the assistant's (it is the response trained on)",
        )
    if not any(m["role"] == "user" for m in messages):
        raise RowProblem("messages", "no user turn: nothing to respond to")
    return fmt, messages


def to_messages(row: dict) -> list[dict]:
    """Normalise a row of any accepted format to chat messages: optional system, user, ..., assistant last."""
    try:
        return row_messages(row)[1]
    except RowProblem as problem:
        raise DataValidationError(problem.problem, field=problem.field) from None
