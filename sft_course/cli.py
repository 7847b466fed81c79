"""The `sft-course` command line: pretrain, make-data, validate, sft, eval, chat.

`--people N` always means the people trained on (`sft`: the first N training people); `--eval-people N` the
people per split that evaluation scores (a seeded sample, in `sft` and `eval` alike).

How it fails:
- every argument is checked by the parser (types, ranges, choices, combinations that make no sense):
  argparse's usage error, exit 2, before anything is loaded or written;
- a mistake found on disk (a model folder without weights, a non-empty `--out`, a bad data file, an unsafe
  checkpoint) is a `CourseError`: one line `error: ...` on stderr, exit 1;
- Ctrl-C (SIGINT) or SIGTERM: one line, exit 130 / 143, and no half-written `--out`;
- anything else is a bug in the code and keeps its traceback.

`sft` and `pretrain` write their model into a temporary sibling folder and rename it to `--out` at the end,
so an interrupted run leaves no `--out` behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from sft_course.defaults import (
    ANSWER_STYLES,
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATES,
    LORA_ALPHA,
    LORA_RANK,
    METHODS,
    MICRO_BATCH_SIZE,
    PRETRAIN_LR,
    PRETRAIN_STEPS,
    PRETRAIN_WARMUP_STEPS,
    PRETRAINED_LEARNING_RATES,
)
from sft_course.errors import CheckpointError, CourseError, DataError, OptionsError
from sft_course.output_paths import check_writable_folder

PEOPLE_PER_SPLIT = 500  # the world's 1000 people, half in each split (tests check it against make_world)
DEFAULT_SAVE_EVERY = 50
SFT_OPTIONS_FILE = "sft_options.json"  # next to the checkpoint: the options that a --resume must repeat
# (those of `checkpoint.RESUME_FIELDS`, the one list that `training.train` checks too)


# ----------------------------------------------------------------------------------------------------------
# Argument types: each refuses a bad value with a message naming the allowed range


def _number(kind: type, minimum: float | None = None, maximum: float | None = None, above: float | None = None):
    """An argparse `type` for an int or finite float in [minimum, maximum], or strictly above `above`."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g}, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, minimum=1)
non_negative_int = _number(int, minimum=0)
positive_float = _number(float, above=0)
people_count = _number(int, minimum=1, maximum=PEOPLE_PER_SPLIT)


# ----------------------------------------------------------------------------------------------------------
# Output folders: refused when they hold something, written atomically


def check_output_folder(out: str | os.PathLike, overwrite: bool = False, flag: str = "--out") -> None:
    """Refuse a file, or a non-empty folder unless `overwrite`: before any work, so nothing is lost."""
    out = Path(out)
    check_writable_folder(out, flag)  # a parent that is a file, no permission, a read-only file system
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OptionsError(
            f"{flag} {out} already exists and is not empty: choose another folder, or add --overwrite to replace it"
        )


def write_folder_atomically(out: str | os.PathLike, write, overwrite: bool = False) -> Path:
    """Call `write(folder)` on a temporary sibling of `out`, then rename it to `out`.

    An interrupted `write` removes the temporary folder (a SIGKILL can leave a hidden `.NAME.partial-*`
    sibling, never a half-written `out`). With `overwrite`, an existing `out` is replaced only after the new
    folder is complete.
    """
    out = Path(out)
    check_output_folder(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        write(tmp)
        if out.is_dir():
            if any(out.iterdir()):  # overwrite: move the old folder aside, put the new one in place, drop the old
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, old / out.name)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                out.rmdir()
                os.replace(tmp, out)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------------------
# Commands


def _pretrain(args) -> int:
    from sft_course.modeling import check_model_folder
    from sft_course.pretrain import pretrain

    check_output_folder(args.out, args.overwrite)
    if args.init_from is not None:
        check_model_folder(args.init_from)
    command = "sft-course " + shlex.join(args.argv)
    summary = {}

    def write(folder: Path) -> None:
        summary.update(
            pretrain(
                folder,
                steps=args.steps,
                lr=args.lr,
                seed=args.seed,
                command=command,
                warmup_steps=args.warmup_steps,
                init_from=args.init_from,
            )
        )

    write_folder_atomically(args.out, write, args.overwrite)
    print(json.dumps(summary))
    return 0


