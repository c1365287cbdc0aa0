"""What every command group shares: the consoles, the settings, and the filter that keeps
Prefect from printing a traceback for the project's own (expected) errors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgeops.console import make_console, native_stderr_silenced
from edgeops.errors import EdgeOpsError

if TYPE_CHECKING:
    from edgeops.settings import Settings

console = make_console()
err_console = make_console(stderr=True)


class _NoTracebackForExpectedErrors(logging.Filter):
    """Prefect logs a flow's exception with its traceback; for the project's own errors the
    user gets the one line the CLI prints instead (unexpected errors keep their traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EdgeOpsError):
            record.exc_info = None
            record.exc_text = None
            record.msg = str(record.getMessage()).split("\n", 1)[0]
            record.args = ()
        return True


def quiet_expected_tracebacks() -> None:
    """Attach the filter to every handler configured so far (call after importing flows)."""
    quiet = _NoTracebackForExpectedErrors()
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, _NoTracebackForExpectedErrors) for f in handler.filters):
                handler.addFilter(quiet)


def settings() -> Settings:
    from edgeops.settings import Settings

    return Settings.from_env()


def preload_tensorflow() -> None:
    """Import TensorFlow now, quietly (a command that trains or converts calls this first)."""
    with native_stderr_silenced(keep_if_verbose=True):
        import tensorflow  # noqa: F401  # absl's CUDA probe ignores TF_CPP_MIN_LOG_LEVEL (tensorflow#100442)
