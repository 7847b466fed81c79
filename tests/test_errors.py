"""The package's error types: one base class for a user's mistake, each kind still its built-in parent."""

from sft_course.errors import (
    CheckpointError,
    CourseError,
    DataError,
    HubUnreachableError,
    ModelFolderError,
    OptionsError,
)
from sft_course.formats import DataValidationError


def test_error_types_keep_their_builtin_parents():
    assert issubclass(DataValidationError, DataError) and issubclass(DataValidationError, ValueError)
    assert issubclass(ModelFolderError, FileNotFoundError) and issubclass(HubUnreachableError, ModelFolderError)
    for kind in (DataError, ModelFolderError, OptionsError, CheckpointError):
        assert issubclass(kind, CourseError)
