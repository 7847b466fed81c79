"""An `sft` run killed by a signal leaves no `--out`, and `--resume` continues it to the uninterrupted losses.

The interrupted run is a real process that gets SIGTERM (or SIGINT) from the test. To be sure the signal
lands mid-training, the child waits after its first checkpoint (a wrapper around `_save_checkpoint`, in the
child only); the test sends the signal as soon as that checkpoint exists on disk.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sft_course import training
from sft_course.cli import main
from sft_course.training import CHECKPOINT_FILE, load_checkpoint_file

REPO = Path(__file__).resolve().parent.parent
# 4 people x 5 attributes x 3 paraphrases = 60 examples, 15 steps of 4; a checkpoint every 3 steps
RUN = ["sft", "--people", "4", "--batch-size", "4", "--epochs", "1", "--eval-people", "1", "--lr", "1e-3"]
SAVE_EVERY = 3

CHILD = textwrap.dedent("""
    import sys, time
    import sft_course.training as training
    from sft_course.cli import main

    save = training._save_checkpoint

    def save_then_wait(*args, **kwargs):
        save(*args, **kwargs)
        time.sleep(300)  # the test signals us here, mid-run

    training._save_checkpoint = save_then_wait
    sys.exit(main(sys.argv[1:]))
""")


def losses(out: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((out / "training_log.json").read_text())]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[float]:
    out = tmp_path_factory.mktemp("uninterrupted") / "model"
    assert main([*RUN, "--out", str(out)]) == 0
    return losses(out)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_sft_leaves_no_out_and_resumes_to_the_same_losses(signum, uninterrupted, tmp_path, capsys,
                                                                       monkeypatch):
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    command = [*RUN, "--out", str(out), "--checkpoint-dir", str(ckpt), "--save-every", str(SAVE_EVERY)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", CHILD, *command], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (ckpt / CHECKPOINT_FILE).exists():
            assert child.poll() is None, child.communicate()[1][-2000:]
            assert time.time() < deadline, "no checkpoint after 240 s"
            time.sleep(0.2)
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    name = signal.Signals(signum).name
    assert child.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.strip().splitlines()[-1] == (
        f"error: interrupted ({name}); nothing was written to {out}; continue from the checkpoint in {ckpt} "
        "with the same command plus --resume")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no --out, no partial folder
    assert load_checkpoint_file(ckpt / CHECKPOINT_FILE)["step"] == SAVE_EVERY

    started_at = []
    load = training._load_checkpoint
    monkeypatch.setattr(training, "_load_checkpoint", lambda *a, **k: started_at.append(load(*a, **k)) or started_at[-1])
    assert main([*command, "--resume"]) == 0
    assert started_at == [SAVE_EVERY]
    resumed = losses(out)
    assert len(resumed) == len(uninterrupted) == 15
    assert resumed == uninterrupted  # bit for bit: same data order, model and optimizer state
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["out"] == str(out)
