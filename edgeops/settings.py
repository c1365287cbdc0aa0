"""Where state lives. The one module that resolves it; it builds clients, it does not hold them.

Embedded defaults sit under `EDGEOPS_HOME` (default `.edgeops/` in the working directory):

    .edgeops/mlflow.db       MLflow tracking and registry (SQLite)
    .edgeops/mlartifacts/    MLflow artifacts
    .edgeops/store/          the object store (bundles, manifests, telemetry, rollouts)
    .edgeops/dvc-remote/     the DVC remote
    .edgeops/keys/           Ed25519 signing keys (generated on first use)

The ecosystem's own variables override parts: MLFLOW_TRACKING_URI, PREFECT_API_URL,
AWS_ENDPOINT_URL, and EDGEOPS_STORE_URL (a path or s3://bucket/prefix). EDGEOPS_MLFLOW_UI_URL
says where people open MLflow (for links from Prefect; default: the tracking server, or
`mlflow ui`'s http://127.0.0.1:5000 for the embedded SQLite file).
Nothing here runs at import time.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from device.store import ObjectStore


def _first_existing(*paths: Path) -> Path:
    """The working directory's file, else the one beside the installed project, else the first."""
    return next((p for p in paths if p.exists()), paths[0])


@dataclass(frozen=True)
class Settings:
    home: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    store_url: str
    aws_endpoint_url: str | None
    prefect_api_url: str | None
    dvc_remote: str
    keys_dir: Path
    params_path: Path
    devices_path: Path
    experiment_name: str
    mlflow_ui_url: str | None = None  # where people open MLflow, for links from Prefect

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        cwd = (cwd or Path.cwd()).resolve()
        home = Path(env.get("EDGEOPS_HOME") or cwd / ".edgeops").expanduser().resolve()
        return cls(
            home=home,
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            mlflow_artifact_root=env.get("EDGEOPS_MLFLOW_ARTIFACTS")
            or (home / "mlartifacts").as_uri(),
            store_url=env.get("EDGEOPS_STORE_URL") or str(home / "store"),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            prefect_api_url=env.get("PREFECT_API_URL") or None,
            dvc_remote=env.get("EDGEOPS_DVC_REMOTE") or str(home / "dvc-remote"),
            keys_dir=Path(env.get("EDGEOPS_KEYS_DIR") or home / "keys"),
            params_path=Path(env.get("EDGEOPS_PARAMS") or cwd / "params.yaml"),
            devices_path=Path(env.get("EDGEOPS_DEVICES") or _first_existing(
                cwd / "devices.yaml", Path(__file__).resolve().parents[1] / "devices.yaml")),
            experiment_name=env.get("EDGEOPS_EXPERIMENT") or "edgeops",
            mlflow_ui_url=env.get("EDGEOPS_MLFLOW_UI_URL") or None,
        )

    def as_json_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    # --- clients: built on request, never cached at module level -------------------------
    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    def mlflow_client(self) -> MlflowClient:
        from mlflow import MlflowClient

        if self.mlflow_tracking_uri.startswith("sqlite:"):
            self.ensure_home()
        return MlflowClient(tracking_uri=self.mlflow_tracking_uri, registry_uri=self.mlflow_tracking_uri)

    def store(self) -> ObjectStore:
        from device.store import open_store

        if "://" not in self.store_url or self.store_url.startswith("file://"):
            self.ensure_home()
        return open_store(self.store_url, endpoint_url=self.aws_endpoint_url)

    def params(self):  # -> edgeops.params.PipelineParams
        from edgeops.params import load_params

        return load_params(self.params_path)

    def devices(self):  # -> components.profiles.DeviceCatalog
        from components.profiles import load_devices

        if not self.devices_path.exists():
            raise ConfigError("devices.yaml not found; set EDGEOPS_DEVICES", where=str(self.devices_path))
        return load_devices(self.devices_path)
