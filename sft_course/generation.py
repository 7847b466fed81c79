"""Batched generation with left padding, the way a served model answers many prompts at once.

One meaning of "stops": an answer *stops* when it ends its turn with the end-of-turn token that the chat template
writes after an answer (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, ...: `sft_course.stop_tokens`), or the EOS of
a tokenizer without one. Writing `<|endoftext|>` instead *ends the document*, the way a base model ends a
biography: generation halts there too, but a chat front end would not show it as a finished answer.

`share_prefix=True` runs the token prefix that every prompt of a batch shares (a chat template's system prompt)
once and lends its key/value cache to every row, instead of running it once per row: the same greedy tokens,
with less prefill work when the prefix is a large share of each prompt.
"""

from __future__ import annotations

import inspect

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sft_course.stop_tokens import end_of_turn_id, stop_token_ids

__all__ = ["chat_prompt", "end_of_turn_id", "generate", "common_prefix_length", "stop_token_ids"]

MIN_SHARED_PREFIX = 4  # a shorter common prefix is not worth a separate forward pass


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
    share_prefix: bool = False,
) -> list[dict]:
    """Continue every prompt; return per prompt the decoded `text`, `stopped`, `ended_document` and `stop_token`.

    `stopped`: the continuation ended its turn with the end-of-turn token (`end_of_turn_id`). `ended_document`:
    it wrote another stop token instead (the EOS `<|endoftext|>`, or an id of the model's
    `generation_config.eos_token_id`). Neither: it ran out of `max_new_tokens`. `stop_token` is the
    token that halted it, or None.

    Prompts are left-padded so that every row's next token sits in the last column; right padding would
    make the model continue after pad tokens. Special tokens in a prompt are taken as written, not added.

    `share_prefix`: greedy only. The tokens that all prompts of a batch start with run once; their key/value cache
    is repeated over the batch, and each row's remaining tokens follow it, padded between the prefix and the row
    (the attention mask hides the padding, positions count only real tokens, as with left padding).
    """
    if share_prefix and do_sample:
        raise ValueError("share_prefix=True is for greedy generation; use do_sample=False or share_prefix=False")
    stops, end_of_turn = stop_token_ids(tokenizer, model), end_of_turn_id(tokenizer)
    settings = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "temperature": temperature if do_sample else None,
        "top_p": None,
        "top_k": None,
        "eos_token_id": stops,
        "pad_token_id": tokenizer.pad_token_id,
    }
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if do_sample:
        torch.manual_seed(seed)  # the same seed gives the same samples on the same machine
    results = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            if share_prefix:
                input_width, out = _generate_shared_prefix(model, tokenizer, chunk, settings)
            else:
                batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
                input_width, out = batch["input_ids"].shape[1], model.generate(**batch, **settings)
            for row in out[:, input_width:].tolist():
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


def common_prefix_length(token_lists: list[list[int]], minimum: int = 1) -> int:
    """The number of leading tokens that every list shares, short of the shortest list's last token (each row keeps
    at least one token of its own to run after the prefix); 0 when that is under `minimum`."""
    shortest = min(len(ids) for ids in token_lists)
    length = 0
    while length < shortest - 1 and all(ids[length] == token_lists[0][length] for ids in token_lists):
        length += 1
    return length if length >= minimum else 0


def _cache_keyword(model) -> str:
    """The keyword under which this transformers version's models take a key/value cache."""
    forward = inspect.signature(model.get_base_model().forward if hasattr(model, "get_base_model") else model.forward)
    return "cache" if "cache" in forward.parameters else "past_key_values"


def _generate_shared_prefix(model, tokenizer, prompts: list[str], settings: dict) -> tuple[int, torch.Tensor]:
    """(input width, generated ids) for `prompts`, their shared token prefix run once (`generate`'s `share_prefix`)."""
    token_lists = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    prefix = common_prefix_length(token_lists, MIN_SHARED_PREFIX)
    width = max(len(row) for row in token_lists) - prefix  # the longest row after the prefix
    pads = [width - len(row) + prefix for row in token_lists]
    ids = torch.tensor(
        [row[:prefix] + [tokenizer.pad_token_id] * n + row[prefix:] for row, n in zip(token_lists, pads)],
        device=model.device,
    )
    mask = torch.tensor(
        [[1] * prefix + [0] * n + [1] * (len(row) - prefix) for row, n in zip(token_lists, pads)], device=model.device
    )
    extra = {}
    if prefix:
        keyword = _cache_keyword(model)
        prefilled = model(input_ids=ids[:1, :prefix], use_cache=True)
        cache = prefilled["cache"] if "cache" in prefilled else prefilled["past_key_values"]
        cache.batch_repeat_interleave(len(prompts))
        extra[keyword] = cache
    return ids.shape[1], model.generate(input_ids=ids, attention_mask=mask, **extra, **settings)
