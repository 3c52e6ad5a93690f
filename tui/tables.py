"""Filling a DataTable once a second without losing the learner's place: rows are updated in
place when the same rows are still there, and the cursor stays on the same row (by key) when
they are not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable


def fill(table: DataTable, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """``rows``: (key, cells) in the order to show."""
    keys = [key for key, _ in rows]
    current = [row.key.value for row in table.ordered_rows]
    if keys == current:
        columns = [c.key for c in table.ordered_columns]
        for key, cells in rows:
            for column, value in zip(columns, cells, strict=False):
                if table.get_cell(key, column) != value:  # an unchanged cell costs no redraw
                    table.update_cell(key, column, value)
        return
    selected = selected_key(table)
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if selected in keys:
        table.move_cursor(row=keys.index(selected), animate=False)


def selected_key(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # the cursor is past the end while rows change
        return None
