"""End-of-turn diagnostics: the loss of each answer token, `<|im_end|>` last."""

import pytest
import torch
from helpers import MESSAGES, ROWS, examples, tiny_model

from sft_course.end_of_turn import end_of_turn_loss, per_token_answer_loss
from sft_course.loss import sft_loss
from sft_course.masking import IGNORE_INDEX
from sft_course.tokenizer import IM_END


def test_per_token_answer_loss_ends_with_im_end_and_averages_to_the_sft_loss(tokenizer):
    model = tiny_model(tokenizer)
    losses = per_token_answer_loss(model, tokenizer, MESSAGES[0])
    example = examples(tokenizer)[0]
    assert [t for t, _ in losses][-1] == IM_END
    assert "".join(t for t, _ in losses[:-1]) == ROWS[0][1]
    assert len(losses) == sum(label != IGNORE_INDEX for label in example["labels"])
    with torch.no_grad():
        expected = sft_loss(
            model(input_ids=torch.tensor([example["input_ids"]])).logits, torch.tensor([example["labels"]])
        )
    assert sum(v for _, v in losses) / len(losses) == pytest.approx(expected.item(), rel=1e-5)
    summary = end_of_turn_loss(model, tokenizer, MESSAGES)
    assert summary["im_end_loss"] == pytest.approx(
        sum(per_token_answer_loss(model, tokenizer, m)[-1][1] for m in MESSAGES) / len(MESSAGES)
    )
