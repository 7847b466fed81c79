"""The `sft-course` command line: pretrain, make-data, validate, sft, eval.

`--people N` always means the people trained on (`sft`: the first N training people); `--eval-people N` the
people per split that evaluation scores (a seeded sample, in `sft` and `eval` alike).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from sft_course.defaults import (
    ANSWER_STYLES,
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATES,
    LORA_ALPHA,
    LORA_RANK,
    METHODS,
    PRETRAIN_LR,
    PRETRAIN_STEPS,
    PRETRAIN_WARMUP_STEPS,
)


def _pretrain(args) -> int:
    from sft_course.pretrain import pretrain

    command = "sft-course " + shlex.join(sys.argv[1:])
    summary = pretrain(args.out, steps=args.steps, lr=args.lr, seed=args.seed, command=command,
                       warmup_steps=args.warmup_steps, init_from=args.init_from)
    print(json.dumps(summary))
    return 0


def _eval(args) -> int:
    from sft_course.evaluation import evaluate_model
    from sft_course.modeling import load_model

    model, tokenizer = load_model(args.model)
    report = evaluate_model(model, tokenizer, n_people=args.eval_people, include_json=not args.no_json)
    print(json.dumps(report))
    return 0


def _sft(args) -> int:
    from sft_course.experiment import default_lora_options, run_sft, training_rows
    from sft_course.modeling import save_model
    from sft_course.training import TrainConfig

    lr = args.lr if args.lr is not None else LEARNING_RATES[args.method]
    config = TrainConfig(lr=lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    rows = training_rows(args.answers, n_people=args.people)
    lora_options = None
    if args.method == "lora":  # rank, alpha, and trainable rows for tokens new to pre-training
        lora_options = default_lora_options(args.rank, args.alpha, rows, args.model)
    accelerator = None
    if args.accelerate:  # `accelerate launch -m sft_course sft --accelerate ...` runs one process per device
        from accelerate import Accelerator

        accelerator = Accelerator()
    run = run_sft(answers=args.answers, method=args.method, config=config, lora_options=lora_options,
                  train_rows=rows, model_name=args.model,
                  n_eval_people=args.eval_people, accelerator=accelerator)
    if accelerator is not None and not accelerator.is_main_process:
        return 0
    save_model(run.model, run.tokenizer, args.out)
    print(json.dumps({**run.summary, "lr": lr, "out": str(args.out)}))
    return 0


def _make_data(args) -> int:
    from sft_course.data import make_sft_data

    counts = make_sft_data(args.out)
    for name, n in counts.items():
        print(f"{args.out}/{name}: {n} rows")
    return 0


def _validate(args) -> int:
    from sft_course.data import DataValidationError, validate_jsonl

    try:
        counts = validate_jsonl(args.file)
    except (DataValidationError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    formats = ", ".join(f"{fmt} {n}" for fmt, n in counts.items() if fmt != "rows" and n)
    print(f"{args.file}: {counts['rows']} rows OK ({formats})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sft-course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train the bundled base model from scratch")
    p.add_argument("--out", default="data/base-model")
    p.add_argument("--steps", type=int, default=PRETRAIN_STEPS)
    p.add_argument("--lr", type=float, default=PRETRAIN_LR)
    p.add_argument("--warmup-steps", type=int, default=PRETRAIN_WARMUP_STEPS)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (the world is fixed)")
    p.add_argument("--init-from", default=None, help="continue pre-training this saved model (a second stage)")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("make-data", help="write the SFT data files (JSONL) generated from the world")
    p.add_argument("--out", default="data/sft")
    p.set_defaults(func=_make_data)

    p = sub.add_parser("validate", help="check a JSONL file of SFT examples; exit 1 naming file, line and field")
    p.add_argument("file")
    p.set_defaults(func=_validate)

    p = sub.add_parser("sft", help="fine-tune the base model on the QA data; the last line printed is one JSON object")
    p.add_argument("--method", choices=METHODS, default="full")
    p.add_argument("--answers", choices=ANSWER_STYLES, default="sentence")
    p.add_argument("--out", required=True, help="folder to save the fine-tuned model (Hugging Face format)")
    p.add_argument("--model", default=None, help="base model folder or hub id (default: the bundled model)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: "
                   + ", ".join(f"{lr:g} {method}" for method, lr in LEARNING_RATES.items()) + ")")
    p.add_argument("--epochs", type=float, default=EPOCHS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--rank", type=int, default=LORA_RANK, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=LORA_ALPHA, help="LoRA alpha")
    p.add_argument("--people", type=int, default=None,
                   help="train on the questions about the first N training people only (default: all 500)")
    p.add_argument("--eval-people", type=int, default=None, help="people per split to evaluate (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accelerate", action="store_true", help="use accelerate (run under `accelerate launch`)")
    p.set_defaults(func=_sft)

    p = sub.add_parser("eval", help="evaluate a model folder; the last line printed is one JSON object")
    p.add_argument("--model", default=None, help="model folder or hub id (default: the bundled base model)")
    p.add_argument("--eval-people", type=int, default=None,
                   help="people per split to evaluate, a seeded sample (default: all), as in `sft --eval-people`")
    p.add_argument("--no-json", action="store_true", help="skip the profile-as-JSON task")
    p.set_defaults(func=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
