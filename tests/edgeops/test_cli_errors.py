"""The installed `edgeops` console script on a user's mistakes: one line, a documented exit code,
no traceback (typer raises its own copy of click's errors, which the CLI must catch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EDGEOPS = str(Path(sys.executable).with_name("edgeops"))


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEOPS_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    return subprocess.run([EDGEOPS, *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize(("args", "code", "says"), [
    (["relase", "status"], 2, "No such command 'relase'"),
    (["release", "status", "--jsn"], 2, "No such option: --jsn"),
    (["pipeline", "run"], 2, "Missing option '--data'"),
    (["fleet", "simulate", "--devices", "abc"], 2, "Invalid value for '--devices'"),
    (["pipeline", "run", "--data", "/nonexistent-folder"], 3, "data folder does not exist"),
    (["pipeline", "run", "--data", "afile.txt"], 3, "not a file"),
    (["pipeline", "run", "--data", ".", "--params", "/nonexistent.yaml"], 2, "params file not found"),
])
def test_bad_usage_is_one_line(args: list[str], code: int, says: str, tmp_path: Path) -> None:
    (tmp_path / "afile.txt").write_text("x")
    (tmp_path / "cls").mkdir()
    proc = _run(args, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert says in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [[], ["release"]])
def test_a_bare_group_prints_its_help(args: list[str], tmp_path: Path) -> None:
    proc = _run(args, tmp_path)
    assert proc.returncode == 2
    assert "Usage:" in proc.stdout and "Traceback" not in proc.stderr + proc.stdout
