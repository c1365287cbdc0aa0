"""Progress of long stages for a person at a terminal, without coupling the steps to a console.

Steps report through the standard `logging` module, on the `edgeops.progress` logger
(`report("train", "epoch 3/20")`): components stay pure (they log; they draw nothing), flows
need no console, and on a Prefect server the same lines reach the flow run's log in the UI.
The CLI shows them with `ProgressDisplay`: one live line per running stage (a spinner, the
stage, its latest sub-step, elapsed time) and, when a stage finishes, one permanent line with
its duration. Prefect's own task-run records say when a task ends, so every task is a stage
even where no step reports sub-steps.

Output that is not a terminal gets no live line (a file keeps only the report the commands
print); `--verbose` users see the records in the log stream instead.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

PROGRESS_LOGGER = "edgeops.progress"
PREFECT_TASK_LOGGER = "prefect.task_runs"


def report(stage: str, message: str, *, done: int | None = None, total: int | None = None) -> None:
    """Say what a stage is doing now ("epoch 3/20", "variant tflite-int8", "window 14:00")."""
    counter = f" {done}/{total}" if done is not None and total is not None else ""
    logging.getLogger(PROGRESS_LOGGER).info(
        "%s: %s%s", stage, message, counter,
        extra={"edgeops_stage": stage, "edgeops_step": message + counter,
               "edgeops_last": done is not None and total is not None and done >= total},
    )


class ProgressDisplay(logging.Handler):
    """A logging handler that draws the running stages on a terminal (a no-op elsewhere).

    Use as a context manager around a command's work."""

    def __init__(self, console: Console, refresh_per_second: float = 4.0) -> None:
        super().__init__(level=logging.INFO)
        self.console = console
        self.enabled = console.is_terminal
        self._running: dict[str, tuple[float, str]] = {}  # stage -> (started, latest step)
        self._live = Live(console=console, refresh_per_second=refresh_per_second, transient=True,
                          get_renderable=self._render)
        self._loggers = [logging.getLogger(PROGRESS_LOGGER), logging.getLogger(PREFECT_TASK_LOGGER)]
        self._levels: list[int] = []

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            for logger in self._loggers:
                self._levels.append(logger.level)
                if logger.getEffectiveLevel() > logging.INFO:
                    logger.setLevel(logging.INFO)
                logger.addHandler(self)
            self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.enabled:
            return
        self._live.stop()
        for logger, level in zip(self._loggers, self._levels, strict=True):
            logger.removeHandler(self)
            logger.setLevel(level)

    # --- logging.Handler ---------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == PROGRESS_LOGGER:
                stage = str(getattr(record, "edgeops_stage", "") or "working")
                if getattr(record, "edgeops_last", False):  # the last of a counted sequence
                    self._running.pop(stage, None)
                    return
                started = self._running.get(stage, (time.monotonic(), ""))[0]
                self._running[stage] = (started, str(getattr(record, "edgeops_step", record.getMessage())))
            else:
                self._task_record(record)
        except Exception:  # a display must never break the work it shows
            self.handleError(record)

    def _task_record(self, record: logging.LogRecord) -> None:
        name = str(getattr(record, "task_run_name", "") or "")
        if not name:
            return
        message = record.getMessage()
        if message.startswith("Finished in state") or message.startswith("Crash"):
            started, _ = self._running.pop(name, (None, ""))
            self._running.pop(name.rsplit("-", 1)[0], None)  # sub-steps reported as "train" for "train-5e1"
            state = message.removeprefix("Finished in state ").rstrip("()").split("(")[0] or "finished"
            took = f" in {time.monotonic() - started:.1f} s" if started is not None else ""
            mark = "[green]done[/]" if state.startswith("Completed") else f"[yellow]{state.lower()}[/]"
            self._live.console.print(f"  {mark} {name}{took}", highlight=False)
        else:
            self._running.setdefault(name, (time.monotonic(), message[:80]))

    def _render(self) -> Any:
        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for stage, (started, step) in list(self._running.items())[-6:]:
            table.add_row(Spinner("dots"), Text(stage, style="bold"), Text(step, overflow="ellipsis"),
                          Text(f"{now - started:.0f} s", style="dim"))
        return table
