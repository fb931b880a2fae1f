"""The manifest: one reader and writer, a round trip that keeps the JSON's shape, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrubproxy import ProxyCache, ProxyFormatError
from scrubproxy.manifest import (
    MANIFEST_KIND,
    FileRecord,
    Manifest,
    ManifestError,
    ProxyRecord,
    SourceVideo,
    load_manifest,
    read_manifest,
    source_fingerprint,
    write_manifest,
)
from scrubproxy.settings import FORMAT_VERSION


@pytest.fixture
def published(cache: ProxyCache, cfr_source: Path) -> Path:
    """The manifest path of a freshly published proxy."""
    return cache.ensure(cfr_source).with_suffix(".json")


def test_round_trip_keeps_every_field_and_the_json_shape(tmp_path: Path, cfr_source: Path):
    manifest = Manifest(
        source=source_fingerprint(cfr_source),
        settings={"height": 360, "quality": 5, "container": "auto", "codec": "mjpeg", "stream": None},
        proxy=ProxyRecord("a-12345678.avi", 1000, 123, "avi", 320, 240, 60),
        frame_map=FileRecord("a-12345678.frames", 96, 456),
        build_id="ab" * 16,
        partial=False,
        warnings=("one",),
        decoder="cpu",
        encode_seconds=0.5,
        source_video=SourceVideo("h264", 320, 240, 90, False, "30/1"),
        scrubproxy_version="9.9",
    )
    path = tmp_path / "m.json"
    write_manifest(path, manifest, tmp_path / ".m.tmp.json")
    assert load_manifest(path) == manifest == read_manifest(path)
    data = json.loads(path.read_text())
    assert data["kind"] == MANIFEST_KIND and data["format_version"] == FORMAT_VERSION
    assert data["proxy"] == {"file": "a-12345678.avi", "size": 1000, "mtime_ns": 123, "container": "avi", "width": 320, "height": 240, "frames": 60}
    assert data["source"]["path"] == str(cfr_source) and data["source_video"]["rotation"] == 90 and data["warnings"] == ["one"]
    assert not (tmp_path / ".m.tmp.json").exists()


def test_published_manifest_reads_back(published: Path, cfr_source: Path):
    m = load_manifest(published)
    assert m.source == source_fingerprint(cfr_source.resolve()) and m.source.matches(cfr_source.resolve())
    assert m.files_match(published.parent) and m.proxy.frames == 60 and m.source_video.codec == "h264"


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


REFUSALS = {
    "wrong kind": (lambda d: d.update(kind="something-else"), "not a scrubproxy manifest"),
    "newer version": (lambda d: d.update(format_version=FORMAT_VERSION + 1), "format version"),
    "older version": (lambda d: d.update(format_version=FORMAT_VERSION - 1), "format version"),
    "missing field": (lambda d: d.pop("frame_map"), "lacks 'frame_map'"),
    "missing nested field": (lambda d: d["proxy"].pop("mtime_ns"), "lacks 'mtime_ns'"),
    "wrong type": (lambda d: d["proxy"].update(frames="60"), "'frames' should be int, got str"),
    "not an object": (lambda d: None, "not a scrubproxy manifest"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_say_why_and_the_cache_rebuilds(cache: ProxyCache, cfr_source: Path, published: Path, case: str):
    change, reason = REFUSALS[case]
    if case == "not an object":
        published.write_text("[1, 2]")
    else:
        _rewrite(published, change)
    with pytest.raises(ManifestError) as info:
        load_manifest(published)
    assert isinstance(info.value, ProxyFormatError) and info.value.path == published and reason in info.value.reason
    assert read_manifest(published) is None
    assert cache.lookup(cfr_source) is None  # refused counts as absent
    assert [e.state for e in cache.entries()] == ["orphan"]
    proxy = cache.ensure(cfr_source)  # rebuilt
    assert load_manifest(proxy.with_suffix(".json")).format_version == FORMAT_VERSION


@pytest.mark.parametrize("text", ["", '{"kind": "scrubproxy-manifest", "format_ver', "\xff\xfe"])
def test_truncated_or_malformed_json_is_refused(tmp_path: Path, text: str):
    path = tmp_path / "m.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(path)
    assert read_manifest(path) is None


def test_an_absent_manifest_is_refused_with_its_reason(tmp_path: Path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "none.json")
    assert read_manifest(tmp_path / "none.json") is None


def test_reading_a_manifest_leaves_its_last_use_alone(published: Path):
    import os

    os.utime(published, (1_000_000, published.stat().st_mtime))
    load_manifest(published)
    read_manifest(published)
    assert published.stat().st_atime == 1_000_000
