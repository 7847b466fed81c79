"""NEFTune: uniform noise on the input embeddings during fine-tuning (Jain et al., 2023, arXiv 2310.05914).

While the model is in training mode, each embedding vector gets noise drawn uniformly from [-1, 1] and scaled by
`alpha / sqrt(L * d)` (L: sequence length, d: embedding width), the scaling of the paper and of
`transformers`' `neftune_noise_alpha` / TRL's `SFTConfig(neftune_noise_alpha=...)`. In eval mode (generation,
evaluation) the hook does nothing.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch


def neftune_noise(embeddings: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """`embeddings` (batch, L, d) plus uniform noise of scale `alpha / sqrt(L * d)`."""
    _, length, width = embeddings.shape
    scale = alpha / math.sqrt(length * width)
    noise = torch.rand(embeddings.shape, generator=generator, device=embeddings.device, dtype=embeddings.dtype)
    return embeddings + (2 * noise - 1) * scale


def add_neftune(model, alpha: float = 5.0):
    """Register the NEFTune hook on `model`'s input embeddings; returns the hook handle (`.remove()` to undo)."""
    if alpha <= 0:
        raise ValueError(f"NEFTune alpha must be positive, got {alpha}")

    def hook(module, inputs, output):
        return neftune_noise(output, alpha) if module.training else output

    return model.get_input_embeddings().register_forward_hook(hook)


@contextmanager
def neftune(model, alpha: float = 5.0):
    """`with neftune(model, alpha): train(...)`: noisy embeddings inside the block, none after it."""
    handle = add_neftune(model, alpha)
    try:
        yield model
    finally:
        handle.remove()
