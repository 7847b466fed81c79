"""The end-of-turn trap, measured: the loss of each answer token, and of `<|im_end|>` against the others.

The chat tokens never occur in pre-training, so their embedding rows start untrained. A fine-tuning run that
leaves them frozen (plain LoRA) can answer correctly and still give `<|im_end|>` a tiny probability: the model
then does not stop. These diagnostics show it token by token (notebook 04).
"""

from __future__ import annotations

import torch

from sft_course.loss import per_token_loss
from sft_course.masking import IGNORE_INDEX, tokenize_example
from sft_course.tokenizer import IM_END, IM_START


@torch.no_grad()
def per_token_answer_loss(model, tokenizer, messages: list[dict]) -> list[tuple[str, float]]:
    """Loss (nats) of each target token (every assistant turn's, `<|im_end|>` included), in order."""
    example = tokenize_example(tokenizer, messages)
    input_ids = torch.tensor([example["input_ids"]], device=model.device)
    labels = torch.tensor([example["labels"]], device=model.device)
    was_training = model.training
    model.eval()
    losses = per_token_loss(model(input_ids=input_ids).logits, labels)[0]
    model.train(was_training)
    targets = labels[0, 1:]
    keep = targets != IGNORE_INDEX
    tokens = tokenizer.convert_ids_to_tokens(targets[keep].tolist())
    return [
        (tokenizer.convert_tokens_to_string([t]) if t not in (IM_START, IM_END) else t, float(v))
        for t, v in zip(tokens, losses[keep].tolist())
    ]


def end_of_turn_loss(model, tokenizer, messages_list: list[list[dict]]) -> dict:
    """Mean loss of `<|im_end|>` and of the other answer tokens over many examples, and the worst other token."""
    im_end, other = [], []
    for messages in messages_list:
        for token, loss in per_token_answer_loss(model, tokenizer, messages):
            (im_end if token == IM_END else other).append(loss)
    if not im_end:
        raise ValueError(f"no {IM_END} target in the examples: the chat template does not end the answer with it")
    return {
        "im_end_loss": sum(im_end) / len(im_end),
        "im_end_probability": float(torch.tensor(im_end).neg().exp().mean()),
        "other_loss": sum(other) / len(other),
        "other_loss_max": max(other),
    }
