"""The release flow's prepare step: splits.csv beside the prepared data, a ledger that pins splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from edgeops.params import PrepareParams
from flows.stages import prepare, split_ledger
from tests.components.conftest import write_folder

PARAMS = PrepareParams(image_size=10, min_per_class=5)


def test_a_second_data_version_moves_no_image_and_the_ledger_keeps_every_image(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", {"a": 20, "b": 20, "c": 20})
    ledger = split_ledger(tmp_path / "home", data)
    assert ledger.parent == tmp_path / "home" / "splits" and ledger.name.startswith("data-")
    first = prepare(data, PARAMS, tmp_path / "v1", ledger)
    written = pd.read_csv(tmp_path / "v1" / "splits.csv", dtype=str)
    assert list(written.columns) == ["path", "sha256", "group", "split"] and len(written) == 60
    extra = write_folder(tmp_path / "extra", {"a": 20, "b": 20, "c": 20}, seed=11)
    for label in ("a", "b", "c"):
        for i, f in enumerate(sorted((extra / label).iterdir())):
            shutil.copy(f, data / label / f"more_{i}.png")
    (data / "a" / "img_000.png").unlink()
    second = prepare(data, PARAMS, tmp_path / "v2", ledger)
    before = dict(zip(first.manifest["sha256"], first.manifest["split"], strict=True))
    after = dict(zip(second.manifest["sha256"], second.manifest["split"], strict=True))
    assert all(after[h] == s for h, s in before.items() if h in after)
    kept = pd.read_csv(ledger, dtype=str)
    assert set(kept["sha256"]) == set(before) | set(after)  # the removed image is remembered
