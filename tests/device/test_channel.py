"""The device's TUF client over the store: what it downloads is capped at the signed length
while streaming, and its refusals are readable."""

from __future__ import annotations

import pytest

from device.channel import ChannelClient, target_key
from edgeops.errors import IntegrityError, StoreError


def test_oversized_target_is_cut_off_at_the_signed_length(release, tiny_models, tmp_path):
    ref = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", ref)
    path = f"bundles/{ref.bundle_id}/labels.json"
    session = ChannelClient(release.store, tmp_path / "dev" / "tuf", release.root).session()
    info = session.updater.get_targetinfo(path)
    assert session.download(path) == release.store.get(target_key(path, info.hashes["sha256"]))
    # the bucket now serves 5 MiB where the signed metadata says a few dozen bytes
    release.store.put(target_key(path, info.hashes["sha256"]), b"x" * (5 << 20))
    session = ChannelClient(release.store, tmp_path / "dev" / "tuf", release.root).session()
    before = session.fetcher.bytes_fetched
    with pytest.raises(IntegrityError, match="labels.json.*exceeding the maximum allowed length"):
        session.download(path)
    assert session.fetcher.bytes_fetched - before <= 64 * 1024  # one chunk, not the whole file


def test_channel_names_what_the_cohort_runs_and_refuses_unknown(release, tiny_models, tmp_path):
    ref = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", ref, salt="s1")
    session = ChannelClient(release.store, tmp_path / "d" / "tuf", release.root).session()
    channel = session.channel("pi")
    assert channel.stable == ref and channel.candidate is None and channel.salt == "s1"
    with pytest.raises(IntegrityError, match="names nothing for cohort 'mcu'"):
        session.channel("mcu")  # delegated, but nothing published for it yet
    with pytest.raises(IntegrityError, match="lists no target"):
        session.download("bundles/" + "0" * 64 + "/metadata.json")
    with pytest.raises(IntegrityError, match="no trusted root"):
        ChannelClient(release.store, tmp_path / "fresh" / "tuf", None).session()
    with pytest.raises(StoreError):
        ChannelClient(type(release.store)(tmp_path / "empty"), tmp_path / "e" / "tuf", release.root).session()
