"""What a model trains, holds and stores: parameter counts, training-step memory, sizes on disk.

The same counts serve full fine-tuning and LoRA, so the two are compared with one ruler.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sft_course.loss import per_token_loss
from sft_course.modeling import ADAPTER_WEIGHT_FILES

ADAM_STATES_PER_PARAM = 2  # AdamW keeps exp_avg and exp_avg_sq for each trainable parameter


def trainable_parameters(model) -> int:
    """Parameters that receive gradients (and optimizer state)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_parameters(model) -> int:
    """All distinct parameters (tied ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def optimizer_state_bytes(model, states_per_param: int = ADAM_STATES_PER_PARAM) -> int:
    """Bytes of AdamW state for `model`'s trainable parameters: two tensors per parameter, its dtype each.

    Mixed-precision training keeps fp32 master copies on top of this; the course trains in fp32.
    """
    return sum(states_per_param * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def saved_activation_bytes(model, batch: dict) -> int:
    """Bytes of the tensors that the forward pass of `batch` keeps for the backward pass (activations).

    Counted with `torch.autograd.graph.saved_tensors_hooks`, each storage once, the model's own parameters
    and buffers excluded (they are counted as weights). Works the same on any device.
    """
    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = next(model.parameters()).device
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        loss = per_token_loss(out.logits, batch["labels"].to(device)).sum()
    del out, loss
    return sum(saved.values())


def training_memory_bytes(model, batch: dict) -> dict:
    """What one AdamW training step on `batch` holds, tensor by tensor: weights, gradients, optimizer, activations.

    A count, not a measurement of the process: the allocator, the framework and temporary buffers add to it.
    On a GPU compare with `torch.cuda.max_memory_allocated()`.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    gradients = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    parts = {
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer_state_bytes(model),
        "activations": saved_activation_bytes(model, batch),
    }
    return {**parts, "total": sum(parts.values())}


def adapter_size_bytes(folder: str | os.PathLike) -> int:
    """Size on disk of the adapter weights that `PeftModel.save_pretrained(folder)` wrote."""
    for name in ADAPTER_WEIGHT_FILES:
        path = Path(folder) / name
        if path.exists():
            return path.stat().st_size
    raise FileNotFoundError(f"no adapter weights ({' or '.join(ADAPTER_WEIGHT_FILES)}) in {folder}")


def weights_size_bytes(folder: str | os.PathLike) -> int:
    """Size on disk of every weight file (`*.safetensors`, `*.bin`) in a saved model folder."""
    files = [p for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".bin")]
    if not files:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin) in {folder}")
    return sum(p.stat().st_size for p in files)
