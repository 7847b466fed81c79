"""The SFT loop: loss definition, gradient accumulation, schedule, determinism, checkpoint resume."""

import pytest
import torch
from helpers import PAD, VOCAB, random_examples, tiny_model

from sft_course.checkpoint import CHECKPOINT_FILE, load_checkpoint_file
from sft_course.collate import pad_batch
from sft_course.errors import CheckpointError
from sft_course.loss import (
    count_target_tokens,
    flat_gradient,
    naive_accumulate_gradients,
    sft_loss,
)
from sft_course.training import TrainConfig, cosine_lr, train


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
    assert (
        first.evals
        and first.target_tokens == sum(count_target_tokens(pad_batch([e], PAD)["labels"]) for e in examples) * 4
    )


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
    run = train(
        tiny_model(),
        examples,
        PAD,
        TrainConfig(lr=1e-2, total_steps=7, batch_size=8, eval_every=0, warmup_ratio=0.0),
        progress=False,
    )
    assert run.steps == len(run.history) == 7
    assert run.history[-1]["epoch"] == pytest.approx(7 / 3)  # the data order runs on into a third epoch
    assert run.history[-1]["lr"] == pytest.approx(cosine_lr(6, 7, 1e-2, 1))
    as_epochs = train(
        tiny_model(),
        examples,
        PAD,
        TrainConfig(lr=1e-2, epochs=7 / 3, batch_size=8, eval_every=0, warmup_ratio=0.0),
        progress=False,
    )
    assert [h["loss"] for h in as_epochs.history] == [h["loss"] for h in run.history]
    with pytest.raises(ValueError, match="total_steps"):
        train(tiny_model(), examples, PAD, TrainConfig(total_steps=0), progress=False)


def test_token_normalised_accumulation_equals_one_batch_and_the_mean_of_means_does_not():
    """4 micro-batches of 2 give one batch of 8's gradient; averaging micro-batch means (the pre-2024 bug)
    over-weights short micro-batches. `flat_gradient` measures each on a copy, leaving the model alone."""
    model = tiny_model()
    examples = sorted(random_examples(8, seed=2), key=lambda e: sum(t != -100 for t in e["labels"]))
    one_batch = flat_gradient(model, [pad_batch(examples, PAD)])
    micro = [pad_batch(examples[i : i + 2], PAD) for i in range(0, 8, 2)]
    assert all(p.grad is None for p in model.parameters())
    assert one_batch.shape == (sum(p.numel() for p in model.parameters()),)
    assert torch.allclose(flat_gradient(model, micro), one_batch, atol=1e-6)
    assert not torch.allclose(flat_gradient(model, micro, naive_accumulate_gradients), one_batch, atol=1e-4)


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(
            tiny_model(),
            random_examples(8),
            PAD,
            TrainConfig(checkpoint_dir=str(tmp_path)),
            resume=True,
            progress=False,
        )


