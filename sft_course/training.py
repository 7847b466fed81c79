"""The SFT loop, written out: shifted cross-entropy on target tokens, accumulation, schedule, clipping, resume.

No `Trainer`: every step is here to be read. The one subtle point is normalisation. The loss of an optimizer
step is the sum of the per-token losses over *all* its target tokens divided by their count, so a batch of
32 gives the same gradient as 4 accumulated micro-batches of 8. Averaging each micro-batch's mean loss
instead (what `transformers` did before its 2024 fix) over-weights the tokens of short micro-batches.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import re
import time
import zipfile
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sft_course.collate import pad_batch
from sft_course.defaults import BATCH_SIZE, EPOCHS, LEARNING_RATES
from sft_course.errors import CheckpointError
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
    # Speed (benchmarks/README.md). The default: PyTorch's fused AdamW kernel (the same update rule in one kernel)
    # and the output layer on target positions only (the same loss, summed in another order). Compilation and
    # bf16 change more than the order of a sum, or cost time up front, so they are opt-in.
    fused_adamw: bool = True  # torch.optim.AdamW(fused=True) where every parameter allows it (see make_optimizer)
    compile: bool = False  # torch.compile the loss; compiled kernels are cached on disk (compile_cache_dir)
    # project only the positions that predict a target token to the vocabulary; None: wherever it is possible
    # (one process, a model whose forward does not rescale its logits), True: required, False: every position
    logits_on_targets: bool | None = None
    bf16: bool | None = None  # bf16 autocast of the forward pass (fp32 weights and state); None: on CUDA only
    # {substring of a parameter name: factor}: those parameters train at factor x the scheduled rate (first match)
    lr_multipliers: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a run did: per-step history, evaluations, wall time and the number of target tokens trained on."""

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0  # the optimizer steps' wall time: evaluations and checkpoint saves are left out
    target_tokens: int = 0
    steps: int = 0
    eval_seconds: float = 0.0  # the periodic evaluations' wall time (not in train_seconds)
    first_step_seconds: float = 0.0  # the first step of the latest call (in train_seconds): compilation, warm-up
    computed_tokens: int = 0  # token slots the forward passes computed, padding included
    padding_tokens: int = 0  # of which padding

    @property
    def final_train_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")

    @property
    def target_tokens_per_second(self) -> float:
        return self.target_tokens / self.train_seconds if self.train_seconds else 0.0

    @property
    def padding_share(self) -> float:
        """The share of computed token slots that were padding."""
        return self.padding_tokens / self.computed_tokens if self.computed_tokens else 0.0


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
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
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


