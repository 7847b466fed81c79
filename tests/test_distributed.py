"""Two CPU processes (gloo, `torchrun` + `accelerate.Accelerator`): the same per-step losses as one process, and
resumable."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_training import PAD, random_examples, tiny_model

from sft_course.training import TrainConfig, train

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_and_resume_exactly(tmp_path):
    out = tmp_path / "losses.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    # torchrun: `accelerate launch --cpu` starts one process (it needs MPI for more); the worker's
    # Accelerator(cpu=True) reads torchrun's environment and joins a 2-process gloo group
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--nnodes",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(HERE / "ddp_worker.py"),
        "--out",
        str(out),
        "--checkpoints",
        str(tmp_path / "ckpt"),
        "--stop-at",
        "4",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = json.loads(out.read_text())
    assert losses["processes"] == 2

    # one process, the same global batch of 8 (the worker's setup), every position through the output layer as
    # under accelerate (one process alone would project only the target positions: the same loss, other rounding)
    examples = random_examples(40, seed=12)
    one = train(
        tiny_model(),
        examples,
        PAD,
        TrainConfig(lr=1e-2, epochs=2, batch_size=8, eval_every=0, seed=1, logits_on_targets=False),
        progress=False,
    )
    reference = [h["loss"] for h in one.history]
    assert len(losses["uninterrupted"]) == len(reference) == 10
    assert losses["uninterrupted"] == pytest.approx(reference, abs=1e-5)
    assert losses["resumed"] == pytest.approx(losses["uninterrupted"], abs=1e-6)


@pytest.mark.parametrize("name, kind", [("accelerate_ddp.yaml", "MULTI_GPU"), ("accelerate_fsdp.yaml", "FSDP")])
def test_the_committed_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(HERE.parent / "configs" / name))
    assert config.distributed_type.value == kind and config.num_processes >= 2
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
