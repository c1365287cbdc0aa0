"""Drift references of encrypted cohorts are sealed with the cohort key, never stored in clear."""

from __future__ import annotations

import pandas as pd
import pytest

from device.encryption import is_sealed, kek_id
from device.store import open_store
from edgeops.errors import MonitoringError
from monitoring.reference import load_reference, reference_key, save_reference

KEK = bytes(range(32))


def test_sealed_reference_round_trip_and_refusal(tmp_path) -> None:
    store = open_store(str(tmp_path / "s"))
    df = pd.DataFrame({"f_mean": [0.25, 0.5], "label": [3, 7], "probs": [[0.1, 0.9], [0.8, 0.2]]})
    save_reference(store, "b-enc", df, encryption_key=KEK)
    raw = store.get(reference_key("b-enc"))
    assert is_sealed(raw) and b"f_mean" not in raw and b"PAR1" not in raw
    back = load_reference(store, "b-enc", {kek_id(KEK): KEK})
    assert back["label"].tolist() == [3, 7] and back["f_mean"].tolist() == [0.25, 0.5]
    with pytest.raises(MonitoringError, match="not provisioned here"):
        load_reference(store, "b-enc")
    save_reference(store, "b-clear", df)  # a cohort without encryption: plain Parquet
    assert store.get(reference_key("b-clear"))[:4] == b"PAR1"
    assert len(load_reference(store, "b-clear")) == 2
