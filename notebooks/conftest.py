"""nbval settings for the course notebooks.

Only cells marked `# NBVAL_CHECK_OUTPUT` have their output compared (we run with `--nbval-lax`). In those
cells, stderr (warnings, tqdm bars) and widget displays vary from run to run and machine to machine, so they
are left out of the comparison; stdout and rich outputs are still compared exactly.
"""

from nbval.plugin import IPyNbCell

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
