"""Schedules fire on a real `prefect server` + process worker, with no hand: the scheduler (not a
test) creates the runs, the worker completes them, and their logs reach the API the UI reads.

This is the test that would have caught SQLAlchemy 2.1 breaking Prefect 3.8's scheduler: every
other server test triggers deployments by hand.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scale_stack import REPO, PrefectStack

from edgeops.cli.ops import deploy, prefect_cli, scheduler_error, verify_schedules
from edgeops.services import log_tail

PROBE_YAML = """\
name: edgeops-schedule-probe
prefect-version: 3.8.8
build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $EDGEOPS_REPO }}}}"
deployments:
  - name: probe
    entrypoint: tests/integration/schedule_probe.py:schedule_probe
    parameters:
      marker_dir: "{marker_dir}"
    schedules:
      - interval: 10
    concurrency_limit:
      limit: 1
      collision_strategy: ENQUEUE
    work_pool:
      name: edgeops-process
      work_queue_name: default
"""


@pytest.mark.slow
def test_scheduled_deployments_run_without_a_hand(scheduled_prefect_stack: PrefectStack, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    stack = scheduled_prefect_stack
    # The project's own deployments: the scheduler plans monitor, controller and retrain runs.
    deploy(stack.env, REPO)
    upcoming = verify_schedules(stack.api_url, stack.server.log, timeout=90)
    assert {"monitor", "rollout-controller", "retrain"} <= set(upcoming), upcoming
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        for dep in client.read_deployments():  # keep the worker for the probe: pause the real ones
            client.pause_deployment(dep.id)
            limit = dep.global_concurrency_limit
            assert limit is not None and limit.limit == 1, f"{dep.name} has no concurrency limit"

    # A probe deployment on a 10 s interval: its runs come from the scheduler alone.
    markers = tmp_path / "markers"
    probe_yaml = tmp_path / "probe.yaml"
    probe_yaml.write_text(PROBE_YAML.format(marker_dir=markers))
    prefect_cli(["deploy", "--all", "--prefect-file", str(probe_yaml)], {**stack.env, "EDGEOPS_REPO": str(REPO)},
                REPO)

    deadline = time.monotonic() + 240
    completed = None
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        probe = client.read_deployment_by_name("schedule-probe/probe")
        while completed is None and time.monotonic() < deadline:
            done = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[probe.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))), limit=1)
            completed = done[0] if done else None
            if completed is None:
                time.sleep(3)
        assert completed is not None, (
            f"no scheduled probe run completed in 240 s; server: {log_tail(stack.server.log, 8)}; "
            f"worker: {log_tail(stack.worker.log, 8)}")
        assert completed.auto_scheduled, "the run was not created by the scheduler"
        messages = ""
        log_deadline = time.monotonic() + 60  # logs are shipped in batches, after the state
        while "reached the log" not in messages and time.monotonic() < log_deadline:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[completed.id])))
            messages = " | ".join(entry.message for entry in logs)
            time.sleep(0 if "reached the log" in messages else 2)
    assert "schedule probe ran" in messages, messages  # INFO logs reach the API (the UI's logs tab)
    assert "schedule probe print reached the log" in messages, messages  # log_prints too
    assert (markers / f"{completed.id}.done").exists()
    assert str(completed.id) in stack.worker.log.read_text()  # the worker says what it ran
    assert scheduler_error(stack.server.log) is None