def _eval(args) -> int:
    from sft_course.evaluation import evaluate_model
    from sft_course.modeling import load_model

    if args.data is not None:  # the learner's own file: validated before the model loads
        from sft_course import own_data

        data = own_data.read_data_file(args.data)
        model, tokenizer = load_model(args.model)
        print(
            json.dumps(
                own_data.evaluate_file(model, tokenizer, data, _max_length(args), args.max_new_tokens),
                ensure_ascii=False,
            )
        )
        return 0
    model, tokenizer = load_model(args.model)
    report = evaluate_model(model, tokenizer, n_people=args.eval_people, include_json=not args.no_json)
    print(json.dumps(report))
    return 0


def _max_length(args) -> int:
    """`--max-length`, or its default: 128 tokens for the bundled model (256 positions), 512 for any other."""
    from sft_course.modeling import BUNDLED, model_kind

    if args.max_length is not None:
        return args.max_length
    return 128 if model_kind(args.model) == BUNDLED else 512


def _sft_options(args) -> dict:
    from sft_course.checkpoint import RESUME_FIELDS

    return {name: getattr(args, name) for name in RESUME_FIELDS if hasattr(args, name)}


def _check_checkpoint_dir(args) -> None:
    """`--resume` needs a checkpoint of the same options; a fresh run must not clobber one silently."""
    from sft_course.checkpoint import CHECKPOINT_FILE, check_resumable

    folder = Path(args.checkpoint_dir)
    check_writable_folder(folder, "--checkpoint-dir")
    checkpoint, options_file = folder / CHECKPOINT_FILE, folder / SFT_OPTIONS_FILE
    if not args.resume:
        if checkpoint.exists() and not args.overwrite:
            raise OptionsError(f"{checkpoint} exists: add --resume to continue that run, or --overwrite to start over")
        return
    if not checkpoint.exists():
        raise CheckpointError(
            f"--resume: no checkpoint at {checkpoint} (the run was stopped before its first "
            "save, or --checkpoint-dir differs): run the command without --resume"
        )
    if options_file.exists():
        check_resumable(checkpoint, json.loads(options_file.read_text()), _sft_options(args), as_options=True)


def _train_config(args):
    """The TrainConfig of `sft`'s options (the world's questions or `--data`)."""
    from sft_course.run import TrainConfig

    return TrainConfig(
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum_steps,
        seed=args.seed,
        checkpoint_dir=args.checkpoint_dir,
        save_every=args.save_every or 0,
        lean=args.run.lean,
    )


