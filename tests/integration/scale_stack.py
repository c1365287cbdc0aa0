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


def two_cohort_catalog(out: Path, cohorts: tuple[str, ...] = ("pi-fleet-eu", "mcu-line-a")) -> Path:
    """The repository's devices.yaml cut to these cohorts and their profiles: the scale-path tests
    check the servers' wiring, not the device classes (tests/flows/test_release_loop.py does), so
    they convert and publish for two cohorts instead of nine."""
    import yaml

    catalog = yaml.safe_load((REPO / "devices.yaml").read_text())
    kept = {name: catalog["cohorts"][name] for name in cohorts}
    profiles = {kept[name]["profile"] for name in kept}
    catalog["cohorts"] = kept
    catalog["profiles"] = {k: v for k, v in catalog["profiles"].items() if k in profiles}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return out
