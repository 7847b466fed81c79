"""Accounting: parameters, AdamW state, training-step memory and sizes on disk, for full fine-tuning and LoRA."""

import pytest
import torch
from helpers import examples, tiny_model

from sft_course.accounting import (
    adapter_size_bytes,
    optimizer_state_bytes,
    saved_activation_bytes,
    total_parameters,
    trainable_parameters,
    training_memory_bytes,
)
from sft_course.collate import pad_batch
from sft_course.lora import add_lora


def test_adapter_size_names_the_folder_when_there_is_no_adapter(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        adapter_size_bytes(tmp_path)


def test_optimizer_state_bytes_matches_adamw(tokenizer):
    for model in (tiny_model(tokenizer), add_lora(tiny_model(tokenizer), tokenizer)):
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for k, t in s.items() if k != "step")
        assert optimizer_state_bytes(model) == state
    full, lora = tiny_model(tokenizer), add_lora(tiny_model(tokenizer), tokenizer)
    assert optimizer_state_bytes(lora) < optimizer_state_bytes(full) / 4


def test_training_memory_counts_parts_and_activations_scale_with_the_batch(tokenizer):
    one = pad_batch(examples(tokenizer), tokenizer.pad_token_id)
    two = {k: torch.cat([v, v]) for k, v in one.items()}
    full, lora = tiny_model(tokenizer), add_lora(tiny_model(tokenizer), tokenizer)
    single, double = saved_activation_bytes(full, one), saved_activation_bytes(full, two)
    assert single > 0 and 1.9 < double / single < 2.1
    memory = training_memory_bytes(lora, one)
    assert memory["gradients"] == 4 * trainable_parameters(lora)
    assert memory["optimizer"] == 2 * memory["gradients"]
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total")
    assert training_memory_bytes(full, one)["gradients"] == 4 * total_parameters(full)
