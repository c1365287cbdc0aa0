"""The CLI's consoles: tables never cut a name.

Rich sizes output to the terminal, and to 80 columns when stdout is a pipe or a file, cutting
cells with an ellipsis ("mcu-li…"). Here a pipe or file gets wide lines (every column whole,
for grep and scripts), and on a terminal table cells wrap instead of being cut.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 1000  # wide enough that no table of ours wraps when written to a file


class WholeNamesConsole(Console):
    """A Console whose tables fold long cells onto a second line rather than cut them."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: A003 - rich's own name
        for obj in objects:
            if isinstance(obj, Table):
                for column in obj.columns:
                    column.overflow = "fold"
                    column.no_wrap = False
        super().print(*objects, **kwargs)


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return WholeNamesConsole(stderr=stderr, width=width, soft_wrap=False)
