"""The display helpers: text tables align their columns, and the shared figures draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from sft_course.display import (  # noqa: E402
    format_table,
    plot_accuracy_bars,
    plot_loss_curves,
    plot_token_probabilities,
    print_table,
)


def test_columns_align_and_missing_keys_show_a_dash(capsys):
    columns = {"base": {"acc": 0.05}, "SFT": {"acc": 0.912345, "steps": 150}}
    rows = ["EXACT MATCH", ("accuracy", "acc", ".3f"), ("optimizer steps", "steps", ",d")]
    lines = format_table(columns, rows, cell_width=8).splitlines()
    assert lines == [
        " " * 17 + "    base" + "     SFT",
        "EXACT MATCH",
        "accuracy         " + "   0.050" + "   0.912",
        "optimizer steps  " + "       -" + "     150",
    ]
    print_table(columns, rows, cell_width=8)
    assert capsys.readouterr().out.splitlines() == lines


def test_accuracy_bars_have_one_bar_per_label_and_write_the_values():
    ax = plot_accuracy_bars(["base", "SFT"], [0.05, 0.91], title="t", colors=["tab:gray", "tab:green"])
    assert [round(b.get_height(), 2) for b in ax.patches] == [0.05, 0.91]
    assert [t.get_text() for t in ax.texts] == ["0.05", "0.91"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["base", "SFT"]
    plt.close("all")


def test_loss_curves_and_token_probabilities_plot_their_points():
    ax = plot_loss_curves([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], [{"step": 2, "eval_loss": 1.5}])
    assert [list(line.get_ydata()) for line in ax.lines] == [[2.0, 1.0], [1.5]]
    ax = plot_token_probabilities(["a", "b"], [0.7, 0.2])
    assert sorted(round(b.get_width(), 2) for b in ax.patches) == [0.2, 0.7]
    plt.close("all")
