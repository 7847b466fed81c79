"""The SFT loop, written out: shifted cross-entropy on target tokens, accumulation, schedule, clipping, resume.

No `Trainer`: every step is here to be read. The one subtle point is normalisation. The loss of an optimizer
step is the sum of the per-token losses over *all* its target tokens divided by their count, so a batch of
32 gives the same gradient as 4 accumulated micro-batches of 8. Averaging each micro-batch's mean loss
instead (what `transformers` did before its 2024 fix) over-weights the tokens of short micro-batches.
"""

from __future__ import annotations

import math
import random
import time
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sft_course.collate import pad_batch
from sft_course.defaults import BATCH_SIZE, EPOCHS, LEARNING_RATES
from sft_course.masking import IGNORE_INDEX


@dataclass
class TrainConfig:
    """Hyper-parameters of one SFT run. `batch_size` counts examples per optimizer step.

    The run lasts `epochs` passes over the data, or exactly `total_steps` optimizer steps when that is set
    (the schedule then spans those steps, and the data order continues into further epochs as needed).
    """

    lr: float = LEARNING_RATES["full"]
    epochs: float = EPOCHS
    total_steps: int | None = None  # optimizer steps of the run; overrides `epochs`
    batch_size: int = BATCH_SIZE
    grad_accum_steps: int = 1  # micro-batches per optimizer step; batch_size must divide by it
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50  # optimizer steps between evaluations on the eval examples (0: only at the end)
    seed: int = 0
    max_steps: int | None = None  # stop early (e.g. to simulate an interruption); the schedule stays the same
    checkpoint_dir: str | None = None
    save_every: int = 0  # optimizer steps between checkpoints (0: none)
    # {substring of a parameter name: factor}: those parameters train at factor x the scheduled rate (first match)
    lr_multipliers: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a run did: per-step history, evaluations, wall time and the number of target tokens trained on."""

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    target_tokens: int = 0
    steps: int = 0

    @property
    def final_train_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")

    @property
    def target_tokens_per_second(self) -> float:
        return self.target_tokens / self.train_seconds if self.train_seconds else 0.0


def cosine_lr(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup to `peak_lr`, then cosine decay to `min_ratio * peak_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def count_target_tokens(labels: torch.Tensor) -> int:
    """Tokens that the loss is computed on: labels not -100, after the one-position shift."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def per_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each position predicting the *next* token; 0 where the target is -100.

    Shape (batch, seq-1): position t's logits are scored against the label at t+1.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none",
    ).view(shift_labels.shape)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, num_target_tokens: int | None = None) -> torch.Tensor:
    """Summed per-token loss over the target tokens, divided by `num_target_tokens`.

    Pass the target-token count of the whole accumulated batch to get correct gradient accumulation;
    leave it out for the plain mean over this batch's own target tokens.
    """
    if num_target_tokens is None:
        num_target_tokens = count_target_tokens(labels)
    if num_target_tokens == 0:
        raise ValueError("no target tokens in this batch: every label is -100, so there is nothing to learn from")
    return per_token_loss(logits, labels).sum() / num_target_tokens


