"""The reference module's four functions keep their signatures and meaning,
now on top of the trustworthy cache."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import av
import pytest

from scrubproxy import compat
from scrubproxy.errors import InvalidSessionError, SourceUnreadableError
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import read_index

#: (name, parameters with defaults) as the reference ``cht/scrub/proxy.py`` declares them.
REFERENCE_SIGNATURES = {
    "proxy_path_for": [("segment_path", inspect.Parameter.empty), ("session_id", None)],
    "generate_proxy": [("segment_path", inspect.Parameter.empty), ("output_path", inspect.Parameter.empty), ("height", 360)],
    "ensure_proxy": [("segment_path", inspect.Parameter.empty), ("session_id", None), ("height", 360)],
    "cleanup_proxies": [("session_id", None)],
}


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    """The compat functions use the default cache: point it into this test's tmp folder."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SCRUBPROXY_CACHE_DIR", str(root))
    return root


def indices(proxy: Path) -> list[int]:
    with ProxyReader(proxy) as r:
        return [read_index(r[k]) for k in range(len(r))]


@pytest.mark.parametrize("name", sorted(REFERENCE_SIGNATURES))
def test_reference_functions_keep_their_signatures(name):
    params = inspect.signature(getattr(compat, name)).parameters.values()
    assert [(p.name, p.default) for p in params] == REFERENCE_SIGNATURES[name]


def test_proxy_path_for_names_an_mkv_in_the_session_folder_without_encoding(cache_root, cfr_source):
    path = compat.proxy_path_for(cfr_source, "sess")
    assert path.parent == cache_root / "sess" and path.suffix == ".mkv" and path.name.startswith("cfr-")
    assert compat.proxy_path_for(cfr_source).parent == cache_root / "default"
    assert not path.exists()


def test_generate_proxy_writes_an_all_intra_silent_proxy_at_the_given_path(tmp_path, make_media):
    src = make_media("with-audio.mp4", frames=30, gop=30, bframes=2, audio=True)
    out = tmp_path / "out" / "nested" / "seg_proxy.avi"
    assert compat.generate_proxy(src, out, height=120) == out
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0 and c.streams.video[0].codec_context.name == "mjpeg"
        assert c.streams.video[0].codec_context.height == 120
        assert all(p.is_keyframe for p in c.demux(video=0) if p.size)
    assert indices(out) == list(range(30))
    assert sorted(p.name for p in out.parent.iterdir()) == ["seg_proxy.avi", "seg_proxy.frames"]


def test_generate_proxy_overwrites_and_leaves_nothing_on_failure(tmp_path, cfr_source):
    out = tmp_path / "p.avi"
    out.write_bytes(b"old junk")
    compat.generate_proxy(cfr_source, out)
    assert indices(out) == list(range(60))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    bad_out = tmp_path / "bad" / "p.avi"
    with pytest.raises(SourceUnreadableError):
        compat.generate_proxy(text, bad_out)
    assert not bad_out.parent.exists() or list(bad_out.parent.iterdir()) == []


def test_ensure_proxy_builds_once_and_rebuilds_on_change(cache_root, cfr_source):
    path = compat.ensure_proxy(cfr_source, "s")
    assert path == compat.proxy_path_for(cfr_source, "s")
    build = json.loads(path.with_suffix(".json").read_text())["build_id"]
    assert compat.ensure_proxy(cfr_source, "s") == path
    assert json.loads(path.with_suffix(".json").read_text())["build_id"] == build
    smaller = compat.ensure_proxy(cfr_source, "s", height=120)  # the reference kept the 360 one
    with ProxyReader(smaller) as r:
        assert r.metadata.height == 120
    assert indices(smaller) == list(range(60))


def test_ensure_proxy_does_not_trust_a_half_written_file(cache_root, cfr_source):
    path = compat.proxy_path_for(cfr_source, "s")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF" + b"\0" * 100)  # what a crash of the reference left behind
    assert compat.ensure_proxy(cfr_source, "s") == path
    assert indices(path) == list(range(60))


def test_cleanup_proxies_removes_one_session_or_all(cache_root, session_sources):
    for session in ("a", "b"):
        for s in session_sources:
            compat.ensure_proxy(s, session)
    compat.cleanup_proxies("a")
    assert not (cache_root / "a").exists() and len(list((cache_root / "b").glob("*.mkv"))) == 3
    compat.cleanup_proxies()
    assert not (cache_root / "b").exists()
    assert all(s.exists() for s in session_sources)


@pytest.mark.parametrize("session", ["..", "../canary", ".", "/"])
def test_cleanup_proxies_refuses_a_session_that_escapes_and_deletes_nothing(cache_root, tmp_path, cfr_source, session):
    compat.ensure_proxy(cfr_source, "s")
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.avi").write_bytes(b"precious")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidSessionError):
        compat.cleanup_proxies(session)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (canary / "keep.avi").read_bytes() == b"precious"
