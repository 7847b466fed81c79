"""The runners: `finetune` (the notebooks' short runs) and the people `evaluate_accuracy` scores."""

import pytest
import torch
from helpers import examples, tiny_model
from peft import PeftModel

from sft_course.accounting import trainable_parameters
from sft_course.experiment import finetune, finetune_curve
from sft_course.lora import add_lora
from sft_course.training import TrainConfig, train

SHORT_LORA_RUN = {"steps": 2, "lr": 1e-2, "batch_size": 4, "seed": 7}  # two steps of a LoRA run, seeded


def test_finetune_runs_exactly_n_steps_on_a_copy(tokenizer):
    base = tiny_model(tokenizer)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    data = examples(tokenizer) * 5  # 20 examples: 3 steps per epoch with batches of 8
    model, result = finetune(base, tokenizer, data, steps=5, lr=1e-2, batch_size=8, seed=3)
    assert result.steps == len(result.history) == 5 and model is not base
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    by_hand = train(
        tiny_model(tokenizer),
        data,
        tokenizer.pad_token_id,
        TrainConfig(lr=1e-2, epochs=5 / 3, batch_size=8, seed=3, eval_every=0),
        progress=False,
    )
    assert [h["loss"] for h in result.history] == [h["loss"] for h in by_hand.history]


def test_finetune_with_lora_options_wraps_the_copy_seeded_by_the_run(tokenizer):
    base = tiny_model(tokenizer)
    options = {"rank": 4, "alpha": 8}
    model, result = finetune(base, tokenizer, examples(tokenizer), lora_options=options, **SHORT_LORA_RUN)
    assert isinstance(model, PeftModel) and not isinstance(base, PeftModel)
    reference = add_lora(tiny_model(tokenizer), tokenizer, seed=SHORT_LORA_RUN["seed"], **options)
    assert trainable_parameters(model) == trainable_parameters(reference)
    assert result.steps == 2


def test_finetune_passes_lr_multipliers_to_the_trainable_rows(tokenizer):
    base = tiny_model(tokenizer)
    options = {"rank": 4, "alpha": 8, "train_chat_tokens": True}
    frozen, _ = finetune(
        base,
        tokenizer,
        examples(tokenizer),
        lora_options=options,
        lr_multipliers={"trainable_tokens": 0.0},
        **SHORT_LORA_RUN,
    )
    moved, _ = finetune(base, tokenizer, examples(tokenizer), lora_options=options, **SHORT_LORA_RUN)

    def rows(m):
        return [p for n, p in m.named_parameters() if "trainable_tokens_delta" in n][0].detach()

    start = rows(add_lora(tiny_model(tokenizer), tokenizer, seed=SHORT_LORA_RUN["seed"], **options))
    assert torch.equal(rows(frozen), start)  # factor 0: the trainable rows did not move
    assert not torch.equal(rows(moved), start)


def test_finetune_curve_is_finetunes_run_measured_along_the_way(tokenizer):
    base = tiny_model(tokenizer)
    data = examples(tokenizer) * 5
    options = {"rank": 4, "alpha": 8}
    plain, plain_result = finetune(base, tokenizer, data, steps=6, lr=1e-2, batch_size=8, seed=3, lora_options=options)
    seen_steps = []
    model, result, curve = finetune_curve(
        base,
        tokenizer,
        data,
        steps=6,
        lr=1e-2,
        batch_size=8,
        seed=3,
        lora_options=options,
        at_steps=[2, 4],
        measure=lambda m: seen_steps.append(m.training) or len(seen_steps),
    )
    assert [step for step, _ in curve] == [2, 4, 6] and [v for _, v in curve] == [1, 2, 3]
    assert seen_steps == [False] * 3  # measured in eval mode
    assert [h["loss"] for h in result.history] == pytest.approx([h["loss"] for h in plain_result.history], abs=1e-6)
    assert result.steps == 6
    for (name, a), b in zip(plain.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_finetune_curve_refuses_steps_outside_the_run(tokenizer):
    with pytest.raises(ValueError, match="at_steps must lie between 1 and steps=4"):
        finetune_curve(
            tiny_model(tokenizer), tokenizer, examples(tokenizer), steps=4, lr=1e-2, measure=len, at_steps=[0, 2]
        )


def test_finetune_and_its_curve_pass_lora_products_to_the_run(tokenizer, monkeypatch):
    from sft_course import lora_products as products

    base = tiny_model(tokenizer)
    options = {"rank": 4, "alpha": 8}
    plain, plain_result = finetune(base, tokenizer, examples(tokenizer), lora_options=options, **SHORT_LORA_RUN)
    calls = []
    apply = products.LoraLinear.apply
    monkeypatch.setattr(products.LoraLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    _, result = finetune(
        base, tokenizer, examples(tokenizer), lora_options=options, lora_products=True, **SHORT_LORA_RUN
    )
    assert calls  # the adapter products ran in the CPU-fast layouts
    assert [h["loss"] for h in result.history] == pytest.approx([h["loss"] for h in plain_result.history], abs=1e-5)
    calls.clear()
    finetune_curve(
        base,
        tokenizer,
        examples(tokenizer),
        measure=lambda m: 0,
        at_steps=[1],
        lora_options=options,
        lora_products=True,
        **SHORT_LORA_RUN,
    )
    assert calls
    calls.clear()
    finetune(base, tokenizer, examples(tokenizer), lora_options=options, **SHORT_LORA_RUN)
    assert not calls  # off unless asked: PEFT's own forward