def step_batches(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The example indices of each optimizer step of one epoch: a fresh seeded shuffle per epoch."""
    order = list(range(n_examples))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def accumulate_gradients(model, micro_batches: list[dict], num_target_tokens: float | None = None,
                         backward=None) -> tuple[float, int]:
    """Backward over the micro-batches of one optimizer step; return (step loss, target tokens here).

    Each micro-batch's summed loss is divided by the target tokens of the *whole* step, so the accumulated
    gradient equals that of one big batch, whatever the micro-batch lengths. Under data parallelism pass
    the step's token count over all processes divided by their number: the processes' gradients are
    averaged, which restores the sum over all tokens divided by all tokens. `backward` defaults to
    `loss.backward()` (`accelerator.backward` under `accelerate`).
    """
    local_tokens = sum(count_target_tokens(b["labels"]) for b in micro_batches)
    denominator = local_tokens if num_target_tokens is None else num_target_tokens
    step_loss = 0.0
    device = next(model.parameters()).device  # a DistributedDataParallel wrapper has no .device
    for batch in micro_batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        loss = sft_loss(logits, batch["labels"], denominator)
        (backward or torch.Tensor.backward)(loss)
        step_loss += loss.item()
    return step_loss, local_tokens


def naive_accumulate_gradients(model, micro_batches: list[dict]) -> float:
    """The pre-2024 bug, kept for the lesson: average each micro-batch's own mean loss.

    A micro-batch with few target tokens then weighs as much as one with many, so the gradient differs
    from the big-batch gradient whenever the micro-batches hold different numbers of target tokens.
    """
    step_loss = 0.0
    for batch in micro_batches:
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        loss = sft_loss(logits, batch["labels"]) / len(micro_batches)
        loss.backward()
        step_loss += loss.item()
    return step_loss


def flat_gradient(model, micro_batches: list[dict], accumulate=accumulate_gradients) -> torch.Tensor:
    """The gradient that `accumulate` (e.g. `accumulate_gradients`) leaves on a copy of `model`, as one vector.

    `model` itself is left untouched, so two ways of accumulating the same micro-batches can be compared.
    """
    copy = deepcopy(model)
    accumulate(copy, micro_batches)
    return torch.cat([p.grad.flatten() for p in copy.parameters() if p.grad is not None])


@torch.no_grad()
def evaluate_loss(model, examples: list[dict], pad_token_id: int, batch_size: int = 64) -> float:
    """Mean loss per target token over `examples` (token-weighted, not batch-weighted)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = pad_batch(examples[i : i + batch_size], pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        total += per_token_loss(logits, batch["labels"]).sum().item()
        tokens += count_target_tokens(batch["labels"])
    model.train(was_training)
    return total / max(tokens, 1)


def param_groups(model, lr_multipliers: dict | None = None) -> list[dict]:
    """The trainable parameters as optimizer groups, each with its `lr_multiplier` (1.0 unless a key matches).

    A parameter whose name contains a key of `lr_multipliers` (the first that matches) trains at that factor
    times the scheduled learning rate: e.g. `{"trainable_tokens": 0.1}` gives PEFT's trainable embedding rows
    a tenth of LoRA's rate. A key that matches no trainable parameter is an error, not a silent no-op.
    """
    lr_multipliers = dict(lr_multipliers or {})
    groups: dict[float, list] = {}
    used = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = next((k for k in lr_multipliers if k in name), None)
        if key is not None:
            used.add(key)
        groups.setdefault(lr_multipliers[key] if key is not None else 1.0, []).append(param)
    unused = sorted(set(lr_multipliers) - used)
    if unused:
        raise ValueError(f"lr_multipliers keys match no trainable parameter: {unused}")
    return [{"params": ps, "lr_multiplier": factor} for factor, ps in groups.items()]


def train(
    model,
    train_examples: list[dict],
    pad_token_id: int,
    config: TrainConfig | None = None,
    eval_examples: list[dict] | None = None,
    resume: bool = False,
    progress: bool = True,
    accelerator=None,
) -> TrainResult:
    """Fine-tune `model` on tokenized examples ({"input_ids", "labels"}); return the run's history.

    With `config.checkpoint_dir` and `resume=True`, continue from the last checkpoint there: model,
    optimizer, step and history are restored, and the data order is a pure function of (seed, epoch),
    so the resumed run reproduces the uninterrupted one's losses.

    With an `accelerate.Accelerator`, each process takes its share of every step's examples and the loss
    stays normalised by the step's target tokens over all processes (`accelerate launch` to scale out).
    """
    config = config or TrainConfig()
    if config.total_steps is not None and config.total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {config.total_steps}")
    if config.batch_size % config.grad_accum_steps:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by grad_accum_steps {config.grad_accum_steps}")
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, config.lr_multipliers), lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_examples) / config.batch_size)
    total_steps = config.total_steps or max(1, round(config.epochs * steps_per_epoch))
    warmup_steps = max(1, round(config.warmup_ratio * total_steps))
    result = TrainResult()
    start_step = 0
    if resume:
        start_step = _load_checkpoint(model, optimizer, result, config)
    rank, n_processes, backward, raw_model = 0, 1, None, model
    if accelerator is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
        rank, n_processes, backward = accelerator.process_index, accelerator.num_processes, accelerator.backward
    last_step = min(total_steps, config.max_steps or total_steps)
    micro_size = config.batch_size // config.grad_accum_steps
    model.train()
    began = time.time() - result.train_seconds
    bar = tqdm(range(start_step, last_step), desc="SFT", disable=not progress)
    for step in bar:
        epoch, index_in_epoch = divmod(step, steps_per_epoch)
        indices = step_batches(len(train_examples), config.batch_size, config.seed, epoch)[index_in_epoch]
        indices = indices[rank::n_processes]
        micro_batches = [pad_batch([train_examples[i] for i in indices[j : j + micro_size]], pad_token_id)
                         for j in range(0, len(indices), micro_size)]
        lr = cosine_lr(step, total_steps, config.lr, warmup_steps, config.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_multiplier", 1.0)
        step_tokens = sum(count_target_tokens(b["labels"]) for b in micro_batches)
        if accelerator is not None:  # the token count of the whole step, over every process
            step_tokens = int(accelerator.reduce(torch.tensor(step_tokens, device=accelerator.device), "sum"))
        step_loss, _ = accumulate_gradients(model, micro_batches, step_tokens / n_processes, backward)
        if accelerator is not None:
            step_loss = accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "mean").item()
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm).item()
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.target_tokens += step_tokens
        result.history.append({"step": step + 1, "loss": step_loss, "lr": lr, "grad_norm": grad_norm,
                               "epoch": (step + 1) / steps_per_epoch})
        bar.set_postfix(loss=f"{step_loss:.3f}")
        is_last = step + 1 == last_step
        if eval_examples and ((config.eval_every and (step + 1) % config.eval_every == 0) or is_last):
            result.evals.append({"step": step + 1, "eval_loss": evaluate_loss(raw_model, eval_examples, pad_token_id)})
        result.train_seconds = time.time() - began
        if config.checkpoint_dir and config.save_every and ((step + 1) % config.save_every == 0 or is_last):
            _save_checkpoint(raw_model, optimizer, result, step + 1, config)
    result.steps = last_step
    raw_model.eval()
    return result


def _checkpoint_path(config: TrainConfig) -> Path:
    return Path(config.checkpoint_dir) / "checkpoint.pt"


def _save_checkpoint(model, optimizer, result: TrainResult, step: int, config: TrainConfig) -> None:
    path = _checkpoint_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "result": asdict(result), "config": asdict(config)}, path)


def _load_checkpoint(model, optimizer, result: TrainResult, config: TrainConfig) -> int:
    path = _checkpoint_path(config) if config.checkpoint_dir else None
    if path is None or not path.exists():
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {path}")
    state = torch.load(path, map_location=model.device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for key, value in state["result"].items():
        setattr(result, key, value)
    return state["step"]
