"""SFT row formats: checking one row and turning it into chat messages.

Five row formats are accepted, one per line of a JSONL file (one format per file), with any extra fields kept as
metadata:
- seed:              {"instruction": str, "response": str}
- prompt-completion: {"prompt": str, "completion": str}, or both as lists of chat messages (TRL's format)
- messages:          {"messages": [{"role": ..., "content": ...}, ...]} ending with the assistant's turn
- alpaca:            {"instruction": str, "input": str (may be empty or absent), "output": str}
- sharegpt:          {"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]} ending with "gpt"

`data` (files) and `masking` (tokens) both build on this module; it imports neither.
"""

from __future__ import annotations

import os

from sft_course.errors import DataError

SEED = "seed"
PROMPT_COMPLETION = "prompt_completion"
MESSAGES = "messages"
ALPACA = "alpaca"
SHAREGPT = "sharegpt"
FORMATS = (SEED, PROMPT_COMPLETION, MESSAGES, ALPACA, SHAREGPT)
ROLES = ("system", "user", "assistant")
# ShareGPT's speaker names and the chat roles they mean
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


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


def _check_turns(
    items, field: str, role_key: str, content_key: str, roles: dict[str, str], noun: str, role_noun: str
) -> list[dict]:
    """A list of turns as chat messages: `item[role_key]` (one of `roles`, mapped to its chat role) and
    `item[content_key]`; problems name `field[i].role_key` or `field[i].content_key`."""
    if not isinstance(items, list):
        raise RowProblem(field, f"expected a list of {noun}s, got {type(items).__name__}")
    if not items:
        raise RowProblem(field, f"empty list of {noun}s")
    checked = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise RowProblem(where, f"expected a {noun} object, got {type(item).__name__}")
        name = _string(item, role_key, f"{where}.{role_key}")
        if name not in roles:
            raise RowProblem(f"{where}.{role_key}", f"unknown {role_noun} {name!r}, expected one of {', '.join(roles)}")
        role = roles[name]
        what = "response" if role == "assistant" else f"{role} message"
        checked.append({"role": role, "content": _string(item, content_key, f"{where}.{content_key}", what)})
    return checked


def _check_messages(messages, field: str, allowed_roles=ROLES) -> list[dict]:
    return _check_turns(messages, field, "role", "content", {r: r for r in allowed_roles}, "message", "role")


def row_format(row) -> str:
    """Which accepted format `row` is in (one of `FORMATS`), from its fields; raises if none."""
    if not isinstance(row, dict):
        raise RowProblem(None, f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        return MESSAGES
    if "conversations" in row:
        return SHAREGPT
    if "prompt" in row or "completion" in row:
        return PROMPT_COMPLETION
    if "output" in row:
        return ALPACA
    if "instruction" in row or "response" in row:
        return SEED
    raise RowProblem(
        None,
        "unknown format: expected fields instruction/response, prompt/completion, messages, "
        f"instruction/input/output or conversations, got {', '.join(sorted(row)) or 'none'}",
    )


def _sharegpt_messages(conversations) -> list[dict]:
    """ShareGPT's turns as chat messages; problems name `conversations[i].from` or `.value`."""
    return _check_turns(conversations, "conversations", "from", "value", SHAREGPT_ROLES, "turn", "speaker")


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
    if fmt == ALPACA:
        instruction = _string(row, "instruction")
        extra = row.get("input", "")
        if extra is not None and not isinstance(extra, str):
            raise RowProblem("input", f"expected a string, got {type(extra).__name__}")
        output = _string(row, "output", what="response")
        user = instruction if not (extra or "").strip() else f"{instruction}\n\n{extra}"
        return fmt, [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if fmt == SHAREGPT:
        messages, field, last = _sharegpt_messages(row["conversations"]), "conversations", "from"
    else:
        messages, field, last = _check_messages(row["messages"], "messages"), "messages", "role"
    if not any(m["role"] == "assistant" for m in messages):
        raise RowProblem(field, "no assistant turn: nothing to train on")
    if messages[-1]["role"] != "assistant":
        raise RowProblem(
            f"{field}[{len(messages) - 1}].{last}",
            "the last message must be the assistant's (it is the response trained on)",
        )
    if not any(m["role"] == "user" for m in messages):
        raise RowProblem(field, "no user turn: nothing to respond to")
    return fmt, messages


def to_messages(row: dict) -> list[dict]:
    """Normalise a row of any accepted format to chat messages: optional system, user, ..., assistant last."""
    try:
        return row_messages(row)[1]
    except RowProblem as problem:
        raise DataValidationError(problem.problem, field=problem.field) from None
