from pathlib import Path

from edgeops.settings import Settings


def test_defaults_live_under_edgeops_home_in_cwd(tmp_path: Path) -> None:
    s = Settings.from_env(env={}, cwd=tmp_path)
    assert s.home == tmp_path / ".edgeops"
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / '.edgeops' / 'mlflow.db'}"
    assert s.store_url == str(tmp_path / ".edgeops" / "store")
    assert s.keys_dir == tmp_path / ".edgeops" / "keys"
    assert s.prefect_api_url is None
    assert not s.home.exists(), "resolving settings must not create anything"


def test_ecosystem_variables_override(tmp_path: Path) -> None:
    env = {
        "EDGEOPS_HOME": str(tmp_path / "h"),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "EDGEOPS_STORE_URL": "s3://bucket/prefix",
    }
    s = Settings.from_env(env=env, cwd=tmp_path)
    assert s.home == tmp_path / "h"
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert s.prefect_api_url == "http://127.0.0.1:4200/api"
    assert s.aws_endpoint_url == "http://127.0.0.1:9000"
    assert s.store_url == "s3://bucket/prefix"
    d = s.as_json_dict()
    assert {"home", "mlflow_tracking_uri", "store_url", "prefect_api_url"} <= set(d)


def test_store_is_built_on_request(tmp_path: Path) -> None:
    s = Settings.from_env(env={"EDGEOPS_HOME": str(tmp_path / "h")}, cwd=tmp_path)
    store = s.store()
    store.put("a/b.txt", b"x")
    assert store.get("a/b.txt") == b"x"
