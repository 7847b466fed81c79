"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: the SFT loop in 2 processes.

Three runs in one launch: uninterrupted; stopped after `--stop-at` steps with a checkpoint; resumed from it.
The main process writes the per-step losses of the uninterrupted and of the resumed run as JSON to `--out`.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for test_training's tiny model and examples

from accelerate import Accelerator  # noqa: E402
from test_training import PAD, random_examples, tiny_model  # noqa: E402

from sft_course.training import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--stop-at", type=int, required=True)
    args = parser.parse_args()
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    examples = random_examples(40, seed=12)
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=8, eval_every=0, seed=1)
    uninterrupted = train(tiny_model(), examples, PAD, config, progress=False, accelerator=accelerator)
    saving = TrainConfig(**{**config.__dict__, "checkpoint_dir": args.checkpoints, "save_every": 1})
    train(
        tiny_model(),
        examples,
        PAD,
        TrainConfig(**{**saving.__dict__, "max_steps": args.stop_at}),
        progress=False,
        accelerator=accelerator,
    )
    accelerator.wait_for_everyone()
    resumed = train(tiny_model(seed=99), examples, PAD, saving, resume=True, progress=False, accelerator=accelerator)
    if accelerator.is_main_process:
        Path(args.out).write_text(
            json.dumps(
                {
                    "processes": accelerator.num_processes,
                    "uninterrupted": [h["loss"] for h in uninterrupted.history],
                    "resumed": [h["loss"] for h in resumed.history],
                }
            )
        )
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
