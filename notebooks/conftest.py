"""nbval settings for the course notebooks.

Only cells marked `# NBVAL_CHECK_OUTPUT` have their output compared (we run with `--nbval-lax`). In those
cells, stderr (warnings, tqdm bars) and widget displays vary from run to run and machine to machine, so they
are left out of the comparison; stdout and rich outputs are still compared exactly.
"""

import os

from nbval.plugin import IPyNbCell

from sft_course.setup_check import TIMES_ENV, record_notebook_times

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_compare_outputs = IPyNbCell.compare_outputs


def _is_noise(output) -> bool:
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        return True
    return WIDGET_MIME in output.get("data", {})


def _compare_without_noise(self, test, ref, skip_compare=None):
    return _compare_outputs(self, [o for o in test if not _is_noise(o)], [o for o in ref if not _is_noise(o)],
                            skip_compare)


IPyNbCell.compare_outputs = _compare_without_noise


# Each notebook's wall time, printed at the end of the run (`make test`): the sum of its cells' setup, run and
# teardown, so the first cell's share includes starting the kernel.
_notebook_seconds: dict[str, float] = {}


_failed: set[str] = set()


def pytest_runtest_logreport(report):
    path = report.location[0] if report.location else ""
    if path.endswith(".ipynb"):
        _notebook_seconds[path] = _notebook_seconds.get(path, 0.0) + report.duration
        if report.failed:
            _failed.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.write_sep("=", "notebook wall time")
    for path, seconds in sorted(_notebook_seconds.items()):
        minutes, rest = divmod(seconds, 60)
        terminalreporter.write_line(f"{path}: {seconds:.1f} s ({int(minutes)}:{rest:04.1f})")
    total = sum(_notebook_seconds.values())
    terminalreporter.write_line(f"all notebooks: {total:.1f} s ({int(total // 60)}:{total % 60:04.1f})")
    # `make test` sets SFT_COURSE_TIMES_FILE: the notebooks that passed refresh benchmarks/notebook_times.json,
    # which `sft-course check-setup` scales to a learner's machine.
    if os.environ.get(TIMES_ENV):
        passed = {path: s for path, s in _notebook_seconds.items() if path not in _failed}
        if passed:
            written = record_notebook_times(passed, os.environ[TIMES_ENV])
            terminalreporter.write_line(f"notebook times of {len(passed)} notebook(s) written to {written}")
