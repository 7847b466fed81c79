"""The private hooks of other libraries that the course relies on, checked directly: an upgrade that removes or
bypasses one fails here, with what to fix, instead of as a puzzling failure somewhere else.

- argparse's `_negative_number_matcher`: `cli.build_parser` sets it on every parser so that `--lr -3e-3` is read
  as a (bad) number, which the range check answers, instead of "expected one argument" (Python before 3.13).
- nbval's `IPyNbCell.compare_outputs`: `notebooks/conftest.py` wraps it to leave stderr and widget views out of
  the comparison of `# NBVAL_CHECK_OUTPUT` cells.
"""

import argparse
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from sft_course.cli import build_parser

NOTEBOOK_CONFTEST = Path(__file__).resolve().parent.parent / "notebooks" / "conftest.py"


def _parser_with(matcher) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hook")
    parser.add_argument("--lr", type=float)
    parser._negative_number_matcher = matcher
    return parser


def test_argparse_still_consults_negative_number_matcher(capsys):
    fresh = argparse.ArgumentParser()
    assert isinstance(getattr(fresh, "_negative_number_matcher", None), re.Pattern), (
        "argparse.ArgumentParser no longer has `_negative_number_matcher`: cli.build_parser's fix for negative "
        "numbers such as `--lr -3e-3` does nothing now; find argparse's new way or drop the fix"
    )
    # A matcher that matches nothing: argparse must then take "-3" for an option, so it reads the attribute.
    with pytest.raises(SystemExit):
        _parser_with(re.compile(r"(?!)")).parse_args(["--lr", "-3"])
    assert "expected one argument" in capsys.readouterr().err, (
        "argparse ignores `_negative_number_matcher` now: cli.build_parser's fix for `--lr -3e-3` needs another way"
    )
    assert _parser_with(re.compile(r"^-\.?\d")).parse_args(["--lr", "-3e-3"]).lr == -3e-3


def test_every_parser_of_the_command_line_reads_negative_numbers_as_values(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for p in (parser, *subparsers.values()):
        assert p._negative_number_matcher.match("-3e-3"), f"{p.prog}: the matcher does not take -3e-3 for a number"
    with pytest.raises(SystemExit):
        parser.parse_args(["sft", "--lr", "-3e-3"])
    assert "--lr: must be greater than 0" in capsys.readouterr().err


def test_nbval_still_compares_outputs_through_the_hook_the_notebooks_wrap():
    from nbval.plugin import IPyNbCell

    runtest = inspect.getsource(IPyNbCell.runtest)
    assert "self.compare_outputs(" in runtest, (
        "nbval's IPyNbCell.runtest no longer calls self.compare_outputs: notebooks/conftest.py's filter of stderr "
        "and widget outputs is bypassed; port it to nbval's new comparison"
    )
    spec = importlib.util.spec_from_file_location("notebook_conftest", NOTEBOOK_CONFTEST)
    conftest = importlib.util.module_from_spec(spec)
    original = IPyNbCell.compare_outputs
    try:
        spec.loader.exec_module(conftest)  # patches IPyNbCell.compare_outputs, as pytest does for notebooks/
        assert IPyNbCell.compare_outputs is conftest._compare_without_noise
        assert list(inspect.signature(conftest._compare_outputs).parameters) == [
            "self",
            "test",
            "ref",
            "skip_compare",
        ], "nbval's IPyNbCell.compare_outputs changed its signature: update notebooks/conftest.py's wrapper"
        # What the wrapper passes on: stdout kept, stderr and widget views dropped.
        seen = {}

        def record(self, test, ref, skip_compare=None):
            seen.update(test=test, ref=ref)
            return True

        conftest._compare_outputs = record
        stdout = {"output_type": "stream", "name": "stdout", "text": "42\n"}
        stderr = {"output_type": "stream", "name": "stderr", "text": "100%|####| 3/3\n"}
        widget = {"output_type": "display_data", "data": {conftest.WIDGET_MIME: {"model_id": "x"}}}
        assert IPyNbCell.compare_outputs(None, [stdout, stderr, widget], [stdout]) is True
        assert seen == {"test": [stdout], "ref": [stdout]}
    finally:
        IPyNbCell.compare_outputs = original
