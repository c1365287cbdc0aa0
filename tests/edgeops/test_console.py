"""Tables keep every name whole: folded on a narrow terminal, one line when piped."""

from __future__ import annotations

import io

from rich.table import Table

from edgeops.console import PIPE_WIDTH, WholeNamesConsole, make_console

NAMES = ["mcu-line-a-production-eu-west", "tflite-f32", "tflite-f16", "windows-desktops-beta-ring"]


def _table(*row: str) -> Table:
    table = Table("cohort", "target", "variant", "bundle")
    table.add_row(*(row or NAMES))
    return table


def test_terminal_of_100_columns_folds_instead_of_cutting() -> None:
    out = io.StringIO()
    WholeNamesConsole(file=out, width=100, force_terminal=False).print(_table(*(n * 2 for n in NAMES)))
    text = out.getvalue()
    assert "…" not in text
    body = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    columns = ["".join(cells[i].strip() for cells in body) for i in range(len(NAMES))]
    assert columns == [n * 2 for n in NAMES]  # each name whole, folded over lines


def test_narrow_terminal_switches_to_a_vertical_layout() -> None:
    out = io.StringIO()
    WholeNamesConsole(file=out, width=50, force_terminal=False).print(_table())
    text = out.getvalue()
    assert "…" not in text and "│" not in text
    lines = text.splitlines()
    assert lines[0] == "-[ 1 ]-"
    assert [line.split(" : ", 1)[1] for line in lines[1:]] == NAMES
    assert [line.split(" : ", 1)[0].strip() for line in lines[1:]] == ["cohort", "target", "variant", "bundle"]


def test_narrow_terminal_keeps_a_table_that_fits() -> None:
    out = io.StringIO()
    table = Table("a", "b", "c")
    table.add_row("1", "2", "3")
    WholeNamesConsole(file=out, width=50, force_terminal=False).print(table)
    assert "│" in out.getvalue()


def test_piped_output_keeps_every_column_on_one_line() -> None:
    console = make_console()  # pytest captures stdout: not a terminal
    assert console.width == PIPE_WIDTH
    with console.capture() as cap:
        console.print(_table())
    assert all(name in cap.get() for name in NAMES)


def test_piped_section_rules_stay_terminal_wide() -> None:
    console = make_console()
    with console.capture() as cap:
        console.rule("release")
    line = cap.get().rstrip("\n")
    assert "release" in line and len(line) <= 100
