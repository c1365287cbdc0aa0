"""Data versions: the DVC hash of an image folder, and DVC tracking of new data versions.

The hash is computed with DVC's own hashing (dvc_data), so it is exactly the `md5: ....dir`
that `dvc add` / `dvc.lock` record for the same folder, whether or not the folder lives in a
DVC repository. MLflow runs record it as the digest of their dataset input.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeops.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataVersion:
    path: str
    md5: str  # DVC's directory hash, e.g. "0c26...7e85.dir"
    nfiles: int
    size: int

    @property
    def short(self) -> str:
        return self.md5.removesuffix(".dir")[:12]


def dvc_hash(data_dir: Path | str) -> DataVersion:
    """DVC's md5 of a directory, computed without touching any cache (dry run)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    path = Path(data_dir).resolve()
    if not path.is_dir():
        raise DataError("data folder does not exist", where=str(path))
    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        _, meta, obj = build(HashFileDB(fs, tmp), str(path), fs, "md5", dry_run=True)
    return DataVersion(path=str(path), md5=obj.hash_info.value, nfiles=meta.nfiles or 0, size=meta.size or 0)


def find_dvc_root(start: Path) -> Path | None:
    for parent in [start.resolve(), *start.resolve().parents]:
        if (parent / ".dvc").is_dir():
            return parent
    return None


def dvc(args: list[str], cwd: Path) -> str:
    """Run the DVC CLI (the same tool a user runs) and return its output; DataError on failure."""
    import shutil
    import sys

    exe = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"dvc {' '.join(args)} failed: {last[0]}", where=str(cwd))
    return proc.stdout


def track_new_version(data_dir: Path, message: str) -> DataVersion:
    """`dvc add` + `dvc push` a folder that is not a stage output; returns its new version.

    Used when labelled feedback is merged into a data set: the folder changes and DVC records
    the new hash in `<folder>.dvc`, which a user commits with git.
    """
    root = find_dvc_root(data_dir)
    if root is None:
        raise DataError("not inside a DVC repository (run `dvc init`)", where=str(data_dir))
    rel = str(Path(data_dir).resolve().relative_to(root))
    dvc(["add", "-q", rel], cwd=root)
    remotes = dvc(["remote", "list"], cwd=root).strip()
    if remotes:
        dvc(["push", "-q", f"{rel}.dvc"], cwd=root)
    else:
        log.warning("no DVC remote configured: %s recorded in %s.dvc only", rel, rel)
    return dvc_hash(data_dir)
