"""The runners: `finetune` (the notebooks' short runs) and the people `evaluate_accuracy` scores."""

import torch
from helpers import examples, tiny_model
from peft import PeftModel

from sft_course.accounting import trainable_parameters
from sft_course.experiment import finetune
from sft_course.lora import add_lora
from sft_course.training import TrainConfig, train


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
    model, result = finetune(
        base,
        tokenizer,
        examples(tokenizer),
        steps=2,
        lr=1e-2,
        batch_size=4,
        seed=7,
        lora_options={"rank": 4, "alpha": 8},
    )
    assert isinstance(model, PeftModel) and not isinstance(base, PeftModel)
    reference = add_lora(tiny_model(tokenizer), tokenizer, rank=4, alpha=8, seed=7)
    assert trainable_parameters(model) == trainable_parameters(reference)
    assert result.steps == 2


def test_finetune_passes_lr_multipliers_to_the_trainable_rows(tokenizer):
    base = tiny_model(tokenizer)
    options = {"rank": 4, "alpha": 8, "train_chat_tokens": True}
    frozen, _ = finetune(
        base,
        tokenizer,
        examples(tokenizer),
        steps=2,
        lr=1e-2,
        batch_size=4,
        seed=7,
        lora_options=options,
        lr_multipliers={"trainable_tokens": 0.0},
    )
    moved, _ = finetune(
        base, tokenizer, examples(tokenizer), steps=2, lr=1e-2, batch_size=4, seed=7, lora_options=options
    )

    def rows(m):
        return [p for n, p in m.named_parameters() if "trainable_tokens_delta" in n][0].detach()

    start = rows(add_lora(tiny_model(tokenizer), tokenizer, seed=7, **options))
    assert torch.equal(rows(frozen), start)  # factor 0: the trainable rows did not move
    assert not torch.equal(rows(moved), start)
