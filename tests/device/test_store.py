"""The object store: same semantics for a local directory and S3 (moto's server on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.store import LocalStore, MissingKeyError, ObjectStore, S3Store, open_store
from edgeops.errors import ConflictError, StoreError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "local":
        return str(tmp_path / "store"), None
    env = request.getfixturevalue("s3_env")
    return env["EDGEOPS_STORE_URL"], env["AWS_ENDPOINT_URL"]


@pytest.fixture
def store(store_url: tuple[str, str | None]) -> ObjectStore:
    return open_store(*store_url)


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://bucket/some/prefix", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3Store) and s3.prefix == "some/prefix"
    with pytest.raises(StoreError, match="unsupported"):
        open_store("ftp://x/y")


def test_put_get_list_delete(store: ObjectStore) -> None:
    etag = store.put("a/b/c.json", b'{"x": 1}')
    data, etag2 = store.get_with_etag("a/b/c.json")
    assert data == b'{"x": 1}' and etag == etag2
    store.put("a/d.bin", b"\x00" * 10)
    store.put("z.txt", b"z")
    assert store.list("a/") == ["a/b/c.json", "a/d.bin"]
    assert store.list() == ["a/b/c.json", "a/d.bin", "z.txt"]
    assert store.exists("z.txt") and not store.exists("nope")
    store.delete("z.txt")
    assert not store.exists("z.txt")
    with pytest.raises(MissingKeyError, match="no object 'z.txt'"):
        store.get("z.txt")


def test_bad_keys_are_refused(store: ObjectStore) -> None:
    for key in ["../escape", "/abs", "a//b", ".locks/x"]:
        with pytest.raises(StoreError, match="key"):
            store.put(key, b"x")


def test_compare_and_swap(store: ObjectStore) -> None:
    first = store.put_if_match("m.json", b"v1", None)
    with pytest.raises(ConflictError):
        store.put_if_match("m.json", b"v1-again", None)  # must not exist
    second = store.put_if_match("m.json", b"v2", first)
    with pytest.raises(ConflictError, match="stale"):
        store.put_if_match("m.json", b"v3", first)  # stale etag
    assert store.get_with_etag("m.json") == (b"v2", second)
    with pytest.raises(ConflictError):
        store.put_if_match("missing.json", b"x", second)  # expected to exist


def test_upload_file_multipart(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import device.store as store_mod

    monkeypatch.setattr(store_mod, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)  # S3's minimum part size
    payload = os.urandom(11 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    etag = store.upload_file("bundles/x/model.tflite", path)
    assert store.get("bundles/x/model.tflite") == payload
    if isinstance(store, S3Store):
        assert etag.endswith("-3")  # an S3 multipart ETag names its part count


def test_unreachable_s3_names_the_url() -> None:
    store = S3Store(
        "bucket", "p", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=0.5
    )
    with pytest.raises(StoreError, match=r"unreachable.*s3://bucket/p at http://127.0.0.1:9"):
        store.get("k")


_WORKER = """
import json, sys
from device.store import open_store
from edgeops.errors import ConflictError
url, endpoint, n, name = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), sys.argv[4]
store = open_store(url, endpoint)
conflicts = 0
for _ in range(n):
    while True:
        data, etag = store.get_with_etag("counter.json")
        doc = json.loads(data)
        doc["count"] += 1
        doc["writers"].append(name)
        try:
            store.put_if_match("counter.json", json.dumps(doc).encode(), etag)
            break
        except ConflictError:
            conflicts += 1
print(conflicts)
"""


def test_concurrent_cas_from_processes_loses_no_update(store_url: tuple[str, str | None]) -> None:
    url, endpoint = store_url
    store = open_store(url, endpoint)
    store.put_if_match("counter.json", json.dumps({"count": 0, "writers": []}).encode(), None)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, endpoint or "", "15", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    conflicts = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    doc = json.loads(store.get("counter.json"))
    assert doc["count"] == 60 and len(doc["writers"]) == 60
    print("conflicts per writer", conflicts)


def test_iter_chunks_streams_and_a_missing_key_fails_at_once(store: ObjectStore) -> None:
    data = os.urandom(200_000)
    store.put("big/blob.bin", data)
    chunks = list(store.iter_chunks("big/blob.bin", 65_536))
    assert b"".join(chunks) == data and max(len(c) for c in chunks) <= 65_536 and len(chunks) >= 4
    with pytest.raises(MissingKeyError):
        store.iter_chunks("big/nothing.bin")  # raised by the call, before any iteration


class _BreakingBody:
    """A response body whose connection drops after `after` bytes (botocore's error)."""

    def __init__(self, body, after: int) -> None:
        self.body, self.after = body, after

    def iter_chunks(self, chunk_size: int = 1024):
        from botocore.exceptions import ResponseStreamingError

        sent = 0
        for chunk in self.body.iter_chunks(chunk_size):
            if sent + len(chunk) > self.after:
                yield chunk[: self.after - sent]
                raise ResponseStreamingError(error="connection reset by peer")
            sent += len(chunk)
            yield chunk


class _BreakingClient:
    """The real boto3 client; the next `breaks` GETs lose their connection mid-body."""

    def __init__(self, real, breaks: int, after: int = 30_000) -> None:
        self.real, self.breaks, self.after, self.ranges = real, breaks, after, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_object(self, **kw):
        self.ranges.append(kw.get("Range"))
        resp = self.real.get_object(**kw)
        if self.breaks > 0:
            self.breaks -= 1
            resp["Body"] = _BreakingBody(resp["Body"], self.after)
        return resp


def test_s3_body_broken_midway_is_resumed_not_fatal(s3_env) -> None:
    import boto3

    real = open_store(s3_env["EDGEOPS_STORE_URL"], s3_env["AWS_ENDPOINT_URL"])
    data = os.urandom(100_000)
    real.put("models/m.bin", data)
    bucket, prefix = s3_env["EDGEOPS_STORE_URL"][5:].split("/", 1)
    client = _BreakingClient(boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"]), breaks=2)
    s3 = S3Store(bucket, prefix, client=client)
    assert s3.get("models/m.bin") == data  # two breaks, resumed twice from where each stopped
    assert client.ranges == [None, "bytes=30000-", "bytes=60000-"]
    client.breaks = 1
    assert b"".join(s3.iter_chunks("models/m.bin", 8192)) == data
    client.breaks, client.after = 99, 1000  # a link that never recovers: one readable error
    with pytest.raises(StoreError, match="broke off after .* 4 tries"):
        s3.get("models/m.bin")
