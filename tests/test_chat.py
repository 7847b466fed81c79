"""`sft-course chat`: streamed answers, the conversation's turns kept, /reset and /quit, driven through stdin."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sft_course.chat import chat_loop
from sft_course.modeling import load_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundled():
    return load_model(device="cpu")


def test_turns_are_kept_until_reset_and_answers_are_streamed(bundled):
    model, tokenizer = bundled
    prompts, real_generate = [], model.generate

    def spy(**kwargs):
        prompts.append(tokenizer.decode(kwargs["input_ids"][0]))
        return real_generate(**kwargs)

    model.generate = spy
    try:
        lines = io.StringIO(
            "Where was Yuri Blackwood born?\nAnd where did he study?\n/reset\nHello\n/quit\nnever read\n"
        )
        out = io.StringIO()
        last = chat_loop(model, tokenizer, lines, out, max_new_tokens=8)
    finally:
        del model.generate
    assert len(prompts) == 3
    assert prompts[1].startswith(prompts[0]) and "And where did he study?" in prompts[1]  # first turn kept
    assert "Yuri Blackwood" not in prompts[2] and "Hello" in prompts[2]  # forgotten after /reset
    assert [m["role"] for m in last] == ["user", "assistant"] and last[0]["content"] == "Hello"
    text = out.getvalue()
    assert "(conversation reset)" in text and text.count("model> ") == 3
    assert "model> " + last[1]["content"] in text  # what was streamed is what the conversation keeps
    assert "never read" not in text


def test_chat_command_reads_stdin_until_end_of_input():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "sft_course", "chat", "--max-new-tokens", "4"],
        input="Hi there\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("you> ") == 2 and done.stdout.count("model> ") == 1
