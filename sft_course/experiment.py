"""SFT runs end to end: data files -> tokenized examples -> the loop -> exact-match evaluation.

The notebooks and `sft-course sft` call `run_sft`, so a figure in a notebook and the command line's JSON
come from the same code. `finetune` is the notebooks' short run of N optimizer steps on a copy of a base
model (`finetune_curve` the same run, measured along the way), and `resolve_run` fills in a run's defaults
(rate, micro-batches, LoRA options) from its model and method.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import AutoTokenizer

from sft_course.accounting import trainable_parameters
from sft_course.data import read_examples
from sft_course.defaults import (
    ANSWER_STYLES,
    BATCH_SIZE,
    LEARNING_RATES,
    LORA_ALPHA,
    LORA_RANK,
    MAX_LENGTH,
    METHODS,
    MICRO_BATCH_SIZE,
    PRETRAINED_LEARNING_RATES,
)
from sft_course.evaluation import qa_report, sample_people
from sft_course.lora import add_lora, new_token_ids
from sft_course.masking import tokenize_examples
from sft_course.modeling import BUNDLED, BUNDLED_MODEL_DIR, REPO_ROOT, SMOLLM2, load_model, model_kind
from sft_course.training import TrainConfig, TrainResult, train
from sft_course.world import HELD_OUT_SPLIT, TRAIN_SPLIT, make_world

SFT_DATA_DIR = REPO_ROOT / "data" / "sft"
__all__ = [
    "ANSWER_STYLES",
    "METHODS",
    "RunDefaults",
    "SFTRun",
    "default_grad_accum_steps",
    "default_lora_options",
    "default_lr",
    "resolve_run",
    "eval_loss_rows",
    "evaluate_accuracy",
    "finetune",
    "finetune_curve",
    "run_sft",
    "training_rows",
]


def default_lr(method: str = "full", model_name=None) -> float:
    """The peak learning rate for `method` on `model_name` (None: the bundled model) when none is given.

    The bundled 1.2M-parameter model was measured to want high rates; a real pre-trained model (SmolLM2,
    any hub model) is wrecked by them and gets the usual SFT rates (`defaults.PRETRAINED_LEARNING_RATES`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return (LEARNING_RATES if model_kind(model_name) == BUNDLED else PRETRAINED_LEARNING_RATES)[method]


def default_grad_accum_steps(batch_size: int, bundled: bool) -> int:
    """Micro-batches per optimizer step when none is given (`sft-course sft --grad-accum-steps`).

    The bundled model (a vocabulary of 1,388 tokens) takes each step in one batch. Any other model takes the fewest
    micro-batches of at most `MICRO_BATCH_SIZE` examples that split `batch_size` evenly (64: 8 of 8), the way
    TRL's per-device batch and gradient accumulation do: the logits of a 49k-token vocabulary for 64 examples at
    once take gigabytes. The loop divides by the step's target tokens, so the update is the same up to rounding.
    """
    if bundled:
        return 1
    return next(n for n in range(1, batch_size + 1) if batch_size % n == 0 and batch_size // n <= MICRO_BATCH_SIZE)


@dataclass(frozen=True)
class RunDefaults:
    """A run's settings with every default filled in from its model and method (`resolve_run`)."""

    method: str
    model_name: str | None
    bundled: bool  # the bundled base model (`modeling.model_kind`)
    lr: float
    batch_size: int
    grad_accum_steps: int
    rank: int | None  # LoRA only (None for full fine-tuning)
    alpha: float | None
    lean: bool = False  # `TrainConfig.lean`: the lean loss (the same loss, less work), SmolLM2's default

    def lora_options(self, sft_rows: Iterable | None = None) -> dict | None:
        """The options of `add_lora` for this run (`default_lora_options`), or None for full fine-tuning."""
        if self.method != "lora":
            return None
        return default_lora_options(self.rank, self.alpha, sft_rows, self.model_name)


def resolve_run(
    method: str = "full",
    model_name: str | os.PathLike | None = None,
    *,
    lr: float | None = None,
    batch_size: int = BATCH_SIZE,
    grad_accum_steps: int | None = None,
    rank: int | None = None,
    alpha: float | None = None,
) -> RunDefaults:
    """Fill in a run's defaults from its model and method, in one place (the command line calls it).

    - `lr`: the bundled model's measured rate for the method, or a real model's usual one (`default_lr`);
    - `grad_accum_steps`: one batch per step for the bundled model, micro-batches of at most `MICRO_BATCH_SIZE`
      examples for any other (`default_grad_accum_steps`);
    - `rank`, `alpha`: LoRA's defaults for `method="lora"`, None for full fine-tuning;
    - `bundled`: whether `model_name` is the bundled model (`modeling.model_kind`, asked once here);
    - `lean`: the lean loss (`lean_loss`) for SmolLM2, whose chat template puts the same system prompt before every
      question (run once per micro-batch) and whose 49k-token output layer is the largest activation.
    Values given are kept. The LoRA options proper (which embedding rows train) need the SFT rows:
    `RunDefaults.lora_options(rows)`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    bundled = model_kind(model_name) == BUNDLED
    lora = method == "lora"
    return RunDefaults(
        method=method,
        model_name=None if model_name is None else str(model_name),
        bundled=bundled,
        lr=default_lr(method, model_name) if lr is None else lr,
        batch_size=batch_size,
        grad_accum_steps=default_grad_accum_steps(batch_size, bundled)
        if grad_accum_steps is None
        else grad_accum_steps,
        rank=(LORA_RANK if rank is None else rank) if lora else rank,
        alpha=(LORA_ALPHA if alpha is None else alpha) if lora else alpha,
        lean=model_kind(model_name) == SMOLLM2,
    )


@dataclass
class SFTRun:
    """The trained model and everything measured about the run."""

    model: object
    tokenizer: object
    result: TrainResult
    summary: dict = field(default_factory=dict)
    data_report: dict = field(default_factory=dict)


def training_rows(
    answers: str = "sentence", n_people: int | None = None, data_dir: str | Path = SFT_DATA_DIR
) -> list[dict]:
    """The training file of one answer style, optionally only the rows about the first `n_people` people."""
    if answers not in ANSWER_STYLES:
        raise ValueError(f"answers must be one of {ANSWER_STYLES}, got {answers!r}")
    rows = read_examples(Path(data_dir) / f"train_{answers}.jsonl")
    if n_people is not None:
        keep = {p.name for p in make_world().split(TRAIN_SPLIT)[:n_people]}
        rows = [r for r in rows if r["person"] in keep]
    return rows


def eval_loss_rows(answers: str = "sentence", n_people: int = 100, data_dir: str | Path = SFT_DATA_DIR) -> list[dict]:
    """Held-out people's questions (trained wording) answered in the same style, for the eval loss curve."""
    keep = {p.name for p in make_world().split(HELD_OUT_SPLIT)[:n_people]}
    rows = [
        r
        for r in read_examples(Path(data_dir) / "eval_held_out.jsonl")
        if r["person"] in keep and r["question_kind"] == "trained"
    ]
    return [dict(r, response=r["response"] if answers == "sentence" else r["answer"]) for r in rows]


def default_lora_options(
    rank: int = LORA_RANK,
    alpha: float = LORA_ALPHA,
    sft_rows: Iterable | None = None,
    model_name: str | os.PathLike | None = None,
) -> dict:
    """The LoRA options of `sft-course sft --method lora`: rank, alpha, and which embedding rows to train.

    For the bundled model, whose pre-training text is known (the world's biographies), every token that the
    SFT rows use and pre-training never did gets a trainable row (`new_token_ids`): the chat tokens and, with
    this small BPE vocabulary, the pieces of the question words ("When", "Where", ...). For any other model
    only the chat tokens (`add_lora`'s default), since its pre-training text is unknown.
    """
    options = {"rank": rank, "alpha": alpha}
    if model_kind(model_name) == BUNDLED and sft_rows is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(BUNDLED_MODEL_DIR))
        options["train_tokens"] = new_token_ids(tokenizer, sft_rows, make_world().biographies)
    return options


def _short_run_model(base, tokenizer, seed: int, lora_options: dict | None):
    """A copy of `base` to train, wrapped with LoRA adapters (initialised from `seed`) when options are given."""
    model = copy.deepcopy(base)
    if lora_options is not None:
        model = add_lora(model, tokenizer, **{"seed": seed, **lora_options})
    return model


def _short_run_config(
    lr: float, steps: int, batch_size: int, seed: int, lr_multipliers: dict | None, lora_products: bool = False
) -> TrainConfig:
    """The notebooks' short runs: exactly `steps` optimizer steps, no evaluation during training."""
    return TrainConfig(
        lr=lr,
        total_steps=steps,
        batch_size=batch_size,
        seed=seed,
        eval_every=0,
        lr_multipliers=dict(lr_multipliers or {}),
        lora_products=lora_products,
    )


def finetune(
    base,
    tokenizer,
    examples: list[dict],
    steps: int,
    lr: float,
    batch_size: int = 32,
    seed: int = 0,
    lora_options: dict | None = None,
    progress: bool = False,
    lr_multipliers: dict | None = None,
    lora_products: bool = False,
) -> tuple[object, TrainResult]:
    """A short run of exactly `steps` optimizer steps on a copy of `base` (left untouched); `(model, result)`.

    `examples` are tokenized; `lora_options` (the keyword arguments of `add_lora`) wrap the copy with LoRA
    adapters first, initialised from `seed` unless the options say otherwise. No evaluation during
    training: the notebooks measure what they need afterwards. `lr_multipliers` gives some parameters their
    own rate (`TrainConfig.lr_multipliers`), e.g. `{"trainable_tokens": 0.2}` for PEFT's trainable rows.
    `lora_products=True` computes LoRA's adapter products in CPU-fast layouts (`TrainConfig.lora_products`).
    """
    model = _short_run_model(base, tokenizer, seed, lora_options)
    config = _short_run_config(lr, steps, batch_size, seed, lr_multipliers, lora_products)
    return model, train(model, examples, tokenizer.pad_token_id, config, progress=progress)


def finetune_curve(
    base,
    tokenizer,
    examples: list[dict],
    steps: int,
    lr: float,
    measure,
    at_steps: Iterable[int],
    batch_size: int = 32,
    seed: int = 0,
    lora_options: dict | None = None,
    lr_multipliers: dict | None = None,
    lora_products: bool = False,
) -> tuple[object, TrainResult, list[tuple[int, object]]]:
    """`finetune`'s run, paused after each of `at_steps` optimizer steps to record `measure(model)`.

    The pauses go through a checkpoint and `train(resume=True)`, so the run is the one `finetune` makes with the
    same arguments (the same per-step losses): a curve of any metric (exact match, say) at no change to the run.
    Returns `(model, result, curve)`, `curve` a list of `(step, measure(model))`; the last step is always in it.
    """
    points = sorted({int(s) for s in at_steps} | {steps})
    if points[0] < 1 or points[-1] > steps:
        raise ValueError(f"at_steps must lie between 1 and steps={steps}, got {sorted(at_steps)}")
    model = _short_run_model(base, tokenizer, seed, lora_options)
    curve, result = [], None
    with tempfile.TemporaryDirectory(prefix="sft-curve-") as folder:
        for i, stop in enumerate(points):
            config = _short_run_config(lr, steps, batch_size, seed, lr_multipliers, lora_products)
            config = replace(config, checkpoint_dir=folder, save_every=steps, max_steps=stop)
            result = train(model, examples, tokenizer.pad_token_id, config, resume=i > 0, progress=False)
            curve.append((stop, measure(model)))
    return model, result, curve


def run_sft(
    model=None,
    tokenizer=None,
    *,
    answers: str = "sentence",
    method: str = "full",
    train_rows: list[dict] | None = None,
    config: TrainConfig | None = None,
    lora_options: dict | None = None,
    max_length: int = MAX_LENGTH,
    n_eval_people: int | None = 200,
    model_name: str | None = None,
    progress: bool = True,
    accelerator=None,
    resume: bool = False,
) -> SFTRun:
    """Fine-tune (the bundled base model by default) on questions about the training people; evaluate.

    `train_rows` overrides the data file (notebooks pass edited rows: noisy labels, fewer templates, ...).
    `method="lora"` wraps the model with PEFT LoRA (`sft_course.lora.add_lora(**lora_options)`).
    Accuracy is exact match on `n_eval_people` seen and held-out people (None: all 500 of each), drawn
    with `config.seed`, the seed of the run.
    An `accelerate.Accelerator` spreads each step over the processes of `accelerate launch`.
    `resume=True` continues from the checkpoint in `config.checkpoint_dir` (`training.train`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if model is None:
        model, tokenizer = load_model(model_name)
    config = config or TrainConfig()
    rows = train_rows if train_rows is not None else training_rows(answers)
    examples, data_report = tokenize_examples(tokenizer, rows, max_length)
    eval_examples, _ = tokenize_examples(tokenizer, eval_loss_rows(answers), max_length)
    if method == "lora":
        model = add_lora(model, tokenizer, **(lora_options or {}))
    result = train(
        model,
        examples,
        tokenizer.pad_token_id,
        config,
        eval_examples=eval_examples,
        progress=progress,
        accelerator=accelerator,
        resume=resume,
    )
    summary = {
        "method": method,
        "answers": answers,
        "lr": config.lr,
        "train_examples": len(examples),
        "trainable_params": trainable_parameters(model),
        "train_seconds": round(result.train_seconds, 1),
        "target_tokens_per_second": round(result.target_tokens_per_second, 1),
        "final_train_loss": round(result.final_train_loss, 4),
        "final_eval_loss": round(result.evals[-1]["eval_loss"], 4) if result.evals else None,
        **evaluate_accuracy(model, tokenizer, n_eval_people, seed=config.seed),
    }
    return SFTRun(model=model, tokenizer=tokenizer, result=result, summary=summary, data_report=data_report)


def evaluate_accuracy(model, tokenizer, n_people: int | None = 200, seed: int = 0) -> dict:
    """Exact-match accuracy on seen and held-out people (a seeded sample of `n_people` each) and stop rate."""
    seen, held_out = sample_people(make_world(), n_people, seed)
    held = qa_report(model, tokenizer, held_out)
    return {
        "held_out_accuracy": round(held["accuracy"], 4),
        "seen_accuracy": round(qa_report(model, tokenizer, seen)["accuracy"], 4),
        "stop_rate": round(held["stop_rate"], 4),
    }
