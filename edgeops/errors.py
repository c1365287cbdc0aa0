"""One root error for the project; the CLI turns any of them into one line and an exit code.

Stdlib only: every package, the device agent included, may import this module.
"""

from __future__ import annotations


class EdgeOpsError(Exception):
    """Root of every error edgeops raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{message} ({where})" if where else message)


class ConfigError(EdgeOpsError):
    """Settings, params.yaml or devices.yaml are wrong."""

    exit_code = 2


class DataError(EdgeOpsError):
    """The input data cannot be used: missing folder, too few classes, undecodable file."""

    exit_code = 3


class ValidationFailed(DataError):
    """A Great Expectations suite failed and the caller chose to fail on it."""


class TrainingError(EdgeOpsError):
    exit_code = 4


class ConversionError(EdgeOpsError):
    """A target could not be converted or its output failed verification."""

    exit_code = 5

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"conversion to {target} failed: {reason}")


class BlessingError(EdgeOpsError):
    """Something unblessed was about to be registered as releasable or published."""

    exit_code = 6


class RegistryError(EdgeOpsError):
    exit_code = 7


class StoreError(EdgeOpsError):
    """The object store is unreachable or answered with an error."""

    exit_code = 8


class ConflictError(StoreError):
    """A conditional write lost a race (stale ETag / revision): re-read and retry."""

    exit_code = 9


class IntegrityError(EdgeOpsError):
    """A signature, hash, key id, revision or expiry check failed: the artifact is refused."""

    exit_code = 10


class RolloutError(EdgeOpsError):
    """A rollout command is not allowed in the current state (unknown cohort, already running...)."""

    exit_code = 11


class TelemetryError(EdgeOpsError):
    """A telemetry batch is malformed; it is quarantined, never dropped."""

    exit_code = 12


class MonitoringError(EdgeOpsError):
    exit_code = 13
