"""The `sft-course` command line: pretrain, make-data, validate, sft, eval."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def _pretrain(args) -> int:
    from sft_course.pretrain import pretrain

    command = "sft-course " + shlex.join(sys.argv[1:])
    summary = pretrain(args.out, steps=args.steps, lr=args.lr, seed=args.seed, command=command)
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sft-course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train the bundled base model from scratch")
    p.add_argument("--out", default="data/base-model")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
