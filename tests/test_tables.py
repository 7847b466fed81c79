"""Text tables: aligned columns, missing keys as "-", heading lines."""

from sft_course.tables import format_table, print_table


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
