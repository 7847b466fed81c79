"""FLOP counts of training steps, and the matmul peak they are held to: a plain matmul at the model's own shapes in
the run's own precision (float32 for float32 runs, bf16 for bf16 runs), measured on the machine that trains.

`training_flops` counts full fine-tuning (backward = 2x forward); `lora_training_flops` counts a LoRA step, whose
frozen weights need the gradient of their inputs in the backward but not their own (backward = 1x forward for the
base weights, 2x for the small adapters).
"""

from __future__ import annotations

import math
import time

import torch


def matmul_peak(
    device: torch.device, dtype: torch.dtype, shapes: list[tuple[int, int, int]], repeats: int = 5
) -> float:
    """FLOP/s of the fastest plain (M x K) @ (K x N) matmul among `shapes`, best of `repeats` each, in `dtype`."""
    best_rate = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        a @ b  # warm-up
        best = math.inf
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - began)
        best_rate = max(best_rate, 2 * m * k * n / best)
    return best_rate


def model_shapes(model, rows: int = 512) -> list[tuple[int, int, int]]:
    """The matmul shapes of a decoder's linear layers (and their transposes) for `rows` tokens at a time."""
    sizes = {
        (m.in_features, m.out_features)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and min(m.in_features, m.out_features) >= 64
    }
    sizes = {(k, n) for k, n in sizes if n != model.config.vocab_size}
    return sorted({(rows, k, n) for k, n in sizes} | {(rows, n, k) for k, n in sizes})


def lora_training_flops(model, micro_batches: list[tuple[int, int, int, int]], rank: int) -> float:
    """FLOPs of LoRA training on micro-batches given as (rows, padded width, rows through the output layer, shared
    prefix run once): frozen linear layers 4 * in * out per computed token slot (forward, and the input gradient),
    their adapters 6 * rank * (in + out), the frozen output layer 4 * d * vocab per row it scores, attention
    3 * 4 * width * (heads x head size) per slot and layer."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    adapted = {}  # id of each frozen nn.Linear -> (the layer, whether PEFT wrapped it with an adapter)
    for name, module in base.named_modules():
        linear = getattr(module, "base_layer", module)  # PEFT's LoRA layer wraps the frozen nn.Linear
        if isinstance(linear, torch.nn.Linear) and "lora_" not in name and linear.out_features != config.vocab_size:
            adapted[id(linear)] = (linear, adapted.get(id(linear), (linear, False))[1] or linear is not module)
    body = sum(
        4 * m.in_features * m.out_features + (6 * rank * (m.in_features + m.out_features) if lora else 0)
        for m, lora in adapted.values()
    )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = config.num_hidden_layers * 12 * config.num_attention_heads * head_dim
    head = 4 * config.hidden_size * config.vocab_size
    total = 0.0
    for rows, width, head_rows, prefix in micro_batches:
        slots = prefix + rows * (width - prefix)
        total += body * slots + attention * width * slots + head * head_rows
    return total
