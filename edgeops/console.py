"""The CLI's consoles: tables never cut a name.

Rich sizes output to the terminal, and to 80 columns when stdout is a pipe or a file, cutting
cells with an ellipsis ("mcu-li…"). Here a pipe or file gets wide lines (every column whole,
for grep and scripts). On a terminal of 100 columns or more table cells wrap instead of being
cut; below 100 columns a table that does not fit switches to a vertical layout (one block per
row, one `column: value` line per cell), as `psql`'s expanded display does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 1000  # wide enough that no table of ours wraps when written to a file
RULE_WIDTH = 100  # section rules in a file or pipe
VERTICAL_BELOW = 100  # terminal columns under which a table that does not fit goes vertical


class WholeNamesConsole(Console):
    """A Console whose tables fold long cells onto a second line rather than cut them."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: A003 - rich's own name
        shown: list[Any] = []
        for obj in objects:
            if isinstance(obj, Table):
                if self.width < VERTICAL_BELOW and len(obj.columns) > 2 and not _fits(self, obj):
                    shown.append(vertical(obj))
                    continue
                for column in obj.columns:
                    column.overflow = "fold"
                    column.no_wrap = False
            shown.append(obj)
        super().print(*shown, **kwargs)

    def rule(self, title: Any = "", *, characters: str = "─", style: Any = "rule.line",
             align: Any = "center") -> None:
        """A rule as wide as a terminal would draw it, also in a file (not PIPE_WIDTH wide)."""
        rule = Rule(title=title, characters=characters, style=style, align=align)
        super().print(rule, width=min(self.width, RULE_WIDTH))


def _fits(console: Console, table: Table) -> bool:
    return table.__rich_measure__(console, console.options).maximum <= console.width


def vertical(table: Table) -> Text:
    """One block per row: a rule with the row number, then `column: value` per cell (values
    fold onto following lines instead of being cut)."""
    headers = [str(column.header) for column in table.columns]
    pad = max(len(h) for h in headers)
    text = Text()
    if table.title:
        text.append(f"{table.title}\n", style="bold")
    cells = [list(column.cells) for column in table.columns]
    for i in range(table.row_count):
        text.append(f"-[ {i + 1} ]-\n", style="dim")
        for header, column in zip(headers, cells, strict=True):
            value = column[i] if i < len(column) else ""
            text.append(f"{header.ljust(pad)} : ", style="bold")
            text.append(value if isinstance(value, Text) else Text.from_markup(str(value)))
            text.append("\n")
    text.rstrip()
    return text


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return WholeNamesConsole(stderr=stderr, width=width, soft_wrap=False)


@contextmanager
def native_stderr_silenced(keep_if_verbose: bool = False) -> Iterator[None]:
    """Send what native (C/C++) code writes straight to file descriptor 2 to /dev/null for a moment.

    For libraries that log around Python's logging: TensorFlow's import (absl's CUDA probe) and
    TFLite Micro's allocation reports. Python exceptions still propagate and are printed after
    the descriptor is restored. With `keep_if_verbose`, `edgeops --verbose` keeps everything."""
    if keep_if_verbose and os.environ.get("EDGEOPS_VERBOSE") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