class _RunsCodeWhenUnpickled:
    """A pickled object that, unpickled, creates the file `marker`: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0, checkpoint_dir=str(tmp_path), save_every=1)
    train(tiny_model(), random_examples(16), PAD, config, progress=False)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # what train writes is plain data
    marker = tmp_path / "code-ran"
    state["payload"] = _RunsCodeWhenUnpickled(marker)
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="refused"):
        train(tiny_model(), random_examples(16), PAD, config, resume=True, progress=False)
    assert not marker.exists()


def test_checkpoint_is_replaced_atomically_and_a_failed_save_keeps_the_old_one(tmp_path, monkeypatch):
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0, checkpoint_dir=str(tmp_path), save_every=1)
    train(tiny_model(), random_examples(16), PAD, config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]  # no temporary file left behind
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()

    def killed_mid_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), random_examples(16), PAD, config, progress=False)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
    assert load_checkpoint_file(tmp_path / CHECKPOINT_FILE)["step"] == 2


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint_file(tmp_path / CHECKPOINT_FILE)


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0, checkpoint_dir=str(tmp_path), save_every=1)
    train(tiny_model(), random_examples(16), PAD, TrainConfig(**{**config.__dict__, "max_steps": 1}), progress=False)
    with pytest.raises(CheckpointError, match="lr 0.01 there, 0.02 here"):
        train(
            tiny_model(),
            random_examples(16),
            PAD,
            TrainConfig(**{**config.__dict__, "lr": 2e-2}),
            resume=True,
            progress=False,
        )


def test_resume_refuses_a_checkpoint_of_other_accumulation_steps(tmp_path):
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0, checkpoint_dir=str(tmp_path), save_every=1)
    train(tiny_model(), random_examples(16), PAD, TrainConfig(**{**config.__dict__, "max_steps": 1}), progress=False)
    with pytest.raises(CheckpointError, match="grad_accum_steps 1 there, 2 here"):
        train(
            tiny_model(),
            random_examples(16),
            PAD,
            TrainConfig(**{**config.__dict__, "grad_accum_steps": 2}),
            resume=True,
            progress=False,
        )


def test_one_field_list_checks_resumes_in_the_loop_and_on_the_command_line():
    from dataclasses import fields

    from sft_course.checkpoint import RESUME_FIELDS, check_resumable

    config_fields = {f.name for f in fields(TrainConfig)}
    assert {"lr", "epochs", "batch_size", "grad_accum_steps", "seed"} <= set(RESUME_FIELDS)
    assert {"method", "answers", "model", "rank", "alpha", "people"} <= set(RESUME_FIELDS) - config_fields
    check_resumable("ckpt", {"lr": 1.0, "extra": 1}, {"lr": 1.0})  # fields outside the list, or on one side: ignored
    with pytest.raises(CheckpointError, match="--grad-accum-steps 8 there, 4 here"):
        check_resumable("ckpt", {"grad_accum_steps": 8}, {"grad_accum_steps": 4}, as_options=True)


def test_step_plan_and_indices_are_the_steps_train_takes():
    from sft_course.training import plan_steps, step_batches, step_indices

    config = TrainConfig(epochs=2.5, batch_size=8, warmup_ratio=0.1, max_steps=9, seed=3)
    plan = plan_steps(30, config)
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps, plan.last_step) == (4, 10, 1, 9)
    steps = list(step_indices(30, config, plan, start_step=2))
    assert [s for s, _ in steps] == list(range(2, 9))
    assert steps[3][1] == step_batches(30, 8, 3, 1)[1]  # step 5: epoch 1, its second batch
    result = train(
        tiny_model(), random_examples(30), PAD, TrainConfig(**{**config.__dict__, "eval_every": 0}), progress=False
    )
    assert result.steps == plan.last_step and [h["tokens"] for h in result.history] == [
        sum(count_target_tokens(pad_batch([random_examples(30)[i]], PAD)["labels"]) for i in indices)
        for _, indices in step_indices(30, config, plan)
    ]


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
    accelerated = train(
        tiny_model(), examples, PAD, config, progress=False, accelerator=Accelerator(cpu=True, mixed_precision="no")
    )
    assert [h["loss"] for h in accelerated.history] == pytest.approx([h["loss"] for h in plain.history], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Speed: fused AdamW, fewer host syncs, evaluation time left out, opt-in compile / target-only logits


def written_out_loop(model, examples, config):
    """The loop as notebook 03 writes it: same batches, schedule, loss, clipping and `make_optimizer`."""
    import math as _math

    from sft_course.training import make_optimizer, step_batches

    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    steps_per_epoch = _math.ceil(len(examples) / config.batch_size)
    total = round(config.epochs * steps_per_epoch)
    warmup = max(1, round(config.warmup_ratio * total))
    losses = []
    for step in range(total):
        epoch, i = divmod(step, steps_per_epoch)
        batch = pad_batch(
            [examples[j] for j in step_batches(len(examples), config.batch_size, config.seed, epoch)[i]], PAD
        )
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total, config.lr, warmup, config.min_lr_ratio)
        loss = sft_loss(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_the_optimizer_is_fused_adamw_without_weight_decay_by_default():
    from sft_course.training import make_optimizer

    optimizer = make_optimizer(tiny_model().parameters(), TrainConfig())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["fused"] and optimizer.defaults["weight_decay"] == 0.0
    assert not make_optimizer(tiny_model().parameters(), TrainConfig(fused_adamw=False)).defaults["fused"]


def test_train_equals_a_written_out_loop_step_by_step():
    examples = random_examples(40, seed=7)
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=8, eval_every=0, seed=2)
    ours = train(tiny_model(), examples, PAD, config, progress=False)
    theirs = written_out_loop(tiny_model(), examples, config)
    assert [h["loss"] for h in ours.history] == pytest.approx(theirs, abs=1e-6)
    assert all(isinstance(h["loss"], float) and isinstance(h["grad_norm"], float) for h in ours.history)


def losses_with_and_without(option: str, value, seed: int) -> tuple[list[float], list[float]]:
    """Per-step losses of the same short run with `TrainConfig(option=value)` and with the default config."""
    examples = random_examples(40, seed=seed)
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=8, eval_every=0)
    default = train(tiny_model(), examples, PAD, config, progress=False)
    changed = train(tiny_model(), examples, PAD, TrainConfig(**{**config.__dict__, option: value}), progress=False)
    return [h["loss"] for h in changed.history], [h["loss"] for h in default.history]


def test_fused_adamw_follows_the_foreach_one_to_1e_6():
    foreach, fused = losses_with_and_without("fused_adamw", False, seed=8)
    assert fused == pytest.approx(foreach, abs=1e-6)


def test_losses_are_read_from_the_device_every_few_steps_not_every_step(monkeypatch):
    import sft_course.training as training

    calls = []
    original = training._read_back
    monkeypatch.setattr(training, "_read_back", lambda pending: (calls.append(len(pending)), original(pending)))
    result = train(
        tiny_model(), random_examples(200), PAD, TrainConfig(epochs=1, batch_size=8, eval_every=0), progress=False
    )
    assert result.steps == 25 and sum(calls) == 25
    assert len(calls) <= 25 // training.SYNC_EVERY + 2  # the first step, every SYNC_EVERY, the last


def test_evaluation_time_is_not_training_time(monkeypatch):
    import time as _time

    import sft_course.training as training

    original = training.evaluate_loss
    monkeypatch.setattr(training, "evaluate_loss", lambda *a, **k: (_time.sleep(0.5), original(*a, **k))[1])
    examples = random_examples(32)
    began = _time.perf_counter()
    result = train(
        tiny_model(),
        examples,
        PAD,
        TrainConfig(epochs=1, batch_size=8, eval_every=1),
        eval_examples=examples[:8],
        progress=False,
    )
    wall = _time.perf_counter() - began
    assert len(result.evals) == 4 and result.eval_seconds >= 2.0
    assert wall - result.train_seconds >= 2.0  # the four 0.5 s sleeps are not training time, however loaded the machine
    assert 0 < result.first_step_seconds <= result.train_seconds


def test_padding_share_counts_the_pad_slots_of_every_step():
    examples = random_examples(16, seed=9)
    result = train(
        tiny_model(), examples, PAD, TrainConfig(epochs=1, batch_size=8, eval_every=0, seed=3), progress=False
    )
    from sft_course.training import step_batches

    slots = real = 0
    for indices in step_batches(16, 8, 3, 0):
        batch = pad_batch([examples[i] for i in indices], PAD)
        slots += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
    assert result.computed_tokens == slots and result.padding_tokens == slots - real
    assert result.padding_share == pytest.approx(1 - real / slots)


def test_logits_on_targets_by_default_gives_the_run_of_every_position():
    every_position, default = losses_with_and_without("logits_on_targets", False, seed=10)
    assert default == pytest.approx(every_position, abs=1e-5)
    assert every_position != default  # the default really takes the other path (sums in another order)


def test_the_default_path_projects_only_target_positions(monkeypatch):
    from sft_course import loss

    seen = []
    monkeypatch.setattr(
        loss,
        "summed_token_loss",
        lambda model, batch, on_targets=False: (
            seen.append(on_targets)
            or loss.per_token_loss(model(input_ids=batch["input_ids"]).logits, batch["labels"]).sum()
        ),
    )
    train(tiny_model(), random_examples(8), PAD, TrainConfig(epochs=1, batch_size=8), progress=False)
    train(
        tiny_model(),
        random_examples(8),
        PAD,
        TrainConfig(epochs=1, batch_size=8, logits_on_targets=False),
        progress=False,
    )
    assert seen == [True, False]


def test_logits_on_targets_refuses_models_that_rescale_their_logits_and_the_default_falls_back():
    model = tiny_model()
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        train(model, random_examples(8), PAD, TrainConfig(logits_on_targets=True), progress=False)
    from sft_course.loss import uses_logits_on_targets

    assert not uses_logits_on_targets(model, TrainConfig())  # None: every position, silently correct
    assert uses_logits_on_targets(tiny_model(), TrainConfig())
    assert not uses_logits_on_targets(tiny_model(), TrainConfig(), distributed=True)
    with pytest.raises(ValueError, match="one process only"):
        uses_logits_on_targets(tiny_model(), TrainConfig(logits_on_targets=True), distributed=True)


def test_bf16_autocast_on_a_cpu_trains_close_to_fp32():
    bf16, fp32 = losses_with_and_without("bf16", True, seed=11)
    assert bf16 != fp32  # autocast really ran the matmuls in bf16 ...
    assert bf16 == pytest.approx(fp32, rel=0.05)  # ... and the run stays close to fp32's
    assert bf16[-1] < bf16[0]


@pytest.mark.slow
def test_compiled_loss_gives_the_same_run_and_caches_its_kernels_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    examples = random_examples(24, seed=11)
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0)
    plain = train(tiny_model(), examples, PAD, config, progress=False)
    compiled = train(tiny_model(), examples, PAD, TrainConfig(**{**config.__dict__, "compile": True}), progress=False)
    assert [h["loss"] for h in compiled.history] == pytest.approx([h["loss"] for h in plain.history], abs=1e-4)
    assert any((tmp_path / "inductor").rglob("*.py")), "no compiled kernel was written to the cache"


def test_a_step_without_target_tokens_is_refused_not_divided_by_zero():
    examples = [{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}] * 4
    with pytest.raises(ValueError, match="no target tokens"):
        train(tiny_model(), examples, PAD, TrainConfig(batch_size=4, epochs=1), progress=False)


def test_lr_multipliers_give_matching_parameters_their_own_rate():
    from sft_course.training import TrainConfig, param_groups, train

    model = tiny_model(hidden_size=16, n_layers=1)
    groups = param_groups(model, {"embed_tokens": 0.0})
    factors = sorted(g["lr_multiplier"] for g in groups)
    assert factors == [0.0, 1.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    before = model.get_input_embeddings().weight.detach().clone()
    q_before = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    examples = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, -100, 3, 4, 5]}] * 4
    train(
        model,
        examples,
        pad_token_id=0,
        config=TrainConfig(lr=1e-2, epochs=1, batch_size=2, eval_every=0, lr_multipliers={"embed_tokens": 0.0}),
        progress=False,
    )
    assert torch.equal(model.get_input_embeddings().weight, before)  # factor 0: the rows did not move
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight, q_before)
    with pytest.raises(ValueError, match="match no trainable parameter"):
        param_groups(model, {"no_such_layer": 0.5})


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": -1.0}, {"lr": 0.0}, {"lr": -1e-3}, {"batch_size": 0}])
def test_train_refuses_a_run_that_would_train_nothing_or_nonsense(bad):
    """The command line checks these at its parser; a notebook calling train() directly gets the same answer."""
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        train(tiny_model(), random_examples(8), PAD, TrainConfig(**bad), progress=False)


def test_evaluate_loss_on_target_positions_equals_every_position():
    from sft_course import loss

    model, examples = tiny_model(), random_examples(12, seed=13)
    lean = loss.evaluate_loss(model, examples, PAD, batch_size=5)
    assert loss._logits_on_targets_refusal(model) is None  # so evaluate_loss took the target-only path
    every = sum(
        loss.per_token_loss(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
        .sum()
        .item()
        for b in [pad_batch(examples[i : i + 5], PAD) for i in range(0, 12, 5)]
    )
    tokens = sum(loss.count_target_tokens(pad_batch([e], PAD)["labels"]) for e in examples)
    assert lean == pytest.approx(every / tokens, rel=1e-5)


def test_evaluation_during_training_follows_the_micro_batches(monkeypatch):
    from sft_course import training

    sizes = []
    original = training.evaluate_loss
    monkeypatch.setattr(
        training, "evaluate_loss", lambda *a, **k: (sizes.append(k.get("batch_size")), original(*a, **k))[1]
    )
    for accum in (1, 4):
        train(
            tiny_model(),
            random_examples(16, seed=14),
            PAD,
            TrainConfig(epochs=1, batch_size=8, grad_accum_steps=accum),
            eval_examples=random_examples(4, seed=15),
            progress=False,
        )
    assert sizes == [64, 2]


def test_micro_batch_tokens_splits_steps_by_length_and_gives_the_same_run():
    examples = random_examples(32, seed=4)
    base = TrainConfig(lr=1e-2, epochs=1, batch_size=8, eval_every=0)
    one = train(tiny_model(), examples, PAD, base, progress=False)
    split = train(
        tiny_model(), examples, PAD, TrainConfig(**{**base.__dict__, "micro_batch_tokens": 40}), progress=False
    )
    assert [h["loss"] for h in one.history] == pytest.approx([h["loss"] for h in split.history], abs=1e-5)
    assert split.computed_tokens < one.computed_tokens  # fewer padded slots for the same gradient
    assert split.target_tokens == one.target_tokens
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        train(tiny_model(), examples, PAD, TrainConfig(micro_batch_tokens=40, grad_accum_steps=2), progress=False)