def make_optimizer(params, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW as `train` builds it: `lr`, `weight_decay` from the config (AdamW's own default decay is 0.01,
    ours is 0.0), betas (0.9, 0.999), eps 1e-8, and PyTorch's fused kernel when `config.fused_adamw` and every
    parameter is a floating-point tensor on a device that has the kernel (CPU, CUDA, MPS, XPU)."""
    params = list(params)  # tensors, or param groups ({"params": [...], ...}) as `param_groups` makes them
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    fused = config.fused_adamw and all(
        t.is_floating_point() and t.device.type in ("cpu", "cuda", "mps", "xpu") for t in tensors
    )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


def summed_token_loss(model, batch: dict, logits_on_targets: bool = False) -> torch.Tensor:
    """The per-token next-token losses of one batch, summed over its target tokens (not yet normalised).

    `logits_on_targets=True` runs the decoder, keeps the hidden states of the positions that predict a
    target token, and projects only those to the vocabulary: the same loss (up to float rounding) without
    the logits of prompt and padding positions, which are most of the output layer's work.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    if not logits_on_targets:
        return per_token_loss(model(**inputs).logits, batch["labels"]).sum()
    hidden = model.get_decoder()(**inputs).last_hidden_state[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[keep]).float()
    return F.cross_entropy(logits, targets[keep], reduction="sum")


def _logits_on_targets_refusal(model) -> str | None:
    """Why the output layer cannot be run on target positions alone for `model`, or None when it can."""
    config = getattr(model, "config", None)
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            return f"this model's config sets {name}={getattr(config, name)!r}, which its forward applies to the logits"
    if not hasattr(model, "get_decoder") or model.get_output_embeddings() is None:
        return "the model has no decoder and output embeddings (lm_head) to call separately"
    return None


def uses_logits_on_targets(model, config: TrainConfig, distributed: bool = False) -> bool:
    """Whether `train` projects only the target positions to the vocabulary (see `TrainConfig.logits_on_targets`)."""
    if config.logits_on_targets is False:
        return False
    refusal = (
        (
            "it calls the decoder and the output layer separately, which would bypass the DistributedDataParallel "
            "wrapper of `accelerator.prepare`: use it in one process only"
        )
        if distributed
        else _logits_on_targets_refusal(model)
    )
    if refusal and config.logits_on_targets:
        raise ValueError(f"logits_on_targets: {refusal}; use logits_on_targets=False (every position)")
    return refusal is None


def compile_cache_dir() -> Path:
    """Where inductor keeps compiled kernels between runs (and kernel restarts): $TORCHINDUCTOR_CACHE_DIR if set,
    else ~/.cache/sft-course/torchinductor (under $XDG_CACHE_HOME when that is set)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "sft-course" / "torchinductor"


def loss_function(model, config: TrainConfig, distributed: bool = False):
    """`batch -> summed target-token loss` as `train` computes it: eager by default; with `config.compile`,
    compiled by `torch.compile` with dynamic shapes (one graph for every padded length) and an on-disk
    cache, so a second run, or a restarted notebook kernel, skips most of the compilation."""
    on_targets = uses_logits_on_targets(model, config, distributed)

    def summed(input_ids, attention_mask, labels):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        return summed_token_loss(model, batch, on_targets)

    if config.compile:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        summed = torch.compile(summed, dynamic=True)
    device = next(model.parameters()).device
    if config.bf16 if config.bf16 is not None else device.type == "cuda":
        if device.type not in ("cuda", "cpu"):
            raise ValueError(f"bf16=True autocasts on CUDA or a CPU, and the model is on {device.type}")

        def run(batch):  # on a CPU it pays where the CPU has bf16 matrix instructions (benchmarks/README.md)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return summed(batch["input_ids"], batch["attention_mask"], batch["labels"])

        return run
    return lambda batch: summed(batch["input_ids"], batch["attention_mask"], batch["labels"])


def _accumulate(loss_fn, micro_batches: list[dict], denominator: float, backward, device) -> torch.Tensor:
    """Backward over the micro-batches; return the step loss as a float64 tensor, left on the device (no sync)."""
    if denominator == 0:
        raise ValueError("no target tokens in this batch: every label is -100, so there is nothing to learn from")
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    for batch in micro_batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss = loss_fn(batch) / denominator
        (backward or torch.Tensor.backward)(loss)
        step_loss += loss.detach().double()
    return step_loss


def accumulate_gradients(
    model, micro_batches: list[dict], num_target_tokens: float | None = None, backward=None
) -> tuple[float, int]:
    """Backward over the micro-batches of one optimizer step; return (step loss, target tokens here).

    Each micro-batch's summed loss is divided by the target tokens of the *whole* step, so the accumulated
    gradient equals that of one big batch, whatever the micro-batch lengths. Under data parallelism pass
    the step's token count over all processes divided by their number: the processes' gradients are
    averaged, which restores the sum over all tokens divided by all tokens. `backward` defaults to
    `loss.backward()` (`accelerator.backward` under `accelerate`).
    """
    local_tokens = sum(count_target_tokens(b["labels"]) for b in micro_batches)
    denominator = local_tokens if num_target_tokens is None else num_target_tokens
    device = next(model.parameters()).device  # a DistributedDataParallel wrapper has no .device
    loss_fn = lambda batch: summed_token_loss(model, batch)  # noqa: E731
    return _accumulate(loss_fn, micro_batches, denominator, backward, device).item(), local_tokens


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
    """Mean loss per target token over `examples` (token-weighted, not batch-weighted).

    Like training, it projects only the target positions to the vocabulary where the model allows it: the
    logits of a 49k-token vocabulary for every position of a batch would be most of the memory.
    """
    was_training = model.training
    model.eval()
    on_targets = _logits_on_targets_refusal(model) is None
    total, tokens = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = pad_batch(examples[i : i + batch_size], pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        total += summed_token_loss(model, batch, on_targets).item()
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
    if config.total_steps is None and not config.epochs > 0:  # 0 or negative epochs would still train one step
        raise ValueError(f"epochs must be greater than 0, got {config.epochs}")
    if config.lr <= 0 or config.batch_size < 1:
        raise ValueError(f"lr must be > 0 and batch_size >= 1, got lr={config.lr}, batch_size={config.batch_size}")
    if config.batch_size % config.grad_accum_steps:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by grad_accum_steps {config.grad_accum_steps}"
        )
    uses_logits_on_targets(model, config, distributed=accelerator is not None)  # refuse a forced one early
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(param_groups(model, config.lr_multipliers), config)
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
    device = next(raw_model.parameters()).device
    loss_fn = loss_function(model, config, distributed=accelerator is not None)
    last_step = min(total_steps, config.max_steps or total_steps)
    micro_size = config.batch_size // config.grad_accum_steps
    eval_batch = 64 if config.grad_accum_steps == 1 else micro_size  # micro-batches were asked for to save memory
    model.train()
    prior_seconds, left_out = result.train_seconds, 0.0  # left_out: evaluation and checkpoint time
    pending: list[dict] = []  # history entries whose loss and grad norm are still on the device
    order, order_epoch = [], None  # the current epoch's batches of example indices
    began = time.perf_counter()
    bar = tqdm(range(start_step, last_step), desc="SFT", disable=not progress)
    for step in bar:
        epoch, index_in_epoch = divmod(step, steps_per_epoch)
        if epoch != order_epoch:  # one shuffle per epoch, not per step (7,500 examples: ~3 ms a shuffle)
            order, order_epoch = step_batches(len(train_examples), config.batch_size, config.seed, epoch), epoch
        indices = order[index_in_epoch]
        indices = indices[rank::n_processes]
        micro_batches = [
            pad_batch([train_examples[i] for i in indices[j : j + micro_size]], pad_token_id)
            for j in range(0, len(indices), micro_size)
        ]
        lr = cosine_lr(step, total_steps, config.lr, warmup_steps, config.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_multiplier", 1.0)
        step_tokens = sum(count_target_tokens(b["labels"]) for b in micro_batches)
        if accelerator is not None:  # the token count of the whole step, over every process
            step_tokens = int(accelerator.reduce(torch.tensor(step_tokens, device=accelerator.device), "sum"))
        step_loss = _accumulate(loss_fn, micro_batches, step_tokens / n_processes, backward, device)
        if accelerator is not None:
            step_loss = accelerator.reduce(step_loss, "mean")
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.target_tokens += step_tokens
        for b in micro_batches:  # this process's share, counted on the host tensors (no device sync)
            slots = b["input_ids"].numel()
            result.computed_tokens += slots
            result.padding_tokens += slots - int(b["attention_mask"].sum())
        entry = {
            "step": step + 1,
            "loss": step_loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "epoch": (step + 1) / steps_per_epoch,
            "tokens": step_tokens,
        }
        result.history.append(entry)
        pending.append(entry)
        is_last = step + 1 == last_step
        do_eval = bool(eval_examples) and ((config.eval_every and (step + 1) % config.eval_every == 0) or is_last)
        do_save = bool(config.checkpoint_dir and config.save_every and ((step + 1) % config.save_every == 0 or is_last))
        # Reading a value from the device waits for its work to finish: do it every few steps, not every step.
        if step == start_step or is_last or do_eval or do_save or (step + 1) % SYNC_EVERY == 0:
            _read_back(pending)
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        result.train_seconds = prior_seconds + time.perf_counter() - began - left_out
        if step == start_step:
            result.first_step_seconds = result.train_seconds - prior_seconds
        if do_eval:
            t = time.perf_counter()
            result.evals.append(
                {
                    "step": step + 1,
                    "eval_loss": evaluate_loss(raw_model, eval_examples, pad_token_id, batch_size=eval_batch),
                }
            )
            result.eval_seconds += time.perf_counter() - t
            left_out += time.perf_counter() - t
        if do_save:  # one writer: under accelerate the processes hold the same weights and optimizer state
            t = time.perf_counter()
            if accelerator is None or accelerator.is_main_process:
                _save_checkpoint(raw_model, optimizer, result, step + 1, config)
            if accelerator is not None:
                accelerator.wait_for_everyone()
            left_out += time.perf_counter() - t
    result.steps = last_step
    raw_model.eval()
    return result


SYNC_EVERY = 10  # optimizer steps between reads of the loss and gradient norm from the device


def _read_back(pending: list[dict]) -> None:
    """Turn the device tensors of pending history entries into floats (one wait for the device), then forget them."""
    for entry in pending:
        entry["loss"], entry["grad_norm"] = float(entry["loss"]), float(entry["grad_norm"])
    pending.clear()


CHECKPOINT_FILE = "checkpoint.pt"


def _checkpoint_path(config: TrainConfig) -> Path:
    return Path(config.checkpoint_dir) / CHECKPOINT_FILE


def _save_checkpoint(model, optimizer, result: TrainResult, step: int, config: TrainConfig) -> None:
    """Write the checkpoint to a temporary file next to it, then rename it over the old one (`os.replace`).

    A kill during the save leaves the previous checkpoint whole: the rename is atomic on one file system.
    Everything stored is plain data (dicts, lists, numbers, strings, tensors), so `weights_only=True` loads it.
    """
    path = _checkpoint_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # one per process: `accelerate launch` runs several
    try:
        with open(tmp, "wb") as f:
            torch.save(
                {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "result": asdict(result),
                    "config": asdict(config),
                },
                f,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint_file(path: str | os.PathLike, map_location=None) -> dict:
    """A checkpoint's contents, loaded with `weights_only=True`: a file holding any pickled object other than
    plain data and tensors is refused (`CheckpointError`) without running it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is no checkpoint of ours
        raise CheckpointError(f"{path}: not a readable checkpoint (not the zip archive that torch.save writes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        reason = f"it calls {found.group(1)}" if found else str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data, which "
            f"could run code when unpickled ({reason})"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from None


# Fields of TrainConfig that change the run's losses: a checkpoint only resumes a run that agrees on them.
_RUN_FIELDS = (
    "lr",
    "epochs",
    "total_steps",
    "batch_size",
    "grad_accum_steps",
    "warmup_ratio",
    "min_lr_ratio",
    "weight_decay",
    "max_grad_norm",
    "seed",
)


def _load_checkpoint(model, optimizer, result: TrainResult, config: TrainConfig) -> int:
    if not config.checkpoint_dir:
        raise CheckpointError("resume=True needs config.checkpoint_dir, the folder of the checkpoint to resume")
    path = _checkpoint_path(config)
    state = load_checkpoint_file(path, map_location=next(model.parameters()).device)
    saved = state.get("config", {})
    differ = [
        f"{k} {saved[k]!r} there, {getattr(config, k)!r} here"
        for k in _RUN_FIELDS
        if k in saved and saved[k] != getattr(config, k)
    ]
    if differ:
        raise CheckpointError(f"{path} is from a run with other settings: {'; '.join(differ)}")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit this model: {str(error).splitlines()[0]}") from None
    for key, value in state["result"].items():
        setattr(result, key, value)
    return state["step"]
