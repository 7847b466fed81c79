"""Tokenizing chat examples with loss masks: labels are -100 everywhere except on the response being trained.

The chat template renders the example; the prompt of an assistant turn is whatever the template renders for
the messages before it plus the generation prompt (`<|im_start|>assistant\\n`), which is what the model sees at
inference. Targets are every assistant turn's content and its end-of-turn token (`<|im_end|>`), so the model
learns to stop; the template's trailing whitespace after that token is not a target. Working from the rendered
prompt rather than from `{% generation %}` markers makes this work for hub tokenizers whose templates have none.
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


def _split_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """Return `(input_ids, spans)`: one `[start, end)` token span of targets per assistant turn, in order.

    Each assistant turn's prompt is the template's rendering of the messages before it with the generation
    prompt; its target is its content and end-of-turn token, up to the whitespace the template writes after.
    Every assistant turn is a target, as with TRL's `assistant_only_loss=True`.
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the last message must be the assistant's response: it is what the loss trains")
    full_text = _render(tokenizer, messages)
    input_ids = _token_ids(tokenizer, full_text)
    spans = []
    for turn in [i for i, m in enumerate(messages) if m.get("role") == "assistant"]:
        prompt_text = _render(tokenizer, messages[:turn], add_generation_prompt=True)
        upto_text = full_text if turn == len(messages) - 1 else _render(tokenizer, messages[: turn + 1])
        for text in (prompt_text, upto_text):
            if not full_text.startswith(text):
                raise ValueError(
                    "the chat template renders the prompt (with add_generation_prompt=True) differently from the "
                    f"start of the full conversation, so the prompt/response boundary is ambiguous:\nprompt: "
                    f"{text!r}\nfull:   {full_text!r}"
                )
        response = messages[turn]["content"]
        generated = upto_text[len(prompt_text) :]  # what the model must produce: response, end-of-turn, whitespace
        start = generated.find(response)
        if start < 0:
            raise ValueError(f"the rendered response {generated!r} does not contain the assistant's content")
        end = start + len(response)
        target_text = prompt_text + generated[:end] + generated[end:].rstrip()
        span = []
        for name, part in (("prompt", prompt_text), ("prompt and response", target_text)):
            part_ids = _token_ids(tokenizer, part)
            if input_ids[: len(part_ids)] != part_ids:
                raise ValueError(
                    f"the tokens of the {name} are not a prefix of the tokens of the whole example: "
                    "a token merges across the boundary, so the loss mask would be off"
                )
            span.append(len(part_ids))
        spans.append(tuple(span))
    return input_ids, spans


def _tokenize_with_status(tokenizer, messages: list[dict], max_length: int | None) -> tuple[dict, bool]:
    """Tokenize one example; return `(example, truncated_prompt)` or raise if it must be dropped."""
    input_ids, spans = _split_tokens(tokenizer, messages)
    labels = [IGNORE_INDEX] * len(input_ids)
    for start, end in spans:
        labels[start:end] = input_ids[start:end]
    if all(label == IGNORE_INDEX for label in labels):
        raise NoTargetTokensError("the example has no target tokens (empty response and no end-of-turn token)")
    truncated = False
    if max_length is not None and len(input_ids) > max_length:
        response_length = len(input_ids) - spans[-1][0]
        if response_length >= max_length:  # keep at least one prompt token of context, never cut the last response
            raise ExampleTooLongError(
                f"the response takes {response_length} tokens and the whole example {len(input_ids)}: "
                f"with max_length={max_length} no prompt would be left, so the example is dropped"
            )
        input_ids, labels, truncated = input_ids[-max_length:], labels[-max_length:], True
    return {"input_ids": input_ids, "labels": labels}, truncated


def tokenize_example(tokenizer, messages: list[dict], max_length: int | None = None) -> dict[str, list[int]]:
    """Render `messages` with the chat template; return `{"input_ids", "labels"}` with -100 on the prompt.

    Targets are every assistant message's tokens and its end-of-turn token (the last message must be one).
    Longer than `max_length`: the conversation is cut from the left if the last response still fits with some
    prompt before it, otherwise `ExampleTooLongError` is raised. An example without any target raises
    `NoTargetTokensError`.
    """
    return _tokenize_with_status(tokenizer, messages, max_length)[0]


def tokenize_examples(
    tokenizer,
    rows_or_messages: Iterable,
    max_length: int | None = None,
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


class LossMaskView:
    """One tokenized example drawn token by token: targets in `[brackets]` (green in HTML), the rest plain.

    `str(view)` is a legend and the text (for a terminal or a plain-text notebook output); in Jupyter the
    HTML version colours the targets. Token boundaries are shown with `|` between ignored tokens and by the
    brackets around targets; a newline token shows as `↵`, followed by the line break it stands for.
    """

    LEGEND = "legend: [token] = in the loss (a target)   token| = ignored (label -100)   ↵ = newline"

    def __init__(self, tokens: list[tuple[str, bool]]):
        self.tokens = tokens  # (decoded token, is a target)

    @property
    def text(self) -> str:
        parts = []
        for token, trained in self.tokens:
            shown = token.replace("\n", "↵")
            parts.append((f"[{shown}]" if trained else f"{shown}|") + "\n" * token.count("\n"))
        return "".join(parts)

    def __str__(self) -> str:
        return f"{self.LEGEND}\n{self.text}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        spans = []
        for token, trained in self.tokens:
            shown = html.escape(token).replace("\n", "↵<br>")
            if trained:
                spans.append(
                    f'<span class="target" style="background:#c8f0c8;border:1px solid #2a2;'
                    f'margin:0 1px;padding:0 1px">{shown}</span>'
                )
            else:
                spans.append(
                    f'<span class="ignored" style="color:#888;border:1px dotted #bbb;'
                    f'margin:0 1px;padding:0 1px">{shown}</span>'
                )
        legend = (
            '<div><b>legend:</b> <span style="background:#c8f0c8;border:1px solid #2a2">target</span> '
            'in the loss &nbsp; <span style="color:#888;border:1px dotted #bbb">ignored</span> label -100 '
            "&nbsp; ↵ newline</div>"
        )
        return f'{legend}<div style="font-family:monospace;line-height:1.9">{"".join(spans)}</div>'


def loss_mask_view(tokenizer, example: dict) -> LossMaskView:
    """The tokens of a tokenized example (`{"input_ids", "labels"}`), each marked as a target or ignored."""
    input_ids, labels = list(example["input_ids"]), list(example["labels"])
    if len(input_ids) != len(labels):
        raise ValueError(
            f"labels has {len(labels)} entries but input_ids has {len(input_ids)}: each token needs exactly one label"
        )
    return LossMaskView(
        [(tokenizer.decode([token_id]), label != IGNORE_INDEX) for token_id, label in zip(input_ids, labels)]
    )
