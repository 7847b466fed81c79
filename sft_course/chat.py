"""A terminal chat with any saved model or adapter: `sft-course chat --model FOLDER`.

Tokens are printed as they are generated (a `transformers.TextStreamer`), the conversation's turns are kept
and sent back through the chat template each time, `/reset` forgets them and `/quit` (or end of input) ends.
"""

from __future__ import annotations

import sys
from typing import TextIO

import torch
from transformers import TextStreamer

from sft_course.stop_tokens import stop_token_ids

HELP = "Type a message; /reset forgets the conversation, /quit ends."


class _Streamer(TextStreamer):
    """TextStreamer writing to any text stream (stdout by default), flushed at each piece of text."""

    def __init__(self, tokenizer, out: TextIO):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.out = out

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.out.write(text + ("\n" if stream_end else ""))
        self.out.flush()


@torch.no_grad()
def reply(model, tokenizer, messages: list[dict], out: TextIO | None = None, max_new_tokens: int = 128) -> str:
    """Greedy answer to the conversation `messages` (ending with the user's turn), streamed to `out`."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    stops = stop_token_ids(tokenizer, model)
    output = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        top_p=None,
        top_k=None,
        temperature=None,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        streamer=_Streamer(tokenizer, out) if out is not None else None,
    )
    new = output[0, batch["input_ids"].shape[1] :].tolist()
    new = new[: next((i for i, t in enumerate(new) if t in stops), len(new))]
    return tokenizer.decode(new, skip_special_tokens=True)


def chat_loop(
    model,
    tokenizer,
    lines: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    system: str | None = None,
    max_new_tokens: int = 128,
) -> list[dict]:
    """Read user turns from `lines` until `/quit` or the end; answer each; return the last conversation."""
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    out.write(HELP + "\n")
    while True:
        out.write("you> ")
        out.flush()
        line = lines.readline()
        if not line:  # end of input
            out.write("\n")
            break
        text = line.strip()
        if text == "/quit":
            break
        if text == "/reset":
            messages = list(start)
            out.write("(conversation reset)\n")
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        out.write("model> ")
        messages.append({"role": "assistant", "content": reply(model, tokenizer, messages, out, max_new_tokens)})
    return messages
