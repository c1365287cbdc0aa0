"""The progress display: live lines from progress records, one line per finished task."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from edgeops.progress import PREFECT_TASK_LOGGER, ProgressDisplay, report


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


def test_sub_steps_are_shown_and_finished_tasks_leave_one_line() -> None:
    console, out = _terminal()
    with ProgressDisplay(console) as display:
        report("train", "epoch", done=3, total=20)
        assert display._running["train"][1] == "epoch 3/20"
        logging.getLogger(PREFECT_TASK_LOGGER).info(
            "Finished in state Completed()", extra={"task_run_name": "train"})
        assert "train" not in display._running
    assert "done train in" in out.getvalue()
    assert display not in logging.getLogger(PREFECT_TASK_LOGGER).handlers  # detached on exit


def test_a_failed_task_is_marked() -> None:
    console, out = _terminal()
    with ProgressDisplay(console):
        logging.getLogger(PREFECT_TASK_LOGGER).info(
            "Finished in state Failed('boom')", extra={"task_run_name": "convert-1"})
    assert "failed convert-1" in out.getvalue()


def test_nothing_is_drawn_into_a_file() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    with ProgressDisplay(console) as display:
        report("train", "epoch 1")
        assert display not in logging.getLogger("edgeops.progress").handlers
    assert out.getvalue() == ""


def test_a_counted_sequence_ends_its_line_and_a_task_ends_its_sub_steps() -> None:
    console, _ = _terminal()
    with ProgressDisplay(console) as display:
        report("convert", "tflite-f32", done=1, total=2)
        assert display._running["convert"][1] == "tflite-f32 1/2"
        report("convert", "tflite-int8", done=2, total=2)
        assert "convert" not in display._running  # the last of the sequence
        report("train", "epoch", done=1, total=8)
        logging.getLogger(PREFECT_TASK_LOGGER).info("Finished in state Completed()",
                                                    extra={"task_run_name": "train-5e1"})
        assert "train" not in display._running and "train-5e1" not in display._running
