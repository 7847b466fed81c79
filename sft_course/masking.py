"""Tokenizing chat examples with loss masks: labels are -100 everywhere except on the response being trained.

The chat template renders the example; the prompt is whatever the template renders for the earlier messages
plus the generation prompt (`<|im_start|>assistant\\n`), which is what the model sees at inference. Targets
are the assistant's content and its end-of-turn token (`<|im_end|>`), so the model learns to stop; the
template's trailing whitespace after that token is not a target. Working from the rendered prompt rather than
from `{% generation %}` markers makes this work for hub tokenizers whose templates have none.
"""

from __future__ import annotations

from collections.abc import Iterable

from sft_course.formats import to_messages

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy (and transformers' loss) skips


class ExampleTooLongError(ValueError):
    """The response alone does not fit in `max_length`: the example is dropped rather than cut."""


class NoTargetTokensError(ValueError):
    """The example has no token to learn from; an all -100 row must never reach the loss."""


def _token_ids(tokenizer, text: str) -> list[int]:
    # The chat template writes special tokens (BOS included, where a template has one) as text already.
    # verbose=False: a length over model_max_length is ours to report (tokenize_examples counts it), not a warning
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _render(tokenizer, messages: list[dict], **kwargs) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, expected a string")
    return text


def rendered_length(tokenizer, messages: list[dict]) -> int:
    """How many tokens the whole example takes once rendered with the chat template."""
    return len(_token_ids(tokenizer, _render(tokenizer, messages)))


def _split_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], int, int]:
    """Return `(input_ids, prompt_length, target_end)`: tokens `[prompt_length, target_end)` are the targets."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the last message must be the assistant's response: it is what the loss trains")
    response = messages[-1]["content"]
    full_text = _render(tokenizer, messages)
    prompt_text = _render(tokenizer, messages[:-1], add_generation_prompt=True)
    if not full_text.startswith(prompt_text):
        raise ValueError(
            "the chat template renders the prompt (with add_generation_prompt=True) differently from the start of "
            f"the full conversation, so the prompt/response boundary is ambiguous:\nprompt: {prompt_text!r}\n"
            f"full:   {full_text!r}")
    generated = full_text[len(prompt_text):]  # what the model must produce: response, end-of-turn, whitespace
    start = generated.find(response)
    if start < 0:
        raise ValueError(f"the rendered response {generated!r} does not contain the assistant's content")
    after = generated[start + len(response):]
    target_text = full_text[: len(prompt_text) + start + len(response) + len(after.rstrip())]

    input_ids = _token_ids(tokenizer, full_text)
    prompt_ids = _token_ids(tokenizer, prompt_text)
    target_ids = _token_ids(tokenizer, target_text)
    for name, part in (("prompt", prompt_ids), ("prompt and response", target_ids)):
        if input_ids[: len(part)] != part:
            raise ValueError(f"the tokens of the {name} are not a prefix of the tokens of the whole example: "
                             "a token merges across the boundary, so the loss mask would be off")
    return input_ids, len(prompt_ids), len(target_ids)


def _tokenize_with_status(tokenizer, messages: list[dict], max_length: int | None) -> tuple[dict, bool]:
    """Tokenize one example; return `(example, truncated_prompt)` or raise if it must be dropped."""
    input_ids, prompt_length, target_end = _split_tokens(tokenizer, messages)
    if target_end <= prompt_length:
        raise NoTargetTokensError("the example has no target tokens (empty response and no end-of-turn token)")
    labels = [IGNORE_INDEX] * prompt_length + input_ids[prompt_length:target_end] + \
        [IGNORE_INDEX] * (len(input_ids) - target_end)
    truncated = False
    if max_length is not None and len(input_ids) > max_length:
        response_length = len(input_ids) - prompt_length
        if response_length >= max_length:  # keep at least one prompt token of context, never cut the response
            raise ExampleTooLongError(
                f"the response takes {response_length} tokens and the whole example {len(input_ids)}: "
                f"with max_length={max_length} no prompt would be left, so the example is dropped")
        input_ids, labels, truncated = input_ids[-max_length:], labels[-max_length:], True
    return {"input_ids": input_ids, "labels": labels}, truncated


def tokenize_example(tokenizer, messages: list[dict], max_length: int | None = None) -> dict[str, list[int]]:
    """Render `messages` with the chat template; return `{"input_ids", "labels"}` with -100 on the prompt.

    Targets are the last (assistant) message's tokens and its end-of-turn token. Longer than `max_length`:
    the prompt is cut from the left if the whole response still fits with some prompt before it, otherwise
    `ExampleTooLongError` is raised. An example without any target raises `NoTargetTokensError`.
    """
    return _tokenize_with_status(tokenizer, messages, max_length)[0]


def tokenize_examples(tokenizer, rows_or_messages: Iterable, max_length: int | None = None,
                      ) -> tuple[list[dict], dict[str, int]]:
    """Tokenize many examples (rows of any accepted format, or lists of messages); return `(examples, report)`.

    The report counts `input`, `kept` (returned, truncated ones included), `truncated_prompt` (kept, with the
    prompt cut from the left), `dropped_too_long` (the response alone does not fit) and `dropped_no_target`.
    """
    report = {"input": 0, "kept": 0, "truncated_prompt": 0, "dropped_too_long": 0, "dropped_no_target": 0}
    examples = []
    for item in rows_or_messages:
        report["input"] += 1
        messages = item if isinstance(item, list) else to_messages(item)
        try:
            example, truncated = _tokenize_with_status(tokenizer, messages, max_length)
        except ExampleTooLongError:
            report["dropped_too_long"] += 1
            continue
        except NoTargetTokensError:
            report["dropped_no_target"] += 1
            continue
        report["kept"] += 1
        report["truncated_prompt"] += truncated
        examples.append(example)
    return examples, report
