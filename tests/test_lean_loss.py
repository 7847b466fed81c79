"""The lean loss computes the plain loss and its gradient: chunked cross-entropy, and the shared prefix run once."""

import random

import pytest
import torch
import torch.nn.functional as F
from helpers import PAD, VOCAB, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model

from sft_course.collate import pad_batch
from sft_course.lean_loss import chunked_cross_entropy, lean_summed_loss, shared_prefix_length
from sft_course.loss import summed_token_loss
from sft_course.modeling import quiet_checkpointing_deprecation


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), chunk=st.integers(1, 50), seed=st.integers(0, 1000))
def test_chunked_cross_entropy_equals_the_plain_loss_and_its_gradients(rows, chunk, seed):
    torch.manual_seed(seed)
    head = torch.nn.Linear(8, 30, bias=False)
    hidden = torch.randn(rows, 8, requires_grad=True)
    targets = torch.randint(0, 30, (rows,))
    plain = F.cross_entropy(head(hidden), targets, reduction="sum")
    plain_grads = torch.autograd.grad(3.0 * plain, [hidden, head.weight])
    chunked = chunked_cross_entropy(hidden, head, targets, chunk_rows=chunk)
    chunked_grads = torch.autograd.grad(3.0 * chunked, [hidden, head.weight])
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-5)
    for mine, reference in zip(chunked_grads, plain_grads):
        # The weight gradient sums the rows chunk by chunk: another order, float32 rounding of about 1e-6.
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5)


def test_chunked_cross_entropy_of_a_frozen_head_under_no_grad():
    head = torch.nn.Linear(4, 10, bias=False).requires_grad_(False)
    hidden, targets = torch.randn(7, 4), torch.randint(0, 10, (7,))
    with torch.no_grad():
        loss = chunked_cross_entropy(hidden, head, targets, chunk_rows=3)
    assert loss.item() == pytest.approx(F.cross_entropy(head(hidden), targets, reduction="sum").item(), rel=1e-6)
    with pytest.raises(ValueError, match="chunk_rows"):
        chunked_cross_entropy(hidden, head, targets, chunk_rows=0)


def shared_prefix_examples(n: int, prefix_length: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    prefix = [rng.randrange(1, VOCAB) for _ in range(prefix_length)]
    out = []
    for _ in range(n):
        prompt = prefix + [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 6))]
        response = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 8))]
        out.append({"input_ids": prompt + response, "labels": [-100] * len(prompt) + response})
    return out


def test_shared_prefix_length_stops_before_a_scored_position_and_padding():
    batch = pad_batch(shared_prefix_examples(4, 10), PAD)
    assert shared_prefix_length(batch) == 10
    assert shared_prefix_length(batch, minimum=11) == 0
    one = pad_batch(shared_prefix_examples(1, 10), PAD)  # a single row: everything but its last token is shared
    assert shared_prefix_length(one) == len(one["labels"][0]) - (one["labels"][0] != -100).sum() - 1
    unshared = pad_batch(shared_prefix_examples(3, 0, seed=1), PAD)
    assert shared_prefix_length(unshared, minimum=1) in (0, 1)


def gradients(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lora", [False, True])
def test_lean_loss_equals_the_plain_loss_and_gradient(lora):
    model = tiny_model(seed=3)
    if lora:
        torch.manual_seed(0)
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", trainable_token_indices=[5, 7])
        with quiet_checkpointing_deprecation():
            model = get_peft_model(model, config)
        for name, param in model.named_parameters():  # B starts at zero: give it values so its gradient flows
            if "lora_B" in name:
                param.data.normal_(0, 0.1)
    model.train()
    batch = pad_batch(shared_prefix_examples(5, 9, seed=2), PAD)
    assert shared_prefix_length(batch) == 9
    plain = summed_token_loss(model, batch, logits_on_targets=True)
    plain.backward()
    expected = gradients(model)
    model.zero_grad()
    lean = lean_summed_loss(model, batch, chunk_rows=4)
    lean.backward()
    got = gradients(model)
    assert lean.item() == pytest.approx(plain.item(), rel=1e-5)
    assert got.keys() == expected.keys() and got
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_train_with_the_lean_loss_follows_the_same_losses():
    from sft_course.training import TrainConfig, train

    examples = shared_prefix_examples(12, 10, seed=4)
    histories = []
    for lean in (False, True):
        config = TrainConfig(lr=1e-2, total_steps=3, batch_size=6, grad_accum_steps=2, eval_every=0, lean=lean)
        histories.append([h["loss"] for h in train(tiny_model(seed=1), examples, PAD, config, progress=False).history])
    assert histories[1] == pytest.approx(histories[0], rel=1e-4)


def test_the_lean_loss_needs_the_output_layer_on_targets():
    from sft_course.loss import loss_function
    from sft_course.training import TrainConfig

    with pytest.raises(ValueError, match="lean=True"):
        loss_function(tiny_model(), TrainConfig(lean=True, logits_on_targets=False))


def test_the_lean_loss_is_smollm2s_default_only():
    from sft_course.experiment import resolve_run

    assert resolve_run("lora", "smollm2").lean and resolve_run("full", "smollm2").lean
    assert not resolve_run("lora").lean and not resolve_run("full", "some/hub-model").lean


def test_the_lean_loss_runs_the_decoder_once_with_the_prefix_packed_in_front():
    model = tiny_model(seed=3)
    calls = []
    model.get_decoder().register_forward_hook(lambda module, args, kwargs, out: calls.append(1), with_kwargs=True)
    batch = pad_batch(shared_prefix_examples(5, 9, seed=2), PAD)
    lean_summed_loss(model, batch)
    assert len(calls) == 1  # one pass over the prefix and every row's own tokens: no second call, no cache
