"""The SFT loop, written out: the schedule, the optimizer and `train`, which reads like notebook 03's `sft_loop`.

No `Trainer`: every step is here to be read. The loss and its token-normalised accumulation are in `loss`,
checkpoints in `checkpoint`, the run's settings and record in `run`; the loop's wall-time and device-sync
bookkeeping is one small object, `StepClock`, so the loop itself shows only the steps of SFT.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sft_course.checkpoint import load_checkpoint, save_checkpoint
from sft_course.collate import pad_batch, token_budget_micro_batches
from sft_course.loss import accumulate_step, count_target_tokens, evaluate_loss, loss_function, uses_logits_on_targets
from sft_course.run import TrainConfig, TrainResult


def cosine_lr(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup to `peak_lr`, then cosine decay to `min_ratio * peak_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_batches(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The example indices of each optimizer step of one epoch: a fresh seeded shuffle per epoch."""
    order = list(range(n_examples))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


@dataclass(frozen=True)
class StepPlan:
    """The optimizer steps of a run over `n_examples` (`plan_steps`): the schedule spans `total_steps`, warms up
    for `warmup_steps`, and this call stops after `last_step` (`config.max_steps`, e.g. an interruption)."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    last_step: int


def plan_steps(n_examples: int, config: TrainConfig) -> StepPlan:
    """The run's step plan: `config.total_steps`, or `epochs` passes of `ceil(n_examples / batch_size)` steps."""
    steps_per_epoch = math.ceil(n_examples / config.batch_size)
    total_steps = config.total_steps or max(1, round(config.epochs * steps_per_epoch))
    warmup_steps = max(1, round(config.warmup_ratio * total_steps))
    return StepPlan(steps_per_epoch, total_steps, warmup_steps, min(total_steps, config.max_steps or total_steps))


def step_indices(n_examples: int, config: TrainConfig, plan: StepPlan, start_step: int = 0):
    """(step, example indices) of each optimizer step from `start_step` to `plan.last_step`: the data order is a
    pure function of (seed, epoch), so a resumed run sees the same batches as an uninterrupted one."""
    order, order_epoch = [], None
    for step in range(start_step, plan.last_step):
        epoch, index_in_epoch = divmod(step, plan.steps_per_epoch)
        if epoch != order_epoch:  # one shuffle per epoch, not per step (7,500 examples: ~3 ms a shuffle)
            order, order_epoch = step_batches(n_examples, config.batch_size, config.seed, epoch), epoch
        yield step, order[index_in_epoch]


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


SYNC_EVERY = 10  # optimizer steps between reads of the loss and gradient norm from the device


def _read_back(pending: list[dict]) -> None:
    """Turn the device tensors of pending history entries into floats (one wait for the device), then forget them."""
    for entry in pending:
        entry["loss"], entry["grad_norm"] = float(entry["loss"]), float(entry["grad_norm"])
    pending.clear()


class StepClock:
    """The loop's bookkeeping of time and device syncs, so that `train` shows only the steps of SFT.

    - `result.train_seconds` counts the optimizer steps' wall time, continuing a resumed run's (`prior_seconds`),
      without evaluations and checkpoint saves (`left_out`, timed by `excluded`);
    - `result.first_step_seconds` is the first step of this call (compilation, warm-up);
    - a history entry's loss and gradient norm stay on the device until read back: reading one waits for the
      device's work to finish, so `record` does it on the first and last steps, before an evaluation or a save,
      and every `SYNC_EVERY` steps, not every step.
    """

    def __init__(self, result: TrainResult, start_step: int):
        self.result, self.start_step = result, start_step
        self.prior_seconds, self.left_out = result.train_seconds, 0.0
        self.pending: list[dict] = []  # history entries whose loss and grad norm are still on the device
        self.began = time.perf_counter()

    def record(self, entry: dict, sync: bool) -> bool:
        """Append a step's history entry; read pending values back when `sync` or every `SYNC_EVERY` steps (then
        return True: the entry's loss is a float); update the run's training time."""
        step = entry["step"] - 1
        self.result.history.append(entry)
        self.pending.append(entry)
        synced = sync or step == self.start_step or entry["step"] % SYNC_EVERY == 0
        if synced:
            _read_back(self.pending)
        self.result.train_seconds = self.prior_seconds + time.perf_counter() - self.began - self.left_out
        if step == self.start_step:
            self.result.first_step_seconds = self.result.train_seconds - self.prior_seconds
        return synced

    @contextmanager
    def excluded(self, into: str | None = None):
        """Time spent inside is not training time; with `into`, it is added to that field of the result."""
        began = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - began
            self.left_out += elapsed
            if into:
                setattr(self.result, into, getattr(self.result, into) + elapsed)