def _start_run(args):
    """The accelerator (or None) and whether this is the main process; the main one prepares --checkpoint-dir."""
    from sft_course.checkpoint import CHECKPOINT_FILE

    accelerator = None
    if args.accelerate:  # `accelerate launch -m sft_course sft --accelerate ...` runs one process per device
        from accelerate import Accelerator

        accelerator = Accelerator()
    is_main = accelerator is None or accelerator.is_main_process
    if args.checkpoint_dir and is_main:
        folder = Path(args.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.resume:  # --overwrite: the old run's checkpoint must not be resumed with this run's options
            (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        (folder / SFT_OPTIONS_FILE).write_text(json.dumps(_sft_options(args), indent=1) + "\n")
    return accelerator, is_main


def _sft(args) -> int:
    from sft_course.experiment import SFT_DATA_DIR, run_sft, training_rows
    from sft_course.modeling import BUNDLED_MODEL_DIR, check_model_folder, save_model

    check_output_folder(args.out, args.overwrite)
    if args.checkpoint_dir:
        _check_checkpoint_dir(args)
    if args.data is not None:
        return _sft_on_file(args)
    for name in (f"train_{args.answers}.jsonl", "eval_held_out.jsonl"):
        if not (SFT_DATA_DIR / name).is_file():
            raise DataError(f"{SFT_DATA_DIR / name} is missing: run `sft-course make-data --out data/sft`")
    check_model_folder(args.model or BUNDLED_MODEL_DIR)

    config = _train_config(args)
    rows = training_rows(args.answers, n_people=args.people)
    lora_options = args.run.lora_options(rows)  # LoRA: rank, alpha, and trainable rows for tokens new to pre-training
    accelerator, is_main = _start_run(args)
    run = run_sft(
        answers=args.answers,
        method=args.method,
        config=config,
        lora_options=lora_options,
        train_rows=rows,
        model_name=args.model,
        n_eval_people=args.eval_people,
        accelerator=accelerator,
        resume=args.resume,
    )
    if not is_main:
        return 0

    def write(folder: Path) -> None:
        save_model(run.model, run.tokenizer, folder)
        (folder / "training_log.json").write_text(json.dumps(training_log(run.result), indent=1) + "\n")

    write_folder_atomically(args.out, write, args.overwrite)
    print(json.dumps({**run.summary, "grad_accum_steps": args.grad_accum_steps, "out": str(args.out)}))
    return 0


def _check_setup(args) -> int:
    from sft_course import setup_check  # the standard library only: it names a missing package instead of failing

    def probe():
        from sft_course import setup_probe

        return setup_probe

    return setup_check.run(model=args.model, timing=not args.no_timing, load_probe=probe)


def _sft_on_file(args) -> int:
    """`sft --data FILE [--eval-data FILE]`: the learner's own rows, checked before the model loads."""
    from sft_course import own_data
    from sft_course.modeling import BUNDLED_MODEL_DIR, check_model_folder, load_model, save_model

    data = own_data.read_data_file(args.data)
    if args.eval_data is not None:
        train_data, eval_data = data, own_data.read_data_file(args.eval_data, "--eval-data")
        note = f"--eval-data {args.eval_data}"
    else:
        train_data, eval_data, note = own_data.held_out_split(data, seed=args.seed)
    print(f"{args.data}: {len(data)} rows ({data.format} format); held out: {note}", file=sys.stderr)
    check_model_folder(args.model or BUNDLED_MODEL_DIR)
    config = _train_config(args)
    lora_options = args.run.lora_options(train_data.messages)
    accelerator, is_main = _start_run(args)
    model, tokenizer = load_model(args.model)
    run = own_data.run_file_sft(
        model,
        tokenizer,
        train_data,
        eval_data,
        method=args.method,
        config=config,
        lora_options=lora_options,
        max_length=_max_length(args),
        max_new_tokens=args.max_new_tokens,
        held_out_note=note,
        accelerator=accelerator,
        resume=args.resume,
    )
    if not is_main:
        return 0
    run.summary.update(
        grad_accum_steps=args.grad_accum_steps,
        model=args.model or "bundled",
        out=str(args.out),
        samples_file=str(Path(args.out) / own_data.SAMPLES_FILE),
    )

    def write(folder: Path) -> None:
        save_model(run.model, run.tokenizer, folder)
        (folder / "training_log.json").write_text(json.dumps(training_log(run.result), indent=1) + "\n")
        own_data.write_run_files(run, folder)

    write_folder_atomically(args.out, write, args.overwrite)
    print(json.dumps(run.summary, ensure_ascii=False))
    return 0


def _chat(args) -> int:
    from sft_course.chat import chat_loop
    from sft_course.modeling import load_model

    model, tokenizer = load_model(args.model)
    chat_loop(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens)
    return 0


def training_log(result) -> list[dict]:
    """One entry per optimizer step (step, loss, lr, grad_norm, epoch), with `eval_loss` where evaluated."""
    evals = {e["step"]: e["eval_loss"] for e in result.evals}
    return [dict(h, eval_loss=evals[h["step"]]) if h["step"] in evals else dict(h) for h in result.history]


def _make_data(args) -> int:
    from sft_course.data import make_sft_data

    if Path(args.out).is_file():
        raise OptionsError(f"--out {args.out} is a file, not a folder")
    counts = make_sft_data(args.out)
    for name, n in counts.items():
        print(f"{args.out}/{name}: {n} rows")
    return 0


def _validate(args) -> int:
    from sft_course.data import validate_jsonl

    path = Path(args.file)
    if not path.is_file():
        raise DataError(f"{path}: {'a folder, not a JSONL file' if path.is_dir() else 'no such file'}")
    try:
        counts = validate_jsonl(path)
    except OSError as error:
        raise DataError(f"{args.file}: {error.strerror or error}") from None
    print(f"{args.file}: {counts['rows']} rows OK ({counts['format']} format)")
    return 0


def _pick(names, table, flag):
    if names is None:
        return table
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise SystemExit(f"error: {flag}: unknown configuration {', '.join(unknown)}; choose from {', '.join(table)}")
    return {n: table[n] for n in chosen}


def _bench(args) -> int:
    from sft_course.bench import COURSE_CONFIGS, TRL_CONFIGS, format_table, run_bench

    if args.method == "lora":
        return _bench_lora(args)
    args.batch_size, args.lr = args.batch_size or 64, args.lr or 6e-4

    course, trl = _pick(args.course, COURSE_CONFIGS, "--course"), _pick(args.trl, TRL_CONFIGS, "--trl")
    report = run_bench(
        steps=args.steps,
        n_people=args.people,
        eval_people=args.eval_people,
        batch_size=args.batch_size,
        lr=args.lr,
        epochs=args.epochs,
        warmup_steps=args.warmup_steps,
        repeats=args.repeats,
        seed=args.seed,
        model_name=args.model,
        course_configs=course,
        trl_configs=trl,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    return _print_bench(report["summary"], format_table, args)


# the bench options that `bench --method lora` does not read (it trains --steps steps and scores its own eval rows)
LORA_BENCH_IGNORES = ("epochs", "people", "eval_people", "warmup_steps")


def _print_bench(summary: dict, format_summary, args, ignored: tuple[str, ...] = ()) -> int:
    """A bench's table, then its summary and the options it used as one JSON line (what a script reads)."""
    print(format_summary(summary))
    left_out = ("func", "command", "parser", "combinations", *ignored)
    options = {k: v for k, v in vars(args).items() if k not in left_out}
    print(json.dumps({**summary, "options": options}))
    return 0


def _bench_lora(args) -> int:
    """`bench --method lora` (`bench_lora`): the course's LoRA loop against TRL's SFTTrainer with PEFT."""
    from sft_course.bench_lora import COURSE_LORA_CONFIGS, TRL_LORA_CONFIGS, format_lora_table, run_lora_bench
    from sft_course.experiment import default_lr

    model = args.model or "smollm2"
    args.batch_size, args.lr = args.batch_size or 8, args.lr or default_lr("lora", model)
    report = run_lora_bench(
        model_name=model,
        steps=args.steps or 12,
        batch_size=args.batch_size,
        lr=args.lr,
        repeats=args.repeats,
        seed=args.seed,
        course_configs=None if args.course is None else _pick(args.course, COURSE_LORA_CONFIGS, "--course"),
        trl_configs=None if args.trl is None else _pick(args.trl, TRL_LORA_CONFIGS, "--trl"),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    return _print_bench(report["summary"], format_lora_table, args, LORA_BENCH_IGNORES)


# ----------------------------------------------------------------------------------------------------------
# Combinations that make no sense: checked after parsing, reported as usage errors (exit 2)


def _sft_combinations(args) -> str | None:
    if args.method != "lora":
        given = [flag for flag, value in (("--rank", args.rank), ("--alpha", args.alpha)) if value is not None]
        if given:
            return (
                f"{' and '.join(given)} {'is a LoRA option' if len(given) == 1 else 'are LoRA options'}, "
                "for --method lora only"
            )
    for flag, value in (("--resume", args.resume), ("--save-every", args.save_every)):
        if value and not args.checkpoint_dir:
            return f"{flag} needs --checkpoint-dir DIR"
    if args.data is None:
        given = [
            flag
            for flag, value in (
                ("--eval-data", args.eval_data),
                ("--max-length", args.max_length),
                ("--max-new-tokens", args.max_new_tokens),
            )
            if value is not None
        ]
        if given:
            return f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --data FILE"
    else:
        given = [
            flag
            for flag, value in (("--people", args.people), ("--eval-people", args.eval_people))
            if value is not None
        ]
        if given:
            return f"{' and '.join(given)} choose the world's people: not with --data FILE"
    if args.checkpoint_dir:
        out, ckpt = Path(args.out).resolve(), Path(args.checkpoint_dir).resolve()
        if ckpt == out or out in ckpt.parents:
            return "--checkpoint-dir must be outside --out (the model folder is replaced when the run ends)"
    if args.grad_accum_steps is not None and args.batch_size % args.grad_accum_steps:
        return (
            f"--batch-size ({args.batch_size}) must be divisible by --grad-accum-steps ({args.grad_accum_steps}): "
            "each optimizer step is that many micro-batches of equal size"
        )
    # defaults that depend on the model and the method: resolved in one place (`experiment.resolve_run`)
    from sft_course.experiment import resolve_run

    args.run = resolve_run(
        args.method,
        args.model,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum_steps,
        rank=args.rank,
        alpha=args.alpha,
    )
    args.lr, args.grad_accum_steps, args.rank, args.alpha = (
        args.run.lr,
        args.run.grad_accum_steps,
        args.run.rank,
        args.run.alpha,
    )
    if args.checkpoint_dir and args.save_every is None:
        args.save_every = DEFAULT_SAVE_EVERY
    return None


def _eval_combinations(args) -> str | None:
    if args.data is None:
        given = [f for f, v in (("--max-length", args.max_length), ("--max-new-tokens", args.max_new_tokens)) if v]
        if given:
            return f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --data FILE"
    elif args.eval_people is not None or args.no_json:
        return "--eval-people and --no-json are for the world's questions: not with --data FILE"
    return None


def _pretrain_combinations(args) -> str | None:
    if args.warmup_steps >= args.steps:
        return f"--warmup-steps ({args.warmup_steps}) must be below --steps ({args.steps})"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sft-course",
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 done, 1 an error in one line, 2 bad arguments, 130/143 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train the bundled base model from scratch")
    p.add_argument("--out", default="data/base-model", help="folder to write (refused if not empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new model is saved")
    p.add_argument("--steps", type=positive_int, default=PRETRAIN_STEPS)
    p.add_argument("--lr", type=positive_float, default=PRETRAIN_LR)
    p.add_argument("--warmup-steps", type=non_negative_int, default=PRETRAIN_WARMUP_STEPS)
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of initialisation and data order (the world is fixed)"
    )
    p.add_argument("--init-from", default=None, help="continue pre-training this saved model (a second stage)")
    p.set_defaults(func=_pretrain, combinations=_pretrain_combinations, parser=p)

    p = sub.add_parser("make-data", help="write the SFT data files (JSONL) generated from the world")
    p.add_argument("--out", default="data/sft")
    p.set_defaults(func=_make_data, parser=p)

    p = sub.add_parser("validate", help="check a JSONL file of SFT examples; exit 1 naming file, line and field")
    p.add_argument("file")
    p.set_defaults(func=_validate, parser=p)

    p = sub.add_parser(
        "sft",
        help="fine-tune a model on your JSONL file (--data) or the world's QA data; the last "
        "line printed is one JSON object",
    )
    p.add_argument(
        "--data",
        default=None,
        help="a JSONL file of your examples in one of five formats: "
        "instruction/response, messages, prompt/completion, Alpaca instruction/input/output, ShareGPT "
        "conversations (default: the world's questions)",
    )
    p.add_argument(
        "--eval-data", default=None, help="a JSONL file to evaluate on (default: a seeded 10%% of --data held out)"
    )
    p.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="with --data: tokens per example (default 128 on the bundled model, 512 on any other)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=None,
        help="with --data: tokens per held-out answer (default: the longest reference plus 16, at most 256)",
    )
    p.add_argument("--method", choices=METHODS, default="full")
    p.add_argument("--answers", choices=ANSWER_STYLES, default="sentence")
    p.add_argument(
        "--out",
        required=True,
        help="folder to save the fine-tuned model (Hugging Face format); "
        "written at the end, refused if not empty (see --overwrite)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --out (once the new model is saved) or a checkpoint in --checkpoint-dir",
    )
    p.add_argument("--model", default=None, help="base model folder or hub id (default: the bundled model)")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="peak learning rate (default: the bundled model "
        + ", ".join(f"{lr:g} {method}" for method, lr in LEARNING_RATES.items())
        + "; any other model "
        + ", ".join(f"{lr:g} {method}" for method, lr in PRETRAINED_LEARNING_RATES.items())
        + ")",
    )
    p.add_argument("--epochs", type=positive_float, default=EPOCHS)
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="examples per optimizer step")
    p.add_argument(
        "--grad-accum-steps",
        type=positive_int,
        default=None,
        help="micro-batches per optimizer step, their gradients accumulated (--batch-size must divide by "
        "it; default: 1 for the bundled model, micro-batches of at most "
        f"{MICRO_BATCH_SIZE} examples for any other)",
    )
    p.add_argument("--rank", type=positive_int, default=None, help=f"LoRA rank (default {LORA_RANK})")
    p.add_argument("--alpha", type=positive_float, default=None, help=f"LoRA alpha (default {LORA_ALPHA:g})")
    p.add_argument(
        "--people",
        type=people_count,
        default=None,
        help=f"train on the questions about the first N training people only (1..{PEOPLE_PER_SPLIT}, default: all)",
    )
    p.add_argument(
        "--eval-people",
        type=people_count,
        default=None,
        help=f"people per split to evaluate, a seeded sample (1..{PEOPLE_PER_SPLIT}, default: all)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="save a checkpoint (model, optimizer, step, history) in this folder while training",
    )
    p.add_argument(
        "--save-every",
        type=positive_int,
        default=None,
        help=f"optimizer steps between checkpoints (default {DEFAULT_SAVE_EVERY}; the last step always)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose checkpoint is in --checkpoint-dir (same options)",
    )
    p.add_argument("--accelerate", action="store_true", help="use accelerate (run under `accelerate launch`)")
    p.set_defaults(func=_sft, combinations=_sft_combinations, parser=p)

    p = sub.add_parser(
        "bench", help="the course's loop against TRL's SFTTrainer, same setup; last line: one JSON object"
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="optimizer steps per run (default: --epochs of the data)"
    )
    p.add_argument("--epochs", type=positive_float, default=2.0)
    p.add_argument("--people", type=people_count, default=None, help="train on the first N training people only")
    p.add_argument("--eval-people", type=people_count, default=100, help="held-out people to score")
    p.add_argument("--batch-size", type=positive_int, default=None, help="examples per step (default: 64; lora: 8)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak rate (default: 6e-4; lora: the model's)")
    p.add_argument(
        "--method",
        choices=("full", "lora"),
        default="full",
        help="full: the bundled model's full fine-tuning; lora: LoRA on --model (default smollm2) against TRL + PEFT",
    )
    p.add_argument("--warmup-steps", type=non_negative_int, default=3, help="untimed steps of each configuration first")
    p.add_argument(
        "--repeats", type=positive_int, default=1, help="timed runs of each configuration (medians reported)"
    )
    p.add_argument("--course", default=None, help="comma-separated course configurations (default: all)")
    p.add_argument("--trl", default=None, help="comma-separated TRL configurations (default: all)")
    p.add_argument("--model", default=None, help="base model folder or hub id (default: the bundled model)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(func=_bench, parser=p)

    p = sub.add_parser(
        "eval",
        help="evaluate a model folder on your JSONL file (--data) or the world's questions; "
        "the last line printed is one JSON object",
    )
    p.add_argument("--model", default=None, help="model folder or hub id (default: the bundled base model)")
    p.add_argument(
        "--data",
        default=None,
        help="a JSONL file in any of sft's five formats: loss, stop rate and exact match on every row",
    )
    p.add_argument("--max-length", type=positive_int, default=None, help="with --data: tokens per example")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="with --data: tokens per answer")
    p.add_argument(
        "--eval-people",
        type=people_count,
        default=None,
        help=f"people per split to evaluate, a seeded sample (1..{PEOPLE_PER_SPLIT}, default: all), "
        "as in `sft --eval-people`",
    )
    p.add_argument("--no-json", action="store_true", help="skip the profile-as-JSON task")
    p.set_defaults(func=_eval, combinations=_eval_combinations, parser=p)

    p = sub.add_parser("chat", help="chat in the terminal with a model folder, adapter or smollm2 (/reset, /quit)")
    p.add_argument("--model", default=None, help="model or adapter folder, smollm2, or hub id (default: bundled)")
    p.add_argument("--system", default=None, help="a system prompt opening the conversation")
    p.add_argument("--max-new-tokens", type=positive_int, default=128)
    p.set_defaults(func=_chat, parser=p)

    p = sub.add_parser(
        "check-setup",
        help="is this machine ready? packages, model, a timed short run, each notebook's expected time here; "
        "exit 1 with fix: lines if not",
    )
    p.add_argument("--model", default=None, help="model folder to check (default: the bundled model)")
    p.add_argument("--no-timing", action="store_true", help="skip the timed short run and the estimates")
    p.set_defaults(func=_check_setup, parser=p)
    for p in (parser, *sub.choices.values()):
        # argparse before Python 3.13 takes "-3e-3" for an option ("expected one argument"); read it as a number,
        # so that the range check answers "must be greater than 0" (3.13's own pattern)
        p._negative_number_matcher = re.compile(r"^-\.?\d")
    return parser


# ----------------------------------------------------------------------------------------------------------
# The one boundary between the package's errors and the user


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same cleanup runs."""


@contextlib.contextmanager
def _sigterm_raises():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    problem = args.combinations(args) if getattr(args, "combinations", None) else None
    if problem:
        args.parser.error(problem)  # usage and one error line on stderr, exit 2
    try:
        with _sigterm_raises():
            return args.func(args)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        note = ""
        if args.command in ("sft", "pretrain"):
            note = f"; nothing was written to {args.out}"
        if getattr(args, "checkpoint_dir", None) and any(Path(args.checkpoint_dir).glob("checkpoint*.pt")):
            note += f"; continue from the checkpoint in {args.checkpoint_dir} with the same command plus --resume"
        print(f"error: interrupted ({'SIGTERM' if terminated else 'SIGINT'}){note}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
