from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.identity import DeviceIdentity, open_frame, verify_frame
from device.sampling import DailyBudget
from device.store import LocalStore, open_store
from device.telemetry import TelemetryRecord, read_batch, records_to_table, write_batch
from device.uploader import Uploader, batch_key
from edgeops.errors import ConflictError, StoreError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FlakyStore:
    """A real store behind a fault injector: `fail` puts raise; `lose_ack` puts land but raise."""

    def __init__(self, inner, fail: int = 0, lose_ack: int = 0) -> None:
        self.inner, self.fail, self.lose_ack = inner, fail, lose_ack
        self.puts = 0

    def put_if_match(self, key, data, etag):
        self.puts += 1
        if self.fail:
            self.fail -= 1
            raise StoreError("injected: store unreachable")
        etag_out = self.inner.put_if_match(key, data, etag)
        if self.lose_ack:
            self.lose_ack -= 1
            raise StoreError("injected: connection reset after write")
        return etag_out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _batch(start: int, n: int = 5) -> bytes:
    recs = [
        TelemetryRecord("d1", "c", "m", "1", "tflite-f32", "b", start + i, T0, "swap")
        for i in range(n)
    ]
    return write_batch(records_to_table(recs))


def _rows_in_store(store, prefix="telemetry/raw/c/d1/") -> list[int]:
    seqs: list[int] = []
    for key in store.list(prefix):
        seqs += read_batch(store.get(key)).column("seq").to_pylist()
    return seqs


class WriteOnlyStore:
    """A real store seen through write-only credentials: conditional puts, nothing read back."""

    def __init__(self, inner, lose_ack: int = 0) -> None:
        self.inner, self.lose_ack, self.puts = inner, lose_ack, 0

    def put_if_match(self, key, data, etag):
        self.puts += 1
        out = self.inner.put_if_match(key, data, etag)
        if self.lose_ack:
            self.lose_ack -= 1
            raise StoreError("injected: connection reset after write")
        return out

    def __getattr__(self, name):
        def denied(*_a, **_k):
            raise StoreError(f"AccessDenied: {name} needs read permission")

        return denied


def test_spool_then_upload_signed(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    ident = DeviceIdentity("d1", "c", Ed25519PrivateKey.generate())
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=Clock(), identity=ident)
    key = up.spool(_batch(0))
    body = (tmp_path / "spool" / "000000000000.parquet").read_bytes()
    assert key == batch_key("c", "d1", (0, 4), body)
    assert key.startswith("telemetry/raw/c/d1/000000000000-000000000004-") and key.endswith(".tlm")
    up.spool(_batch(5))
    assert up.pending_records() == 10
    rep = up.flush()
    assert rep.uploaded_batches == 2 and rep.uploaded_records == 10 and rep.pending_batches == 0
    assert sorted(_rows_in_store(store)) == list(range(10))
    st = verify_frame(open_frame(store.get(key)), ident.public_key)
    assert (st.device_id, st.cohort, st.rows, st.seq_first, st.seq_last) == ("d1", "c", 5, 0, 4)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_write_only_credentials_and_a_lost_ack(tmp_path: Path, backend: str, request):
    if backend == "s3":
        env = request.getfixturevalue("s3_env")
        inner = open_store(env["EDGEOPS_STORE_URL"], endpoint_url=env["AWS_ENDPOINT_URL"])
    else:
        inner = LocalStore(tmp_path / "store")
    store = WriteOnlyStore(inner, lose_ack=1)
    ident = DeviceIdentity("d1", "c", Ed25519PrivateKey.generate())
    clock = Clock()
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=clock, identity=ident)
    up.spool(_batch(0))
    up.spool(_batch(5))
    first = up.flush()
    assert first.error and "connection reset" in first.error and first.pending_batches == 2
    clock.now = up.next_attempt
    again = up.flush()  # the landed batch conflicts: counted as done without any read
    assert again.error is None and again.uploaded_batches == 2 and not up.pending()
    assert store.puts == 3
    assert sorted(_rows_in_store(inner)) == list(range(10))


def test_a_damaged_spool_file_is_set_aside(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=Clock())
    up.spool(_batch(0))
    (tmp_path / "spool" / "000000000007.parquet").write_bytes(b"PAR1 torn")
    up.spool(_batch(5))
    rep = up.flush()
    assert rep.uploaded_batches == 2 and rep.pending_batches == 0 and up.set_aside == 1
    assert (tmp_path / "spool" / "bad" / "000000000007.parquet.reason.txt").exists()
    assert sorted(_rows_in_store(store)) == list(range(10))


def test_failures_back_off_and_lose_nothing(tmp_path: Path):
    clock = Clock()
    store = FlakyStore(LocalStore(tmp_path / "store"), fail=3, lose_ack=1)
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=clock, backoff_base_s=60, seed=1)
    for i in range(4):
        up.spool(_batch(i * 5))
    rep = up.flush()
    assert rep.error and "injected" in rep.error and rep.pending_batches == 4
    delays = []
    for _ in range(2):
        # within the backoff window nothing is attempted
        puts = store.puts
        assert up.flush().uploaded_batches == 0 and store.puts == puts
        delays.append((up.next_attempt - clock.now).total_seconds())
        clock.now = up.next_attempt
        up.flush()
    assert delays[1] > delays[0] * 0.9  # grows (with jitter)
    for _ in range(10):
        if not up.pending():
            break
        clock.now += timedelta(hours=2)
        up.flush()
    assert not up.pending()
    seqs = _rows_in_store(store.inner)
    assert sorted(seqs) == list(range(20))  # all there, no duplicate despite the lost ack


def test_budget_defers_to_next_day(tmp_path: Path):
    clock = Clock()
    store = LocalStore(tmp_path / "store")
    data = _batch(0)
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=clock)
    up.spool(data)
    up.spool(_batch(5))
    budget = DailyBudget(len(data) + 10)
    rep = up.flush(budget)
    assert rep.uploaded_batches == 1 and rep.deferred_by_budget and rep.pending_batches == 1
    assert up.flush(budget, online=False).uploaded_batches == 0
    clock.now += timedelta(days=1)
    assert up.flush(budget).uploaded_batches == 1


def test_reset_counter_never_overwrites(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=Clock())
    up.spool(_batch(0))
    up.flush()
    (tmp_path / "spool" / "next_seq").write_text("garb")  # torn counter
    up.spool(_batch(100))
    assert up.flush().error is None  # other bytes, other key: nothing overwritten
    assert sorted(_rows_in_store(store)) == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]
    taken = store.list("telemetry/raw/c/d1/")[0]
    with pytest.raises(ConflictError):
        store.put_if_match(taken, b"other", None)


def test_s3_round_trip_and_unreachable(tmp_path: Path, s3_env):
    store = open_store(s3_env["EDGEOPS_STORE_URL"], endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    up = Uploader(store, "c", "d1", tmp_path / "spool", clock=Clock())
    up.spool(_batch(0))
    assert up.flush().uploaded_records == 5
    up.flush()  # nothing left; idempotent
    assert _rows_in_store(store) == [0, 1, 2, 3, 4]

    dead = open_store(
        "s3://nobucket/x", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=0.5
    )
    up2 = Uploader(dead, "c", "d2", tmp_path / "spool2", clock=Clock())
    up2.spool(_batch(0))
    rep = up2.flush()
    assert rep.error and "unreachable" in rep.error and rep.pending_batches == 1
