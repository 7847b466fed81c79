"""NEFTune: noise of the paper's scale in training mode only, and a hook that comes off again."""

import math

import pytest
import torch

from sft_course.neftune import add_neftune, neftune, neftune_noise


def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config)


def test_noise_is_bounded_by_alpha_over_sqrt_length_times_width():
    x = torch.zeros(4, 10, 16)
    noisy = neftune_noise(x, alpha=5.0, generator=torch.Generator().manual_seed(0))
    bound = 5.0 / math.sqrt(10 * 16)
    assert noisy.abs().max() <= bound
    assert noisy.abs().max() > 0.5 * bound  # uniform over the whole interval, not a tiny constant


def test_hook_adds_noise_in_training_only_and_is_removed():
    model = tiny_model()
    ids = torch.tensor([[1, 2, 3, 4]])
    model.eval()
    clean = model(input_ids=ids).logits
    with neftune(model, alpha=5.0):
        assert torch.equal(model(input_ids=ids).logits, clean)  # eval mode: untouched (generation)
        model.train()
        noisy = model(input_ids=ids).logits
        assert not torch.allclose(noisy, clean)
        model.eval()
    model.train()
    assert torch.allclose(model(input_ids=ids).logits, clean, atol=1e-6)  # hook gone after the block


def test_alpha_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        add_neftune(tiny_model(), alpha=0)
