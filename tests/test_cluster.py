"""Proxies made on a real Dask LocalCluster (two single-thread worker processes),
through the library: real encodes, frames exact, a worker SIGKILLed for real.

The CLI's ``--scheduler`` is a thin layer over :func:`ensure_on_cluster`; its
tests come with that wiring.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from scrubproxy import ProxyCache, ProxyReader, ProxySettings
from scrubproxy.cache import TEMP_FILE_RE, read_manifest_json
from scrubproxy.cluster import PROGRESS_TOPIC, ensure_on, ensure_on_cluster, map_path, parse_path_map
from scrubproxy.errors import BadInputError, ClusterError, EncodeError, ScrubProxyError, SourceUnreadableError
from scrubproxy.samples import read_index

distributed = pytest.importorskip("distributed")

SETTINGS = ProxySettings(height=120, hwaccel="none")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


def indices(proxy: Path) -> list[int]:
    with ProxyReader(proxy) as r:
        return [read_index(r[k]) for k in range(len(r))]


def no_partial_files(root: Path) -> bool:
    """Nothing but committed proxies in the cache: no temp file, no orphan."""
    temps = [p for p in root.rglob("*") if TEMP_FILE_RE.fullmatch(p.name)]
    return not temps and all(e.state == "valid" for e in ProxyCache(root).entries())


def test_segments_are_proxied_exactly_with_progress(client, session_sources, vfr_source, tmp_path):
    sources = [*session_sources, vfr_source]
    seen: list[tuple[int, str]] = []
    paths = ensure_on(client, sources, "s", SETTINGS, cache_root=tmp_path / "cache", progress=lambda i, src, state, *_: seen.append((i, state)))
    assert [p.parent for p in paths] == [tmp_path / "cache" / "s"] * 4
    for src, proxy in zip(sources, paths):
        assert proxy == ProxyCache(tmp_path / "cache").lookup(src, "s", SETTINGS)
    assert [indices(p) for p in paths[:3]] == [list(range(20))] * 3
    assert indices(paths[3]) == list(range(len(indices(paths[3]))))
    assert {(i, "done") for i in range(4)} <= set(seen)
    assert any(state == "running" for _, state in seen)
    assert no_partial_files(tmp_path / "cache")


def test_worker_killed_mid_encode_reruns_and_nothing_partial(client, make_media, tmp_path):
    long_source = make_media("cluster-long.mp4", frames=900, width=640, height=480, gop=30)
    root = tmp_path / "cache"
    pids = client.run(os.getpid)
    runs: dict[str, set[str]] = {}
    killed: list[str] = []

    def on_event(event):
        msg = event[1]
        runs.setdefault(msg["key"], set()).add(msg["run"])
        if msg["state"] == "running" and msg["done"] > 100 and not killed:
            killed.append(msg["worker"])
            os.kill(pids[msg["worker"]], signal.SIGKILL)

    client.subscribe_topic(PROGRESS_TOPIC, on_event)
    try:
        [proxy] = ensure_on(client, [long_source], "k", ProxySettings(height=240, hwaccel="none"), cache_root=root)
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
    assert killed, "the encode finished before it could be killed"
    [key] = runs
    assert len(runs[key]) >= 2  # the killed run and the rerun
    assert indices(proxy) == list(range(900))
    assert no_partial_files(root)  # the rerun removed the dead writer's temp files


def test_ctrl_c_cancels_pending_and_stops_running_encodes(client, make_media, tmp_path):
    import _thread

    sources = [make_media("cluster-long.mp4", frames=900, width=640, height=480, gop=30), *(make_media(f"cluster-share-{i}.mp4", frames=90, gop=30) for i in range(3))]
    root = tmp_path / "cache"
    interrupted: list[int] = []

    def progress(i, source, state, done, total, fps):
        if state == "running" and done > 50 and not interrupted:
            interrupted.append(i)
            _thread.interrupt_main()  # what Ctrl-C does

    with pytest.raises(KeyboardInterrupt):
        ensure_on(client, sources, "c", ProxySettings(height=240, hwaccel="none"), cache_root=root, progress=progress)
        time.sleep(5)  # interrupt_main lands between bytecodes; the wait must not end first
    deadline = time.monotonic() + 15
    while any(TEMP_FILE_RE.fullmatch(p.name) for p in root.rglob("*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert no_partial_files(root)
    cache = ProxyCache(root)
    assert cache.lookup(sources[0], "c", ProxySettings(height=240)) is None  # stopped, not finished
    assert not any(client.processing().values())  # nothing left running or queued


def test_two_clients_share_one_encode_per_segment(cluster, make_media, tmp_path):
    sources = [make_media(f"cluster-share-{i}.mp4", frames=90, gop=30) for i in range(3)]
    root = tmp_path / "cache"
    runs: dict[str, set[str]] = {}
    results: dict[int, list[Path]] = {}
    with distributed.Client(cluster) as watcher:
        watcher.subscribe_topic(PROGRESS_TOPIC, lambda e: runs.setdefault(e[1]["key"], set()).add(e[1]["run"]))

        def ask(n: int) -> None:
            with distributed.Client(cluster) as c:
                results[n] = ensure_on(c, sources, "two", SETTINGS, cache_root=root)

        askers = [threading.Thread(target=ask, args=(n,)) for n in range(2)]
        for t in askers:
            t.start()
        for t in askers:
            t.join(60)
        time.sleep(0.5)  # the last events reach the watcher
    assert results[0] == results[1]
    assert len(runs) == 3 and all(len(r) == 1 for r in runs.values())  # one run per segment, shared by both
    manifests = [read_manifest_json(p.with_suffix(".json")) for p in results[0]]
    assert len({m["build_id"] for m in manifests}) == 3
    assert [indices(p) for p in results[0]] == [list(range(90))] * 3


def test_bad_segment_is_reported_once_and_good_ones_are_done(client, session_sources, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(64 * 1024))
    root = tmp_path / "cache"
    states: list[tuple[int, str]] = []
    with pytest.raises(SourceUnreadableError) as info:
        ensure_on(client, [session_sources[0], bad, session_sources[1]], "b", SETTINGS, cache_root=root, progress=lambda i, s, st, *_: states.append((i, st)))
    assert info.value.exit_code == 3 and info.value.path == bad
    assert "\n" not in str(info.value)
    assert states.count((1, "failed")) == 1
    cache = ProxyCache(root)
    assert all(cache.lookup(s, "b", SETTINGS) is not None for s in session_sources[:2])


def test_newest_first_starts_the_last_sources_first(client, make_media, tmp_path):
    sources = [make_media(f"cluster-order-{i}.mp4", frames=60, gop=30) for i in range(8)]
    started: list[int] = []

    def progress(i, source, state, *_):
        if i not in started:
            started.append(i)

    ensure_on(client, sources, "o", SETTINGS, cache_root=tmp_path / "cache", progress=progress, priority_newest_first=True)
    assert started[:2] == [7, 6] or started[:2] == [6, 7]
    assert started.index(7) < started.index(0) and started[-1] in (0, 1, 2)


def test_source_missing_on_workers_names_path_and_worker(client, session_sources, tmp_path):
    media = session_sources[0].parent
    with pytest.raises(BadInputError) as info:
        ensure_on(client, session_sources[:1], "m", SETTINGS, cache_root=tmp_path / "cache", path_map=parse_path_map([f"{media}={tmp_path}/nowhere"]))
    assert info.value.exit_code == 2
    assert info.value.path == session_sources[0]  # the client's view, as a local run names it
    assert "not found on worker tcp://" in info.value.reason and f" as {tmp_path}/nowhere/seg-000.mp4 " in info.value.reason
    assert "\n" not in info.value.reason
    with pytest.raises(EncodeError) as info:
        ensure_on(client, session_sources[:1], "m", SETTINGS, cache_root=tmp_path / "cache", path_map=parse_path_map([f"{tmp_path}/cache={tmp_path}/nocache"]))
    assert info.value.exit_code == 4 and info.value.reason.startswith("cache root not found on worker tcp://")


def test_path_map_translates_client_mounts(client, session_sources, tmp_path):
    """The client sees the storage under mnt/ (a link standing for its mount
    point); the workers get store/ paths; the answers come back as mnt/ paths."""
    store = tmp_path / "store"
    (store / "rec").mkdir(parents=True)
    for s in session_sources:
        os.link(s, store / "rec" / s.name)
    (tmp_path / "mnt").symlink_to(store)
    client_sources = [tmp_path / "mnt" / "rec" / s.name for s in session_sources]
    paths = ensure_on(client, client_sources, "p", SETTINGS, cache_root=tmp_path / "mnt" / "cache", path_map=parse_path_map([f"{tmp_path}/mnt={store}"]))
    assert [p.parent for p in paths] == [tmp_path / "mnt" / "cache" / "p"] * 3
    manifest = read_manifest_json(paths[0].with_suffix(".json"))
    assert manifest["source"]["path"] == str(store / "rec" / session_sources[0].name)
    assert [indices(p) for p in paths] == [list(range(20))] * 3


def test_parse_and_map_paths():
    pm = parse_path_map(["/mnt/rec=/data/rec", "/mnt=/srv"])
    assert map_path("/mnt/rec/a.mp4", pm) == "/data/rec/a.mp4"
    assert map_path("/mnt/records/a.mp4", pm) == "/srv/records/a.mp4"
    assert map_path("/other/a.mp4", pm) == "/other/a.mp4"
    for bad in ("/mnt/rec", "rec=/data", "/a="):
        with pytest.raises(BadInputError):
            parse_path_map([bad])


def test_unreachable_scheduler_is_one_line_exit_6(session_sources, tmp_path):
    started = time.monotonic()
    with pytest.raises(ClusterError) as info:
        ensure_on_cluster("tcp://127.0.0.1:9", session_sources, None, SETTINGS, cache_root=tmp_path / "cache", connect_timeout=2)
    assert time.monotonic() - started < 10
    assert info.value.exit_code == 6 and "\n" not in str(info.value)
    assert "tcp://127.0.0.1:9" in info.value.reason
    assert isinstance(info.value, ScrubProxyError)


def test_without_the_extra_scheduler_says_what_to_install(monkeypatch, session_sources, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ClusterError) as info:
        ensure_on_cluster("local", session_sources, None, SETTINGS, cache_root=tmp_path / "cache")
    assert info.value.exit_code == 6 and "pip install 'scrubproxy[dask]'" in info.value.reason
