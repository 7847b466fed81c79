"""Fine-tuning and evaluating on the learner's own JSONL file: `sft-course sft --data` and `eval --data`.

A file in any of the five row formats (`sft_course.formats`, one per file) is validated row by row before any
model loads. Without a separate eval file, a seeded share of the rows (`HELD_OUT_FRACTION`, at least one) is
held out, unless the file is too small to spare any (`MIN_ROWS_TO_SPLIT`), which the summary says.

What is measured, before and after training, with the same greedy generation settings:
- the loss per target token on the training rows (at most `LOSS_ROWS` of them) and on the held-out rows;
- the stop rate on the held-out prompts: the share of answers that end their turn (`sft_course.stop_tokens`);
- exact match against each held-out row's reference (its `answer` field when it has one, else its response):
  `strict` is the stripped answer equal to the reference and a stop; `lenient` compares the two after folding
  case, dropping punctuation and collapsing whitespace, stop or not.
"""

from __future__ import annotations

import json
import os
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from sft_course.accounting import trainable_parameters
from sft_course.data import read_file_rows
from sft_course.errors import DataError
from sft_course.generation import generate
from sft_course.lora import add_lora
from sft_course.loss import evaluate_loss
from sft_course.masking import tokenize_examples
from sft_course.run import TrainConfig, TrainResult
from sft_course.training import train

HELD_OUT_FRACTION = 0.1
MIN_ROWS_TO_SPLIT = 10  # below this many rows nothing is held out (a 10% split would be a single noisy row or less)
LOSS_ROWS = 256  # the training loss before and after is measured on at most this many training rows (a seeded sample)
N_SAMPLES = 5  # held-out prompts written to SAMPLES_FILE with their answers before and after
SAMPLES_FILE = "held_out_samples.json"
SUMMARY_FILE = "sft_summary.json"
MAX_NEW_TOKENS_CAP = 256


@dataclass
class DataFile:
    """A validated file: its path, format, and per row the original fields and the chat messages."""

    path: str
    format: str
    rows: list[dict]
    messages: list[list[dict]]

    def __len__(self) -> int:
        return len(self.rows)


def read_data_file(path: str | os.PathLike, flag: str = "--data") -> DataFile:
    """Validate every row of a JSONL file (file, line and field named on the first problem) and read it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{flag} {path}: {'a folder, not a JSONL file' if path.is_dir() else 'no such file'}")
    try:
        fmt, rows, messages = read_file_rows(path)
    except OSError as error:
        raise DataError(f"{flag} {path}: {error.strerror or error}") from None
    return DataFile(str(path), fmt, rows, messages)


def _subset(data: DataFile, indices: list[int]) -> DataFile:
    return DataFile(data.path, data.format, [data.rows[i] for i in indices], [data.messages[i] for i in indices])


def held_out_split(
    data: DataFile,
    fraction: float = HELD_OUT_FRACTION,
    seed: int = 0,
) -> tuple[DataFile, DataFile, str]:
    """`(train, held_out, note)`: a seeded `fraction` of the rows held out (at least one), none below
    `MIN_ROWS_TO_SPLIT` rows; `note` says which in words, for the summary."""
    n = len(data)
    if n < MIN_ROWS_TO_SPLIT:
        return (
            data,
            _subset(data, []),
            (
                f"none: {n} rows are too few to hold any out (a split needs at least "
                f"{MIN_ROWS_TO_SPLIT}); pass --eval-data FILE to evaluate"
            ),
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, round(n * fraction))
    held, train = sorted(order[:k]), sorted(order[k:])
    return _subset(data, train), _subset(data, held), f"{k} of {n} rows, a {fraction:.0%} split drawn with seed {seed}"


def reference(row: dict, messages: list[dict]) -> str:
    """What a held-out answer is compared with: the row's `answer` field when it is a string, else its response."""
    answer = row.get("answer")
    return answer if isinstance(answer, str) and answer.strip() else messages[-1]["content"]


def last_user_message(messages: list[dict]) -> str:
    """The user's message that the final answer responds to."""
    return next(m["content"] for m in reversed(messages[:-1]) if m["role"] == "user")


