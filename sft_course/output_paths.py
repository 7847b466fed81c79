"""Checking, before any work, that an output folder (`--out`, `--checkpoint-dir`) can be created and written.

A run that trains for many minutes and then cannot save is lost, so the command line checks first: a parent
that is a file, a folder without write permission, a read-only file system. The check creates and removes an
empty probe folder in the nearest existing folder: what the run will do, under the same user and mounts.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sft_course.errors import OptionsError


def nearest_existing(path: Path) -> Path:
    """`path` itself or its nearest ancestor that exists (as a file or a folder)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: str | os.PathLike, flag: str = "--out") -> None:
    """Raise a one-line `OptionsError` unless `folder` exists as a writable folder or can be created.

    Nothing is left behind: the probe folder is removed at once, and no missing parent is created.
    """
    folder = Path(folder)
    try:
        existing = nearest_existing(folder)
        is_file = existing.exists() and not existing.is_dir()
    except PermissionError:  # a folder on the way that this user may not enter
        raise OptionsError(f"{flag} {folder} cannot be written: no permission to reach it") from None
    if is_file:
        if existing == Path(os.path.abspath(folder)):
            raise OptionsError(f"{flag} {folder} is a file, not a folder")
        raise OptionsError(f"{flag} {folder} cannot be created: {existing} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".sft-course-write-check-", dir=existing)
    except OSError as error:
        if error.errno == errno.EROFS:
            why = "it is on a read-only file system"
        elif error.errno in (errno.EACCES, errno.EPERM):
            why = "no permission to write there"
        else:
            why = error.strerror or str(error)
        raise OptionsError(f"{flag} {folder} cannot be written: {why} ({existing})") from None
    os.rmdir(probe)
