"""Batched generation with left padding, the way a served model answers many prompts at once.

One meaning of "stops": an answer *stops* when it ends its turn with the end-of-turn token that the chat template
writes after an answer (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, ...: `sft_course.stop_tokens`), or the EOS of
a tokenizer without one. Writing `<|endoftext|>` instead *ends the document*, the way a base model ends a
biography: generation halts there too, but a chat front end would not show it as a finished answer.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sft_course.stop_tokens import end_of_turn_id, stop_token_ids

__all__ = ["chat_prompt", "end_of_turn_id", "generate", "stop_token_ids"]


def chat_prompt(tokenizer: PreTrainedTokenizerBase, user_message: str) -> str:
    """The user's message rendered with the chat template, ready for the assistant to answer."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
    )


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 24,
    batch_size: int = 128,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[dict]:
    """Continue every prompt; return per prompt the decoded `text`, `stopped`, `ended_document` and `stop_token`.

    `stopped`: the continuation ended its turn with the end-of-turn token (`end_of_turn_id`). `ended_document`:
    it wrote another stop token instead (the EOS `<|endoftext|>`, or an id of the model's
    `generation_config.eos_token_id`). Neither: it ran out of `max_new_tokens`. `stop_token` is the
    token that halted it, or None.

    Prompts are left-padded so that every row's next token sits in the last column; right padding would
    make the model continue after pad tokens. Special tokens in a prompt are taken as written, not added.
    """
    stops, end_of_turn = stop_token_ids(tokenizer, model), end_of_turn_id(tokenizer)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if do_sample:
        torch.manual_seed(seed)  # the same seed gives the same samples on the same machine
    results = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(
                prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                temperature=temperature if do_sample else None,
                top_p=None,
                top_k=None,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
            for row in out[:, batch["input_ids"].shape[1] :].tolist():
                stop_at = next((i for i, t in enumerate(row) if t in stops), None)
                kept = row if stop_at is None else row[:stop_at]
                stop = None if stop_at is None else row[stop_at]
                results.append(
                    {
                        "text": tokenizer.decode(kept, skip_special_tokens=True),
                        "stopped": stop is not None and stop == end_of_turn,
                        "ended_document": stop is not None and stop != end_of_turn,
                        "stop_token": None if stop is None else tokenizer.convert_ids_to_tokens(stop),
                    }
                )
    finally:
        tokenizer.padding_side = old_side
    return results
