"""The SFT loss and its gradient: shifted cross-entropy on target tokens, normalised by the target tokens of the
whole optimizer step, and the faster paths that compute the same number.

- the loss: `per_token_loss`, `sft_loss`, `count_target_tokens`, `summed_token_loss`, `evaluate_loss`;
- the speed paths: the output layer on target positions only (`uses_logits_on_targets`, refused where a model's
  forward rescales its logits), `torch.compile` with an on-disk cache (`loss_function`, `compile_cache_dir`), and
  with the lean loss LoRA's adapter products in CPU-fast layouts (`adapter_context`);
- gradient accumulation: `accumulate_gradients` divides each micro-batch's summed loss by the target tokens of the
  *whole* step, so a batch of 32 gives the same gradient as 4 accumulated micro-batches of 8. Averaging each
  micro-batch's mean loss instead (what `transformers` did before its 2024 fix) over-weights the tokens of short
  micro-batches;
- for the lesson only (notebook 06 compares them): that pre-2024 bug, `naive_accumulate_gradients`, and
  `flat_gradient`, the gradient a way of accumulating leaves behind. They live here, beside the correct version,
  because they are about the loss's normalisation and nothing else.
"""

from __future__ import annotations

import contextlib
import os
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn.functional as F

from sft_course.collate import pad_batch
from sft_course.lean_loss import lean_summed_loss
from sft_course.lora_products import lora_products
from sft_course.masking import IGNORE_INDEX
from sft_course.run import TrainConfig


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
    """`batch -> summed target-token loss` as `train` computes it: eager by default (with `config.lean`, the lean
    loss of `lean_loss`); with `config.compile`,
    compiled by `torch.compile` with dynamic shapes (one graph for every padded length) and an on-disk
    cache, so a second run, or a restarted notebook kernel, skips most of the compilation."""
    on_targets = uses_logits_on_targets(model, config, distributed)
    if config.lean and not on_targets:
        raise ValueError("lean=True runs the output layer on target positions only: not with logits_on_targets=False")

    summed_loss = lean_summed_loss if config.lean else lambda m, b: summed_token_loss(m, b, on_targets)

    def summed(input_ids, attention_mask, labels):
        return summed_loss(model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})

    if config.compile:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        summed = torch.compile(summed, dynamic=True)
    context = precision_context(next(model.parameters()).device, config)
    adapters = adapter_context(model, config)

    def run(batch):
        with context(), adapters():
            return summed(batch["input_ids"], batch["attention_mask"], batch["labels"])

    return run


def adapter_context(model, config: TrainConfig):
    """The context the forward pass runs in for LoRA's adapters (called anew for each micro-batch): with the lean
    loss or `config.lora_products`, uncompiled, PEFT's LoRA layers compute their adapter products in the layouts a
    CPU's matmul is fast at (`lora_products`, the same layer up to float rounding); otherwise PEFT's own forward."""
    if (config.lean or config.lora_products) and not config.compile:
        return lambda: lora_products(model)
    return contextlib.nullcontext


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512 bf16, AMX): without them a bf16 matmul is emulated,
    about a hundred times slower than float32 (benchmarks/README.md)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def precision_context(device: torch.device, config: TrainConfig):
    """The context the forward pass runs in (called anew for each micro-batch): bf16 autocast, with fp32 weights
    and optimizer state, when `config.bf16` (None: on CUDA only); otherwise plain float32."""
    if not (config.bf16 if config.bf16 is not None else device.type == "cuda"):
        return contextlib.nullcontext
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"bf16=True autocasts on CUDA or a CPU, and the model is on {device.type}")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def accumulate_step(loss_fn, micro_batches: list[dict], denominator: float, backward, device) -> torch.Tensor:
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
    return accumulate_step(loss_fn, micro_batches, denominator, backward, device).item(), local_tokens


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
