from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeops.errors import ConfigError
from edgeops.params import PipelineParams, load_params


def test_missing_file_means_embedded_defaults(tmp_path: Path) -> None:
    assert load_params(tmp_path / "nope.yaml") == PipelineParams()


def test_repository_params_yaml_is_valid() -> None:
    params = load_params(Path(__file__).parents[2] / "params.yaml")
    assert params.prepare.image_size >= 8


def test_typo_fails_loudly_with_the_key(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epoch"):
        load_params(f)


def test_out_of_range_value_names_key(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text("prepare:\n  test_fraction: 0.9\n")
    with pytest.raises(ConfigError, match=r"prepare\.test_fraction"):
        load_params(f)


def test_params_are_frozen() -> None:
    p = PipelineParams()
    with pytest.raises(ValidationError):
        p.train.epochs = 1  # type: ignore[misc]
