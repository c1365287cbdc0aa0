"""A flow with no work, deployed on a short interval by test_prefect_schedules.py: it proves the
scheduler plans runs and the worker completes them, without waiting 5 minutes for a real one."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger


@flow(name="schedule-probe", log_prints=True)
def schedule_probe(marker_dir: str) -> str:
    """Leave a file per run (the test counts them) and one log line (it must reach the UI's API)."""
    from prefect.runtime import flow_run

    path = Path(marker_dir) / f"{flow_run.id}.done"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ok")
    get_run_logger().info("schedule probe ran: %s", path.name)
    print("schedule probe print reached the log")
    return path.name
