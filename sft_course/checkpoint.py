"""Checkpoints of an SFT run: save (atomically), load (plain data and tensors only), and the one check that a
checkpoint belongs to the run that wants to resume it (`RESUME_FIELDS`, used by `training.train` and by the
command line's `--resume` alike).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from sft_course.errors import CheckpointError
from sft_course.run import TrainConfig, TrainResult

CHECKPOINT_FILE = "checkpoint.pt"


def checkpoint_path(config: TrainConfig) -> Path:
    """The checkpoint file of a run: `CHECKPOINT_FILE` in `config.checkpoint_dir`."""
    return Path(config.checkpoint_dir) / CHECKPOINT_FILE


def save_checkpoint(model, optimizer, result: TrainResult, step: int, config: TrainConfig) -> None:
    """Write the checkpoint to a temporary file next to it, then rename it over the old one (`os.replace`).

    A kill during the save leaves the previous checkpoint whole: the rename is atomic on one file system.
    Everything stored is plain data (dicts, lists, numbers, strings, tensors), so `weights_only=True` loads it.
    """
    path = checkpoint_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # one per process: `accelerate launch` runs several
    try:
        with open(tmp, "wb") as f:
            torch.save(
                {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "result": asdict(result),
                    "config": asdict(config),
                },
                f,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint_file(path: str | os.PathLike, map_location=None) -> dict:
    """A checkpoint's contents, loaded with `weights_only=True`: a file holding any pickled object other than
    plain data and tensors is refused (`CheckpointError`) without running it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is no checkpoint of ours
        raise CheckpointError(f"{path}: not a readable checkpoint (not the zip archive that torch.save writes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        reason = f"it calls {found.group(1)}" if found else str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data, which "
            f"could run code when unpickled ({reason})"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from None


# What a run must agree on to resume a checkpoint: the TrainConfig fields that change its losses, and the choices
# that the command line saves next to the checkpoint (`sft_options.json`: method, answers, model, LoRA rank and
# alpha, people). One list for both checks; each compares the fields that both of its sides hold.
RESUME_FIELDS = (
    "method",
    "answers",
    "model",
    "people",
    "rank",
    "alpha",
    "lr",
    "epochs",
    "total_steps",
    "batch_size",
    "grad_accum_steps",
    "warmup_ratio",
    "min_lr_ratio",
    "weight_decay",
    "max_grad_norm",
    "seed",
    # `sft --data`: the file trained on, the file evaluated on, and the tokens per example
    "data",
    "eval_data",
    "max_length",
)


def check_resumable(path, saved: dict, now: dict, as_options: bool = False) -> None:
    """Refuse (`CheckpointError`) to resume the checkpoint at `path`, saved with `saved`, in a run set to `now`,
    when they differ in a field of `RESUME_FIELDS` that both hold. `as_options` names the fields as the command
    line's options (`--grad-accum-steps`)."""
    differ = [
        f"{'--' + k.replace('_', '-') if as_options else k} {saved[k]!r} there, {now[k]!r} here"
        for k in RESUME_FIELDS
        if k in saved and k in now and saved[k] != now[k]
    ]
    if differ:
        what = "options" if as_options else "settings"
        raise CheckpointError(f"{path} is from a run with other {what}: {'; '.join(differ)}")


def load_checkpoint(model, optimizer, result: TrainResult, config: TrainConfig) -> int:
    """Restore model, optimizer and `result` from the checkpoint in `config.checkpoint_dir`; return its step.

    Refused (`CheckpointError`) when the checkpoint is missing or unsafe, from a run with other settings
    (`check_resumable`), or does not fit the model.
    """
    if not config.checkpoint_dir:
        raise CheckpointError("resume=True needs config.checkpoint_dir, the folder of the checkpoint to resume")
    path = checkpoint_path(config)
    state = load_checkpoint_file(path, map_location=next(model.parameters()).device)
    check_resumable(path, state.get("config", {}), asdict(config))
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit this model: {str(error).splitlines()[0]}") from None
    for key, value in state["result"].items():
        setattr(result, key, value)
    return state["step"]
