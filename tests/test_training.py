"""The SFT loop: loss definition, gradient accumulation, schedule, determinism, checkpoint resume."""

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sft_course.collate import pad_batch
from sft_course.training import (
    TrainConfig,
    accumulate_gradients,
    cosine_lr,
    count_target_tokens,
    flat_gradient,
    naive_accumulate_gradients,
    sft_loss,
    train,
)

PAD = 0
VOCAB = 48


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def random_examples(n: int, seed: int = 0) -> list[dict]:
    """Prompt + response token lists of varied lengths; labels -100 on the prompt."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 12))]
        response = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 10))]
        examples.append({"input_ids": prompt + response, "labels": [-100] * len(prompt) + response})
    return examples


def test_sft_loss_equals_the_transformers_loss_on_one_batch():
    model = tiny_model()
    batch = pad_batch(random_examples(6), PAD)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert torch.allclose(sft_loss(out.logits, batch["labels"]), out.loss, atol=1e-6)


def test_sft_loss_refuses_a_batch_with_no_target_tokens():
    logits = torch.randn(2, 5, VOCAB)
    with pytest.raises(ValueError, match="no target tokens"):
        sft_loss(logits, torch.full((2, 5), -100))


def test_count_target_tokens_skips_the_first_position_and_masked_labels():
    labels = torch.tensor([[5, -100, 7, 8], [-100, -100, -100, 9]])
    assert count_target_tokens(labels) == 3


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    lrs = [cosine_lr(s, 100, 1.0, 10, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[100] == pytest.approx(0.1)


def test_training_lowers_the_loss_and_is_deterministic():
    config = TrainConfig(lr=1e-2, epochs=4, batch_size=8, eval_every=0, seed=3)
    examples = random_examples(32)
    first = train(tiny_model(), examples, PAD, config, eval_examples=examples[:8], progress=False)
    second = train(tiny_model(), examples, PAD, config, progress=False)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    assert first.history[-1]["loss"] < first.history[0]["loss"]
    assert first.evals and first.target_tokens == sum(count_target_tokens(pad_batch([e], PAD)["labels"]) for e in examples) * 4


def test_grad_accumulation_in_train_gives_the_same_run():
    examples = random_examples(32, seed=4)
    base = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0)
    one = train(tiny_model(), examples, PAD, base, progress=False)
    accum = train(tiny_model(), examples, PAD, TrainConfig(**{**base.__dict__, "grad_accum_steps": 4}), progress=False)
    assert [h["loss"] for h in one.history] == pytest.approx([h["loss"] for h in accum.history], abs=1e-5)


def test_resumed_run_reproduces_the_uninterrupted_losses(tmp_path):
    examples = random_examples(40, seed=5)
    full_config = TrainConfig(lr=1e-2, epochs=2, batch_size=8, eval_every=0, seed=1)
    uninterrupted = train(tiny_model(), examples, PAD, full_config, progress=False)

    ckpt = dict(full_config.__dict__, checkpoint_dir=str(tmp_path), save_every=1)
    train(tiny_model(), examples, PAD, TrainConfig(**{**ckpt, "max_steps": 4}), progress=False)
    # a differently initialised model: everything must come from the checkpoint
    resumed = train(tiny_model(seed=99), examples, PAD, TrainConfig(**ckpt), resume=True, progress=False)
    assert len(resumed.history) == len(uninterrupted.history) == 10
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in uninterrupted.history], abs=1e-6)


def test_total_steps_sets_the_run_length_and_spans_the_schedule():
    examples = random_examples(20, seed=7)  # 3 steps per epoch with batches of 8
    run = train(tiny_model(), examples, PAD, TrainConfig(lr=1e-2, total_steps=7, batch_size=8, eval_every=0,
                                                         warmup_ratio=0.0), progress=False)
    assert run.steps == len(run.history) == 7
    assert run.history[-1]["epoch"] == pytest.approx(7 / 3)  # the data order runs on into a third epoch
    assert run.history[-1]["lr"] == pytest.approx(cosine_lr(6, 7, 1e-2, 1))
    as_epochs = train(tiny_model(), examples, PAD, TrainConfig(lr=1e-2, epochs=7 / 3, batch_size=8, eval_every=0,
                                                               warmup_ratio=0.0), progress=False)
    assert [h["loss"] for h in as_epochs.history] == [h["loss"] for h in run.history]
    with pytest.raises(ValueError, match="total_steps"):
        train(tiny_model(), examples, PAD, TrainConfig(total_steps=0), progress=False)


def test_token_normalised_accumulation_equals_one_batch_and_the_mean_of_means_does_not():
    """4 micro-batches of 2 give one batch of 8's gradient; averaging micro-batch means (the pre-2024 bug)
    over-weights short micro-batches. `flat_gradient` measures each on a copy, leaving the model alone."""
    model = tiny_model()
    examples = sorted(random_examples(8, seed=2), key=lambda e: sum(t != -100 for t in e["labels"]))
    one_batch = flat_gradient(model, [pad_batch(examples, PAD)])
    micro = [pad_batch(examples[i:i + 2], PAD) for i in range(0, 8, 2)]
    assert all(p.grad is None for p in model.parameters())
    assert one_batch.shape == (sum(p.numel() for p in model.parameters()),)
    assert torch.allclose(flat_gradient(model, micro), one_batch, atol=1e-6)
    assert not torch.allclose(flat_gradient(model, micro, naive_accumulate_gradients), one_batch, atol=1e-4)


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_model(), random_examples(8), PAD, TrainConfig(checkpoint_dir=str(tmp_path)), resume=True,
              progress=False)


def test_batch_size_must_divide_by_accumulation_steps():
    with pytest.raises(ValueError, match="divisible"):
        train(tiny_model(), random_examples(8), PAD, TrainConfig(batch_size=6, grad_accum_steps=4), progress=False)


def test_training_under_accelerate_matches_the_plain_loop():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # a Trainer made earlier leaves its state behind
    examples = random_examples(24, seed=6)
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0)
    plain = train(tiny_model(), examples, PAD, config, progress=False)
    accelerated = train(tiny_model(), examples, PAD, config, progress=False, accelerator=Accelerator(cpu=True, mixed_precision="no"))
    assert [h["loss"] for h in accelerated.history] == pytest.approx([h["loss"] for h in plain.history], abs=1e-6)


def test_lr_multipliers_give_matching_parameters_their_own_rate():
    from transformers import LlamaConfig, LlamaForCausalLM

    from sft_course.training import TrainConfig, param_groups, train

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))
    groups = param_groups(model, {"embed_tokens": 0.0})
    factors = sorted(g["lr_multiplier"] for g in groups)
    assert factors == [0.0, 1.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    before = model.get_input_embeddings().weight.detach().clone()
    q_before = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    examples = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, -100, 3, 4, 5]}] * 4
    train(model, examples, pad_token_id=0, config=TrainConfig(lr=1e-2, epochs=1, batch_size=2, eval_every=0,
                                                               lr_multipliers={"embed_tokens": 0.0}), progress=False)
    assert torch.equal(model.get_input_embeddings().weight, before)      # factor 0: the rows did not move
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight, q_before)
    with pytest.raises(ValueError, match="match no trainable parameter"):
        param_groups(model, {"no_such_layer": 0.5})
