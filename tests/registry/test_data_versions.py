import subprocess
import sys
from pathlib import Path

import pytest

from edgeops.errors import DataError
from registry.data_versions import dvc_hash


def _folder(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.txt").write_text("1\n")
    (root / "b" / "y.txt").write_text("2\n")
    return root


def test_hash_equals_what_dvc_add_records(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    data = _folder(repo / "data")
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "add", "-q", "data"], cwd=repo, check=True)
    recorded = next(line.split(":", 1)[1].strip() for line in (repo / "data.dvc").read_text().splitlines()
                    if "md5:" in line)
    v = dvc_hash(data)
    assert v.md5 == recorded
    assert v.nfiles == 2


def test_hash_changes_when_a_file_changes(tmp_path: Path) -> None:
    data = _folder(tmp_path / "d")
    before = dvc_hash(data).md5
    (data / "a" / "z.txt").write_text("new\n")
    assert dvc_hash(data).md5 != before


def test_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        dvc_hash(tmp_path / "missing")
