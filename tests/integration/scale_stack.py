"""What the scale-path fixtures hand to tests (a module of its own: test files cannot import
conftest.py by name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeops import services
from edgeops.cli.ops import repo_root

REPO = repo_root(Path(__file__).parent)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    bucket: str
    artifacts_destination: str
    backend_store_uri: str


@dataclass(frozen=True)
class PrefectStack:
    api_url: str
    home: Path
    env: dict[str, str]  # what a `prefect` command or flow run needs to talk to this stack
    worker: services.Service
    server: services.Service
