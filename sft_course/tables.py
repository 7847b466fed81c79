"""Aligned text tables of metrics, the way the notebooks print their comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def format_table(columns: Mapping[str, Mapping], rows: Sequence, cell_width: int = 13) -> str:
    """One column per entry of `columns` (`{name: {key: value}}`), one line per row of `rows`.

    A row is `(label, key, format)`: the value of `key` in each column, formatted with `format` (a
    `format()` spec such as ".3f"), or "-" where a column lacks the key. A row that is a plain string is a
    heading line. Labels are left-aligned, cells right-aligned in `cell_width` characters.
    """
    labels = [row if isinstance(row, str) else row[0] for row in rows]
    width = max(map(len, labels), default=0) + 2
    lines = [" " * width + "".join(f"{name:>{cell_width}}" for name in columns)]
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
            continue
        label, key, fmt = row
        cells = [format(column[key], fmt) if key in column else "-" for column in columns.values()]
        lines.append(f"{label:<{width}}" + "".join(f"{cell:>{cell_width}}" for cell in cells))
    return "\n".join(lines)


def print_table(columns: Mapping[str, Mapping], rows: Sequence, cell_width: int = 13) -> None:
    """Print `format_table(columns, rows, cell_width)`."""
    print(format_table(columns, rows, cell_width))
