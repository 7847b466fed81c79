"""The package's own error types: a user's mistake, as opposed to a bug in the code.

Everything here derives from `CourseError`. The command line (`sft_course.cli.main`) turns a `CourseError`
into one line, `error: <message>`, on stderr and a non-zero exit; any other exception is a bug and keeps its
traceback. Each subclass also derives from the built-in type that older callers caught (`ValueError` for bad
data and options, `FileNotFoundError` for a model folder), so `except ValueError` still works.
"""

from __future__ import annotations


class CourseError(Exception):
    """A problem with what the user gave us (a file, a folder, an option), explained in one line."""


class DataError(CourseError, ValueError):
    """Bad training or evaluation data: a malformed JSONL file, a missing data file."""


class ModelFolderError(CourseError, FileNotFoundError):
    """A model name or folder that cannot be loaded: no such folder, or no config, weights or tokenizer in it."""


class HubUnreachableError(ModelFolderError):
    """A hub id was given but the hub cannot be reached (offline mode, or no network) and it is not cached."""


class OptionsError(CourseError, ValueError):
    """Options that cannot work together or with what is on disk (e.g. a non-empty `--out` without `--overwrite`)."""


class CheckpointError(CourseError):
    """A training checkpoint that is missing, unsafe (holds pickled objects), corrupt or from another run."""
