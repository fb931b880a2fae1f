"""The proxy cache: layout, hits, staleness, sessions, cleanup and its refusals.

Every test that deletes aims only at folders it made in its own tmp folder;
the refusal tests for ``/`` and the home folder run behind ``no_deletion``,
a guard that fails the test before any file could be removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import av
import pytest

from scrubproxy import ProxyCache, ProxySettings
from scrubproxy.errors import BadInputError, CacheRootRefusedError, InvalidSessionError, SourceUnreadableError
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import RecordingSpec, make_recording, read_index

PROXY_NAME = re.compile(r"(?P<stem>.+)-(?P<hash>[0-9a-f]{8})\.(?P<ext>avi|mkv)")


def copy_source(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def manifest_of(proxy: Path) -> dict:
    return json.loads(proxy.with_suffix(".json").read_text())


def indices(proxy: Path) -> list[int]:
    with ProxyReader(proxy) as r:
        return [read_index(r[k]) for k in range(len(r))]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: a snapshot to compare."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def no_deletion(monkeypatch):
    """Fail the test at the first attempt to delete anything (a safety net, not a stand-in)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"cleanup tried to delete {args!r} before refusing")

    for name in ("unlink", "remove", "rmdir", "removedirs"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(shutil, "rmtree", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    monkeypatch.setattr(Path, "rmdir", refuse)


@pytest.fixture
def source(tmp_path, cfr_source) -> Path:
    """A private copy of the 60-frame source that a test may rewrite."""
    return copy_source(cfr_source, tmp_path / "rec" / "segment-001.mp4")


# -- layout and hits ------------------------------------------------------------------


def test_layout_follows_the_design(cache: ProxyCache, source: Path, vfr_source: Path):
    proxy = cache.ensure(source, session="s1")
    assert proxy.parent == cache.root / "s1"
    m = PROXY_NAME.fullmatch(proxy.name)
    assert m and m["stem"] == "segment-001" and m["ext"] == "mkv"
    assert proxy.with_suffix(".frames").is_file() and proxy.with_suffix(".json").is_file()
    assert (cache.root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert list((cache.root / ".locks" / "s1").glob(f"{proxy.stem}*"))
    vfr = cache.ensure(vfr_source)  # default session
    assert vfr.parent == cache.root / "default" and vfr.suffix == ".mkv"
    assert sorted(p.name for p in (cache.root / "s1").iterdir()) == sorted(proxy.with_suffix(s).name for s in (".mkv", ".frames", ".json"))
    assert manifest_of(proxy)["proxy"]["frames"] == 60


def test_path_for_and_lookup_agree_with_ensure(cache: ProxyCache, source: Path):
    predicted = cache.path_for(source, "s1")
    assert not predicted.exists()
    assert cache.lookup(source, "s1") is None
    proxy = cache.ensure(source, "s1")
    assert proxy == predicted == cache.path_for(source, "s1") == cache.lookup(source, "s1")


def test_hit_returns_the_same_path_and_never_decodes(cache: ProxyCache, source: Path, monkeypatch):
    proxy = cache.ensure(source)
    before = (proxy.stat().st_mtime_ns, manifest_of(proxy)["build_id"])
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(str(a[0])) or real_open(*a, **k))
    for _ in range(3):
        assert cache.ensure(source) == proxy
    assert opened == [], "a cache hit opened media files"
    assert (proxy.stat().st_mtime_ns, manifest_of(proxy)["build_id"]) == before


def test_hit_records_its_use(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    manifest = proxy.with_suffix(".json")
    os.utime(manifest, (1_000_000, manifest.stat().st_mtime))
    assert cache.ensure(source) == proxy
    [entry] = cache.entries()
    assert entry.last_used is not None and entry.last_used > 1_000_000


# -- staleness ----------------------------------------------------------------------------


def test_source_rewritten_with_new_content_is_rebuilt(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    assert len(indices(proxy)) == 60
    make_recording(RecordingSpec(path=source, frames=25, gop=25))
    assert cache.lookup(source) is None
    assert [e.state for e in cache.entries()] == ["stale"]
    rebuilt = cache.ensure(source)
    assert rebuilt == proxy
    assert indices(rebuilt) == list(range(25))
    assert [e.state for e in cache.entries()] == ["valid"]


def test_source_changed_in_place_with_same_size_and_mtime_is_rebuilt(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    build = manifest_of(proxy)["build_id"]
    st = source.stat()
    with open(source, "r+b") as f:  # a recorder rewriting the middle of the file in place
        f.seek(st.st_size // 2)
        data = f.read(64)
        f.seek(st.st_size // 2)
        f.write(bytes(b ^ 0xFF for b in data))
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.stat().st_size == st.st_size and source.stat().st_mtime_ns == st.st_mtime_ns
    assert cache.lookup(source) is None
    assert [e.state for e in cache.entries()] == ["stale"]
    assert manifest_of(cache.ensure(source))["build_id"] != build


def test_touched_source_is_rebuilt(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    build = manifest_of(proxy)["build_id"]
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.lookup(source) is None
    assert manifest_of(cache.ensure(source))["build_id"] != build


def test_changed_settings_rebuild_and_the_old_settings_no_longer_hit(cache: ProxyCache, source: Path):
    small = ProxySettings(height=120)
    proxy = cache.ensure(source)
    build = manifest_of(proxy)["build_id"]
    assert cache.lookup(source, settings=small) is None
    rebuilt = cache.ensure(source, settings=small)
    assert manifest_of(rebuilt)["build_id"] != build
    with ProxyReader(rebuilt) as r:
        assert r.metadata.height == 120
    assert cache.lookup(source, settings=small) == rebuilt
    assert cache.lookup(source) is None


def test_hwaccel_choice_does_not_make_a_proxy_stale(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source, settings=ProxySettings(hwaccel="none"))
    assert cache.lookup(source, settings=ProxySettings(hwaccel="auto")) == proxy


def test_an_avi_proxy_of_format_1_is_rebuilt_once_as_matroska(cache: ProxyCache, source: Path):
    mkv = cache.ensure(source)
    avi = mkv.with_suffix(".avi")  # dress it up as what format 1 published for a constant-rate source
    mkv.rename(avi)
    manifest = manifest_of(mkv)
    manifest["format_version"], manifest["proxy"]["file"] = 1, avi.name
    manifest["settings"]["container"] = "auto"
    mkv.with_suffix(".json").write_text(json.dumps(manifest))
    assert cache.lookup(source) is None
    assert cache.ensure(source) == mkv and not avi.exists()
    assert indices(mkv) == list(range(60))
    stamp = mkv.stat().st_mtime_ns
    assert cache.ensure(source) == mkv and mkv.stat().st_mtime_ns == stamp
    assert len(cache.entries()) == 1


def test_damaged_frame_map_or_proxy_is_not_trusted(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    with open(proxy, "ab") as f:
        f.write(b"\0" * 10)
    assert cache.lookup(source) is None
    assert [e.state for e in cache.entries()] == ["orphan"]
    rebuilt = cache.ensure(source)
    assert indices(rebuilt) == list(range(60))
    proxy.with_suffix(".frames").unlink()
    assert cache.lookup(source) is None


# -- naming -----------------------------------------------------------------------------


def test_same_file_name_in_two_folders_gets_two_proxies(cache: ProxyCache, tmp_path: Path, cfr_source: Path):
    a = copy_source(cfr_source, tmp_path / "cam-a" / "seg.mp4")
    b = tmp_path / "cam-b" / "seg.mp4"
    make_recording(RecordingSpec(path=b, frames=15, gop=15))
    pa, pb = cache.ensure(a, "s"), cache.ensure(b, "s")
    assert pa != pb and pa.parent == pb.parent
    assert len(indices(pa)) == 60 and indices(pb) == list(range(15))
    assert cache.ensure(a, "s") == pa and len(indices(pa)) == 60
    assert {e.source for e in cache.entries("s")} == {a.resolve(), b.resolve()}


def test_a_proxy_name_taken_by_another_source_is_never_shared(cache: ProxyCache, tmp_path: Path, cfr_source: Path):
    """Two sources whose 8-hex names collide: the second gets a longer name."""
    a = copy_source(cfr_source, tmp_path / "x" / "seg.mp4")
    b = tmp_path / "y" / "seg.mp4"
    make_recording(RecordingSpec(path=b, frames=15, gop=15))
    pa = cache.ensure(a)
    # Forge the collision: pretend the 8-hex name b would use belongs to source a.
    pb_name = cache.path_for(b)
    for suffix in (".mkv", ".frames"):
        shutil.copyfile(pa.with_suffix(suffix), pb_name.with_suffix(suffix))
    manifest = manifest_of(pa)
    for part in ("proxy", "frame_map"):
        manifest[part]["file"] = pb_name.with_suffix(Path(manifest[part]["file"]).suffix).name
        manifest[part]["mtime_ns"] = pb_name.with_suffix(Path(manifest[part]["file"]).suffix).stat().st_mtime_ns
    pb_name.with_suffix(".json").write_text(json.dumps(manifest))
    pb = cache.ensure(b)
    assert pb not in (pa, pb_name)
    assert re.fullmatch(r"seg-[0-9a-f]{16}\.mkv", pb.name)
    assert indices(pb) == list(range(15))
    assert cache.ensure(b) == pb == cache.path_for(b)
    assert len(indices(pa)) == 60


# -- sessions and traversal ---------------------------------------------------------------------

BAD_SESSIONS = ["..", ".", "a/b", "", "x" * 129, "séance", "../canary", "/tmp", "a\\b", "a b", "a\nb", ".locks", "CACHEDIR.TAG"]


@pytest.mark.parametrize("session", BAD_SESSIONS)
def test_bad_session_ids_are_refused_everywhere(cache: ProxyCache, source: Path, session: str, tmp_path: Path):
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("x")
    for call in (
        lambda: cache.ensure(source, session),
        lambda: cache.path_for(source, session),
        lambda: cache.lookup(source, session),
        lambda: cache.entries(session),
        lambda: cache.cleanup(session),
        lambda: cache.session_dir(session),
    ):
        with pytest.raises(InvalidSessionError):
            call()
    assert (canary / "keep.txt").read_text() == "x"
    assert not cache.root.exists() or not any(p.suffix in (".avi", ".mkv") for p in cache.root.rglob("*"))


def test_longest_session_id_works(cache: ProxyCache, source: Path):
    session = "A1._-" * 25 + "abc"
    assert len(session) == 128
    assert cache.ensure(source, session).parent.name == session


def test_cleanup_does_not_follow_a_session_symlink_out_of_the_cache(cache: ProxyCache, source: Path, tmp_path: Path):
    cache.ensure(source, "real")
    canary = tmp_path / "canary"
    canary.mkdir()
    bait = {"keep-0123abcd.avi": b"a", "keep-0123abcd.json": b"{}", "keep-0123abcd.frames": b"f"}
    for name, data in bait.items():
        (canary / name).write_bytes(data)
    (cache.root / "evil").symlink_to(canary, target_is_directory=True)
    for call in (lambda: cache.cleanup("evil"), lambda: cache.cleanup(), lambda: cache.cleanup(stale_only=True)):
        with pytest.raises(CacheRootRefusedError):
            call()
    assert {p.name: p.read_bytes() for p in canary.iterdir()} == bait
    assert cache.lookup(source, "real") is not None


def test_cleanup_does_not_follow_a_file_symlink_out_of_the_cache(cache: ProxyCache, source: Path, tmp_path: Path):
    cache.ensure(source, "s")
    canary = tmp_path / "canary.avi"
    canary.write_bytes(b"precious")
    (cache.root / "s" / "bait-0123abcd.avi").symlink_to(canary)
    with pytest.raises(CacheRootRefusedError):
        cache.cleanup("s")
    with pytest.raises(CacheRootRefusedError):
        cache.cleanup()
    assert canary.read_bytes() == b"precious"


def test_a_source_named_like_a_path_stays_in_its_session(cache: ProxyCache, tmp_path: Path, cfr_source: Path):
    src = copy_source(cfr_source, tmp_path / "rec" / "..mp4")
    proxy = cache.ensure(src, "s")
    assert proxy.parent == cache.root / "s"
    assert proxy.resolve().parent == (cache.root / "s").resolve()


# -- cleanup ------------------------------------------------------------------------------


def test_cleanup_of_one_session_removes_only_that_session(cache: ProxyCache, session_sources: list[Path]):
    a = [cache.ensure(s, "a") for s in session_sources]
    b = [cache.ensure(s, "b") for s in session_sources]
    assert cache.cleanup("a") == 3
    assert not any(p.exists() for p in a) and not (cache.root / "a").exists()
    assert all(cache.lookup(s, "b") == p for s, p in zip(session_sources, b))
    assert {e.session for e in cache.entries()} == {"b"}


def test_cleanup_of_all_removes_every_proxy_and_nothing_else(cache: ProxyCache, session_sources: list[Path]):
    for session in ("a", "b", "default"):
        for s in session_sources:
            cache.ensure(s, session)  # explicit: session=None would reuse the proxies of "a"
    sources_before = {s: s.read_bytes() for s in session_sources}
    assert cache.cleanup() == 9
    assert cache.entries() == []
    left = {p.relative_to(cache.root).parts[0] for p in cache.root.rglob("*") if p.is_file()}
    assert left <= {"CACHEDIR.TAG", ".locks"}
    assert {s: s.read_bytes() for s in session_sources} == sources_before


def test_cleanup_stale_keeps_valid_proxies(cache: ProxyCache, tmp_path: Path, cfr_source: Path, session_sources):
    keep = cache.ensure(session_sources[0])
    gone = copy_source(cfr_source, tmp_path / "gone.mp4")
    stale_proxy = cache.ensure(gone)
    gone.unlink()
    assert {e.proxy_path: e.state for e in cache.entries()} == {keep: "valid", stale_proxy: "stale"}
    assert cache.cleanup(stale_only=True) == 1
    assert [e.proxy_path for e in cache.entries()] == [keep] and keep.exists()


def test_cleanup_refuses_the_filesystem_root(no_deletion):
    with pytest.raises(CacheRootRefusedError):
        ProxyCache("/").cleanup()
    with pytest.raises(CacheRootRefusedError):
        ProxyCache("/").cleanup("default", stale_only=True)


def test_cleanup_refuses_the_home_folder_and_its_parents(no_deletion):
    home = Path.home()
    for root in (home, home.parent):
        with pytest.raises(CacheRootRefusedError):
            ProxyCache(root).cleanup()
        with pytest.raises(CacheRootRefusedError):
            ProxyCache(root).cleanup("default")


def test_cleanup_refuses_a_folder_with_foreign_files(tmp_path: Path, source: Path):
    root = tmp_path / "photos"
    cache = ProxyCache(root)
    proxy = cache.ensure(source)
    (root / "holiday.jpg").write_bytes(b"canary")
    snapshot = tree(root)
    for call in (lambda: cache.cleanup(), lambda: cache.cleanup("default"), lambda: cache.cleanup(stale_only=True)):
        with pytest.raises(CacheRootRefusedError, match="holiday.jpg"):
            call()
    assert tree(root) == snapshot and proxy.exists()


def test_cleanup_refuses_a_session_folder_with_foreign_files(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source, "s")
    (cache.root / "s" / "notes.txt").write_text("canary")
    snapshot = tree(cache.root)
    with pytest.raises(CacheRootRefusedError):
        cache.cleanup("s")
    assert tree(cache.root) == snapshot and proxy.exists()


def test_cleanup_of_a_missing_cache_removes_nothing(tmp_path: Path):
    assert ProxyCache(tmp_path / "never-made").cleanup() == 0
    assert not (tmp_path / "never-made").exists()


# -- entries ------------------------------------------------------------------------------


def test_entries_report_valid_stale_and_orphan(cache: ProxyCache, tmp_path: Path, cfr_source: Path, session_sources):
    valid = cache.ensure(session_sources[0])
    changed = copy_source(cfr_source, tmp_path / "changed.mp4")
    stale = cache.ensure(changed)
    make_recording(RecordingSpec(path=changed, frames=5))
    orphan_src = copy_source(cfr_source, tmp_path / "orphan.mp4")
    orphan = cache.ensure(orphan_src)
    orphan.with_suffix(".json").unlink()  # a proxy whose commit record is missing
    by_path = {e.proxy_path: e for e in cache.entries()}
    assert {p: e.state for p, e in by_path.items()} == {valid: "valid", stale: "stale", orphan: "orphan"}
    v = by_path[valid]
    assert v.source == session_sources[0].resolve() and v.frames == 20 and not v.partial and v.session == "default"
    assert v.size == sum(p.stat().st_size for p in v.files) and set(v.files) == {valid.with_suffix(s) for s in (".mkv", ".frames", ".json")}
    assert by_path[orphan].source is None and by_path[orphan].frames is None
    assert cache.lookup(orphan_src) is None
    assert cache.entries("nobody") == []


def test_orphans_are_rebuilt_and_cleaned(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    proxy.with_suffix(".json").unlink()
    rebuilt = cache.ensure(source)
    assert rebuilt == proxy and [e.state for e in cache.entries()] == ["valid"]
    proxy.with_suffix(".json").unlink()
    assert cache.cleanup(stale_only=True) == 1
    assert not proxy.exists() and not proxy.with_suffix(".frames").exists()


# -- failed rebuilds ------------------------------------------------------------------------


def test_failed_rebuild_of_a_changed_source_keeps_the_old_files_and_never_serves_them(cache: ProxyCache, source: Path):
    cache.ensure(source)
    snapshot = tree(cache.root / "default")
    source.write_bytes(b"\0" * 4096)  # the recorder replaced it with garbage
    for force in (False, True):
        with pytest.raises(SourceUnreadableError):
            cache.ensure(source, force=force)
    assert tree(cache.root / "default") == snapshot
    assert cache.lookup(source) is None
    assert [e.state for e in cache.entries()] == ["stale"]


def test_failed_forced_rebuild_keeps_the_valid_proxy(cache: ProxyCache, source: Path):
    proxy = cache.ensure(source)
    snapshot = tree(cache.root / "default")
    with pytest.raises(BadInputError, match="stream 3"):
        cache.ensure(source, settings=ProxySettings(stream=3), force=True)
    assert tree(cache.root / "default") == snapshot
    assert cache.lookup(source) == proxy


def test_threads_ensuring_one_source_share_one_encode(cache: ProxyCache, source: Path):
    from concurrent.futures import ThreadPoolExecutor

    def ensure(_: int) -> tuple[Path, bool]:
        calls: list[tuple] = []
        return cache.ensure(source, progress=lambda *a: calls.append(a)), bool(calls)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ensure, range(4)))
    assert len({path for path, _ in results}) == 1
    assert sum(encoded for _, encoded in results) == 1
    assert indices(results[0][0]) == list(range(60))


def test_a_cache_root_that_is_a_file_lists_nothing_and_is_never_cleaned(tmp_path: Path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("canary")
    for root in (blocker, blocker / "cache"):
        cache = ProxyCache(root)
        assert cache.entries() == [] and cache.entries("s") == []
        assert cache.lookup(blocker) is None
    with pytest.raises(CacheRootRefusedError):
        ProxyCache(blocker).cleanup()
    assert blocker.read_text() == "canary"


# -- any-session reuse, session listing, many at once ----------------------------------


def test_session_sources_are_in_recording_order(cache: ProxyCache, tmp_path: Path, session_sources: list[Path]):
    a, b = tmp_path / "a", tmp_path / "b"
    made = [copy_source(session_sources[0], folder / name) for folder, name in ((a, "seg-10.mp4"), (b, "seg-2.mp4"), (a, "seg-2.mp4"), (a, "seg-1.mp4"))]
    for src in made:
        cache.ensure(src, "rec")
    cache.ensure(session_sources[1], "other")
    assert cache.session_sources("rec") == [a / "seg-1.mp4", a / "seg-2.mp4", b / "seg-2.mp4", a / "seg-10.mp4"]
    assert cache.session_sources("rec", ProxySettings(height=360)) == cache.session_sources("rec")
    for session, settings in (("empty", None), ("rec", ProxySettings(quality=9))):
        with pytest.raises(BadInputError) as info:
            cache.session_sources(session, settings)
        assert info.value.path == cache.root / session and "scrubproxy proxy SRC... --session" in info.value.reason


def test_no_session_reuses_a_proxy_of_any_session(cache: ProxyCache, source: Path, monkeypatch):
    from scrubproxy import DEFAULT_SESSION

    assert DEFAULT_SESSION == "default" and cache.find(source) is None
    in_b = cache.ensure(source, "b")
    assert cache.find(source) == ("b", in_b)
    assert cache.find(source, ProxySettings(quality=9)) is None
    assert cache.lookup(source) == cache.path_for(source) == in_b
    assert cache.lookup(source, "default") is None  # an explicit session is that session only
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(str(a[0])) or real_open(*a, **k))
    assert cache.ensure(source) == in_b and opened == []
    with cache.open(source) as r:
        assert r.path == in_b
    monkeypatch.undo()
    in_default = cache.ensure(source, "default")
    assert cache.find(source) == ("default", in_default)  # default first, then the others
    assert cache.ensure(source, settings=ProxySettings(quality=9)).parent == cache.root / "default"


def test_ensure_tells_when_it_waits_for_another_encode(cache: ProxyCache, source: Path):
    import threading

    import filelock

    waited = threading.Event()
    lock = filelock.FileLock(cache.root / ".locks" / "default" / f"{cache.path_for(source).stem}.lock")
    (cache.root / ".locks" / "default").mkdir(parents=True)
    with lock:
        worker = threading.Thread(target=lambda: cache.ensure(source, "default", on_wait=waited.set))
        worker.start()
        assert waited.wait(30)
        assert cache.lookup(source) is None
    worker.join(120)
    assert not worker.is_alive() and cache.lookup(source) is not None
    calls: list[int] = []
    cache.ensure(source, on_wait=lambda: calls.append(1))
    assert calls == []  # a free lock (or a hit) never reports a wait


def test_ensure_many_keeps_order_and_reports_progress(cache: ProxyCache, session_sources: list[Path]):
    events: list[tuple] = []
    paths = cache.ensure_many(session_sources, "many", jobs=2, progress=lambda *a: events.append(a))
    assert paths == [cache.lookup(s, "many") for s in session_sources] and len(set(paths)) == 3
    for i, src in enumerate(session_sources):
        states = [e[2] for e in events if e[0] == i]
        assert all(e[1] == src for e in events if e[0] == i)
        assert states[0] == "encoding" and states[-1] == "done" and set(states) == {"encoding", "done"}
        done = [e for e in events if e[0] == i and e[2] == "done"][0]
        assert done[3] == done[4] == 20
    events.clear()
    assert cache.ensure_many(session_sources, "many", progress=lambda *a: events.append(a)) == paths
    assert [(e[0], e[2]) for e in events] == [(0, "reused"), (1, "reused"), (2, "reused")]


def test_ctrl_c_stops_ensure_many_encodes_and_cancels_the_rest(cache: ProxyCache, make_media, session_sources: list[Path]):
    import signal
    import threading
    import time

    sources = [make_media("long-interrupted.mp4", frames=600, gop=60), *session_sources[:2]]
    main = threading.main_thread().ident
    sent: list[int] = []

    def progress(i, src, state, done, total, fps):
        if state == "encoding" and done < (total or 0) and not sent:
            sent.append(i)
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C: only the main thread sees it
            time.sleep(0.3)  # the caller's thread takes the interrupt before this encode goes on

    with pytest.raises(KeyboardInterrupt):
        cache.ensure_many(sources, "stop", jobs=1, progress=progress)
    assert sent == [0]
    assert [cache.lookup(s, "stop") for s in sources] == [None, None, None]
    assert [e for e in cache.entries("stop") if e.state == "valid"] == []