def _check_config(config: TrainConfig) -> None:
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
    if config.micro_batch_tokens is not None and (config.micro_batch_tokens < 1 or config.grad_accum_steps != 1):
        raise ValueError(
            f"micro_batch_tokens must be at least 1 and leaves grad_accum_steps at 1 (it chooses the micro-batches), "
            f"got micro_batch_tokens={config.micro_batch_tokens}, grad_accum_steps={config.grad_accum_steps}"
        )


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
    _check_config(config)
    uses_logits_on_targets(model, config, distributed=accelerator is not None)  # refuse a forced one early
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(param_groups(model, config.lr_multipliers), config)
    plan = plan_steps(len(train_examples), config)
    result = TrainResult()
    start_step = load_checkpoint(model, optimizer, result, config) if resume else 0
    rank, n_processes, backward, raw_model = 0, 1, None, model
    if accelerator is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
        rank, n_processes, backward = accelerator.process_index, accelerator.num_processes, accelerator.backward
    device = next(raw_model.parameters()).device
    loss_fn = loss_function(model, config, distributed=accelerator is not None)
    micro_size = config.batch_size // config.grad_accum_steps
    eval_batch = 64 if config.grad_accum_steps == 1 else micro_size  # micro-batches were asked for to save memory
    model.train()
    clock = StepClock(result, start_step)
    bar = tqdm(
        step_indices(len(train_examples), config, plan, start_step),
        desc="SFT",
        total=plan.last_step - start_step,
        disable=not progress,
    )
    for step, indices in bar:
        indices = indices[rank::n_processes]
        if config.micro_batch_tokens:
            lengths = [len(train_examples[i]["input_ids"]) for i in indices]
            groups = [[indices[k] for k in g] for g in token_budget_micro_batches(lengths, config.micro_batch_tokens)]
        else:
            groups = [indices[j : j + micro_size] for j in range(0, len(indices), micro_size)]
        micro_batches = [pad_batch([train_examples[i] for i in g], pad_token_id) for g in groups]
        lr = cosine_lr(step, plan.total_steps, config.lr, plan.warmup_steps, config.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_multiplier", 1.0)
        step_tokens = sum(count_target_tokens(b["labels"]) for b in micro_batches)
        if accelerator is not None:  # the token count of the whole step, over every process
            step_tokens = int(accelerator.reduce(torch.tensor(step_tokens, device=accelerator.device), "sum"))
        step_loss = accumulate_step(loss_fn, micro_batches, step_tokens / n_processes, backward, device)
        if accelerator is not None:
            step_loss = accelerator.reduce(step_loss, "mean")
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _count_tokens(result, step_tokens, micro_batches)
        is_last = step + 1 == plan.last_step
        do_eval = bool(eval_examples) and ((config.eval_every and (step + 1) % config.eval_every == 0) or is_last)
        do_save = bool(config.checkpoint_dir and config.save_every and ((step + 1) % config.save_every == 0 or is_last))
        entry = {
            "step": step + 1,
            "loss": step_loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "epoch": (step + 1) / plan.steps_per_epoch,
            "tokens": step_tokens,
        }
        if clock.record(entry, sync=is_last or do_eval or do_save):
            bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if do_eval:
            with clock.excluded("eval_seconds"):
                result.evals.append(
                    {
                        "step": step + 1,
                        "eval_loss": evaluate_loss(raw_model, eval_examples, pad_token_id, batch_size=eval_batch),
                    }
                )
        if do_save:  # one writer: under accelerate the processes hold the same weights and optimizer state
            with clock.excluded():
                if accelerator is None or accelerator.is_main_process:
                    save_checkpoint(raw_model, optimizer, result, step + 1, config)
                if accelerator is not None:
                    accelerator.wait_for_everyone()
    result.steps = plan.last_step
    raw_model.eval()
    return result


def _count_tokens(result: TrainResult, step_tokens: int, micro_batches: list[dict]) -> None:
    """Add a step's target tokens, and this process's computed and padding token slots (counted on the host
    tensors: no device sync), to the run's record."""
    result.target_tokens += step_tokens
    for b in micro_batches:
        slots = b["input_ids"].numel()
        result.computed_tokens += slots
        result.padding_tokens += slots - int(b["attention_mask"].sum())