def normalise(text: str) -> str:
    """Case folded, punctuation dropped, whitespace collapsed: what lenient exact match compares."""
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
    return re.sub(r"\s+", " ", text).strip()


def prompts_of(tokenizer, data: DataFile) -> list[str]:
    """Each row's conversation up to its last answer, rendered with the template's generation prompt."""
    return [tokenizer.apply_chat_template(m[:-1], tokenize=False, add_generation_prompt=True) for m in data.messages]


def default_max_new_tokens(tokenizer, data: DataFile) -> int:
    """Room for the longest reference response plus 16 tokens, at most `MAX_NEW_TOKENS_CAP`."""
    longest = max(
        (len(tokenizer(m[-1]["content"], add_special_tokens=False)["input_ids"]) for m in data.messages), default=0
    )
    return min(longest + 16, MAX_NEW_TOKENS_CAP)


def answer_report(
    model,
    tokenizer,
    data: DataFile,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
) -> tuple[dict, list[dict]]:
    """Greedy answers to every row's prompt; `(scores, outputs)` with `stop_rate`, `exact_match_strict`,
    `exact_match_lenient` (None for no rows) and per row its `text`, `stopped` and `stop_token`."""
    if not len(data):
        return {"stop_rate": None, "exact_match_strict": None, "exact_match_lenient": None}, []
    max_new_tokens = max_new_tokens or default_max_new_tokens(tokenizer, data)
    outputs = generate(
        model, tokenizer, prompts_of(tokenizer, data), max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    refs = [reference(r, m) for r, m in zip(data.rows, data.messages)]
    strict = [o["stopped"] and o["text"].strip() == ref.strip() for o, ref in zip(outputs, refs)]
    lenient = [normalise(o["text"]) == normalise(ref) for o, ref in zip(outputs, refs)]
    n = len(outputs)
    return {
        "stop_rate": round(sum(o["stopped"] for o in outputs) / n, 4),
        "exact_match_strict": round(sum(strict) / n, 4),
        "exact_match_lenient": round(sum(lenient) / n, 4),
    }, outputs


def tokenized(tokenizer, data: DataFile, max_length: int) -> tuple[list[dict], dict]:
    """The rows as training examples (prompt masked with -100) and the report of what was cut or dropped."""
    return tokenize_examples(tokenizer, data.messages, max_length)


def file_loss(model, tokenizer, examples: list[dict], batch_size: int = 8) -> float | None:
    """Mean loss per target token of the examples (None for none)."""
    if not examples:
        return None
    return round(evaluate_loss(model, examples, tokenizer.pad_token_id, batch_size=batch_size), 4)


def evaluate_file(
    model,
    tokenizer,
    data: DataFile,
    max_length: int = 512,
    max_new_tokens: int | None = None,
    n_samples: int = N_SAMPLES,
) -> dict:
    """`sft-course eval --data`: loss, stop rate and exact match on every row of a file, and a few answers."""
    examples, report = tokenized(tokenizer, data, max_length)
    scores, outputs = answer_report(model, tokenizer, data, max_new_tokens)
    samples = [
        {"prompt": last_user_message(m), "reference": reference(r, m), "answer": o["text"], "stopped": o["stopped"]}
        for r, m, o in list(zip(data.rows, data.messages, outputs))[:n_samples]
    ]
    return {
        "data": data.path,
        "format": data.format,
        "rows": len(data),
        "loss": file_loss(model, tokenizer, examples),
        **scores,
        "tokenized": report,
        "samples": samples,
    }


@dataclass
class FileRun:
    """A run on a file: the trained model and tokenizer, the loop's result, the summary, the samples, and every
    held-out answer before and after (`generate`'s dicts, in the eval file's order)."""

    model: object
    tokenizer: object
    result: TrainResult
    summary: dict = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    before: list[dict] = field(default_factory=list)
    after: list[dict] = field(default_factory=list)


def _loss_sample(examples: list[dict], seed: int, rows: int = LOSS_ROWS) -> list[dict]:
    if len(examples) <= rows:
        return examples
    return random.Random(seed).sample(examples, rows)


def run_file_sft(
    model,
    tokenizer,
    train_data: DataFile,
    eval_data: DataFile,
    *,
    method: str = "full",
    config: TrainConfig | None = None,
    lora_options: dict | None = None,
    max_length: int = 512,
    max_new_tokens: int | None = None,
    held_out_note: str = "",
    progress: bool = True,
    accelerator=None,
    resume: bool = False,
    n_samples: int = N_SAMPLES,
    loss_rows: int = LOSS_ROWS,
) -> FileRun:
    """Fine-tune `model` on `train_data` (LoRA when `method == "lora"`); measure before and after on `eval_data`.

    The same path as `sft-course sft --data`; `config` carries the rate, epochs, batch, micro-batches and the
    checkpoint folder (`resume=True` continues from it, `training.train`). The training loss before and after is
    measured on a seeded sample of at most `loss_rows` training rows (a notebook on a slow CPU takes fewer).
    """
    config = config or TrainConfig()
    train_examples, train_report = tokenized(tokenizer, train_data, max_length)
    if not train_examples:
        raise DataError(
            f"{train_data.path}: no row fits in --max-length {max_length} tokens "
            f"({train_report['dropped_too_long']} dropped as too long)"
        )
    eval_examples, eval_report = tokenized(tokenizer, eval_data, max_length)
    loss_examples = _loss_sample(train_examples, config.seed, loss_rows)
    before = {
        "train_loss": file_loss(model, tokenizer, loss_examples),
        "eval_loss": file_loss(model, tokenizer, eval_examples),
    }
    before_scores, before_outputs = answer_report(model, tokenizer, eval_data, max_new_tokens)
    if method == "lora":
        model = add_lora(model, tokenizer, **(lora_options or {}))
    result = train(
        model,
        train_examples,
        tokenizer.pad_token_id,
        config,
        eval_examples=eval_examples or None,
        progress=progress,
        accelerator=accelerator,
        resume=resume,
    )
    model.eval()
    after = {
        "train_loss": file_loss(model, tokenizer, loss_examples),
        "eval_loss": file_loss(model, tokenizer, eval_examples),
    }
    after_scores, after_outputs = answer_report(model, tokenizer, eval_data, max_new_tokens)
    samples = [
        {
            "prompt": last_user_message(m),
            "reference": reference(r, m),
            "before": b["text"],
            "before_stopped": b["stopped"],
            "after": a["text"],
            "after_stopped": a["stopped"],
        }
        for r, m, b, a in list(zip(eval_data.rows, eval_data.messages, before_outputs, after_outputs))[:n_samples]
    ]
    summary = {
        "data": train_data.path,
        "format": train_data.format,
        "eval_data": eval_data.path,
        "train_rows": len(train_data),
        "held_out_rows": len(eval_data),
        "held_out": held_out_note,
        "method": method,
        "lr": config.lr,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "steps": result.steps,
        "max_length": max_length,
        "train_examples": len(train_examples),
        "tokenized": {"train": train_report, "held_out": eval_report},
        "trainable_params": trainable_parameters(model),
        "train_seconds": round(result.train_seconds, 1),
        "train_loss_rows": len(loss_examples),
        **{f"{k}_before": v for k, v in before.items()},
        **{f"{k}_after": v for k, v in after.items()},
        **{f"{k}_before": v for k, v in before_scores.items()},
        **{f"{k}_after": v for k, v in after_scores.items()},
    }
    return FileRun(
        model=model,
        tokenizer=tokenizer,
        result=result,
        summary=summary,
        samples=samples,
        before=before_outputs,
        after=after_outputs,
    )


def write_run_files(run: FileRun, folder: str | os.PathLike) -> None:
    """The summary (`SUMMARY_FILE`) and the held-out answers before and after (`SAMPLES_FILE`) next to the model."""
    folder = Path(folder)
    (folder / SUMMARY_FILE).write_text(json.dumps(run.summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / SAMPLES_FILE).write_text(json.dumps(run.samples, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
