"""Which token ends an assistant's turn, read from the chat template, and which token ids halt a generation.

A model's end of turn is not always its EOS: ChatML ends a turn with `<|im_end|>`, Gemma with `<end_of_turn>`
(EOS `<eos>`), a Llama 3 with `<|eot_id|>` (a base Llama 3's EOS is `<|end_of_text|>`). The template says which:
render a short exchange and take the special token that follows the assistant's content. A generation halts at
that token, at the tokenizer's EOS, and at every id of the model's `generation_config.eos_token_id`.
"""

from __future__ import annotations

from sft_course.tokenizer import IM_END, known_token_id

_MARK = "Zq7Marker"  # an assistant content that no template writes on its own
_EXCHANGES = (
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _MARK}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": _MARK}],
)


def _special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids |= {i for i, token in decoder.items() if getattr(token, "special", False)}
    return ids


def template_end_of_turn_id(tokenizer) -> int | None:
    """The special token that the chat template writes right after the assistant's content, or None.

    None when the tokenizer has no template, the template refuses both short exchanges tried (a user turn, or a
    system and a user turn, then the assistant's), or what follows the content is not a special token.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    for messages in _EXCHANGES:
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # a template may raise on a role order it does not accept (jinja's raise_exception)
            continue
        if not isinstance(text, str) or _MARK not in text:
            continue
        after = text[text.rindex(_MARK) + len(_MARK) :].lstrip()
        ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
        if ids and ids[0] in _special_ids(tokenizer):
            return int(ids[0])
        return None
    return None


def end_of_turn_id(tokenizer) -> int | None:
    """The token that ends a chat turn: the template's (`template_end_of_turn_id`), else `<|im_end|>`, else EOS."""
    found = template_end_of_turn_id(tokenizer)
    if found is not None:
        return found
    im_end = known_token_id(tokenizer, IM_END)
    return tokenizer.eos_token_id if im_end is None else im_end


def _config_eos_ids(model) -> list[int]:
    config = getattr(model, "generation_config", None)
    ids = getattr(config, "eos_token_id", None)
    if ids is None:
        return []
    return [int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])]


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Token ids that halt a generation, in this order, without repeats: the end of turn, the tokenizer's EOS,
    and the ids of `model.generation_config.eos_token_id` (when a model is given)."""
    ids = []
    for i in [end_of_turn_id(tokenizer), tokenizer.eos_token_id, *_config_eos_ids(model)]:
        if i is not None and i not in ids:
            ids.append(i)
    return ids


def end_of_turn_ids(tokenizer) -> set[int]:
    """The ids that may end a turn or a document, whatever the model: EOS, `<|im_end|>` and the template's end of
    turn (a pad token must be none of them, or masking padding would mask the stop)."""
    ids = {tokenizer.eos_token_id, known_token_id(tokenizer, IM_END), template_end_of_turn_id(tokenizer)}
    return {i for i in ids if i is not None}
