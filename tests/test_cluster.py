"""Proxies made on a real Dask LocalCluster (two single-thread worker processes),
through the library: real encodes, frames exact, a worker SIGKILLed for real;
then through the CLI (``proxy --scheduler``, ``watch --scheduler``), run as a
real child process that starts its own LocalCluster (``local:2``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scrubproxy import ProxyCache, ProxyReader, ProxySettings
from scrubproxy.cache import TEMP_FILE_RE
from scrubproxy.manifest import load_manifest
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
    manifests = [load_manifest(p.with_suffix(".json")) for p in results[0]]
    assert len({m.build_id for m in manifests}) == 3
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
    manifest = load_manifest(paths[0].with_suffix(".json"))
    assert manifest.source.path == str(store / "rec" / session_sources[0].name)
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


# -- the CLI: ``--scheduler`` on ``proxy`` and ``watch`` ---------------------------------

CLI_SETTINGS = ("--height", "120", "--hwaccel", "none")


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one stderr line of a failed run (nothing on stdout)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_cli_proxy_on_the_cluster_makes_what_a_local_run_makes(run_cli, session_sources, vfr_source, tmp_path):
    sources = [*session_sources, vfr_source]
    local = run_cli("proxy", *sources, *CLI_SETTINGS, cache_dir=tmp_path / "local")
    assert local.returncode == 0, local.stderr
    on = run_cli("proxy", *sources, *CLI_SETTINGS, "--scheduler", "local:2", cache_dir=tmp_path / "cluster")
    assert on.returncode == 0, on.stderr
    assert on.stderr == ""  # not a terminal: no bar, and none of Dask's INFO lines
    paths = [Path(line) for line in on.stdout.splitlines()]
    assert [p.relative_to(tmp_path / "cluster") for p in paths] == [Path(p).relative_to(tmp_path / "local") for p in local.stdout.splitlines()]
    assert paths == [ProxyCache(tmp_path / "cluster").lookup(s, "default", SETTINGS) for s in sources]
    assert [indices(p) for p in paths[:3]] == [list(range(20))] * 3
    assert indices(paths[3]) == indices(Path(local.stdout.splitlines()[3]))
    assert no_partial_files(tmp_path / "cluster")
    again = run_cli("proxy", *sources, *CLI_SETTINGS, env={"SCRUBPROXY_SCHEDULER": "local:2"}, cache_dir=tmp_path / "cluster")
    assert again.returncode == 0 and again.stdout == on.stdout, again.stderr  # the env var, and reused on the workers


def test_cli_bad_segment_among_good_ones_exits_3_with_one_line(run_cli, session_sources, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(64 * 1024))
    result = run_cli("proxy", session_sources[0], bad, session_sources[1], *CLI_SETTINGS, "--scheduler", "local:2")
    assert result.returncode == 3
    assert error_line(result).startswith(f"error: {bad}: not a video file")
    cache = ProxyCache(tmp_path / "cache")
    assert all(cache.lookup(s, "default", SETTINGS) is not None for s in session_sources[:2])  # the good ones are made all the same


def test_cli_unreachable_scheduler_exits_6_within_the_timeout(run_cli, session_sources, tmp_path):
    for command in (("proxy", session_sources[0]), ("watch", tmp_path, "--once")):
        started = time.monotonic()
        result = run_cli(*command, "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2", timeout=30)
        assert time.monotonic() - started < 2 + 6  # the timeout, plus starting Python and importing Dask
        assert result.returncode == 6
        assert error_line(result).startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 2 s")
    result = run_cli("proxy", session_sources[0], "--path-map", "/mnt=/data")
    assert result.returncode == 2 and "--path-map needs --scheduler" in error_line(result)


def test_cli_path_map_translates_the_client_mounts(run_cli, session_sources, tmp_path):
    store = tmp_path / "store"
    (store / "rec").mkdir(parents=True)
    for s in session_sources:
        os.link(s, store / "rec" / s.name)
    (tmp_path / "mnt").symlink_to(store)
    mnt = tmp_path / "mnt"
    sources = [mnt / "rec" / s.name for s in session_sources]
    result = run_cli("proxy", *sources, *CLI_SETTINGS, "--scheduler", "local:2", "--path-map", f"{mnt}={store}", "--session", "p", cache_dir=mnt / "cache")
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert [p.parent for p in paths] == [mnt / "cache" / "p"] * 3  # the client's view
    assert load_manifest(paths[0].with_suffix(".json")).source.path == str(store / "rec" / session_sources[0].name)  # the workers'
    assert [indices(p) for p in paths] == [list(range(20))] * 3
    maps = ("--path-map", f"{mnt}={store}", "--path-map", f"{mnt}/rec={tmp_path}/nowhere")  # repeatable; the longest prefix wins
    missing = run_cli("proxy", sources[0], *CLI_SETTINGS, "--scheduler", "local:2", *maps, "--session", "q", cache_dir=mnt / "cache")
    assert missing.returncode == 2
    assert re.fullmatch(rf"error: {sources[0]}: not found on worker tcp://\S+ as {tmp_path}/nowhere/seg-000.mp4 \(.*--path-map\)", error_line(missing))


def _recordings(folder: Path, sources: list[Path]) -> list[Path]:
    """Copies of ``sources`` in ``folder``, finished long ago (oldest first)."""
    folder.mkdir()
    copies = []
    for age, src in zip(range(len(sources) * 100, 0, -100), sources):
        copy = Path(shutil.copy(src, folder / src.name))
        os.utime(copy, (time.time() - age, time.time() - age))
        copies.append(copy)
    return copies


def test_cli_watch_once_on_the_cluster_proxies_a_folder_exactly(run_cli, session_sources, vfr_source, tmp_path):
    rec = tmp_path / "rec"
    copies = _recordings(rec, [*session_sources, vfr_source])
    (rec / "bad.mp4").write_bytes(b"this is not a video " * 500)
    result = run_cli("watch", rec, "--once", "--settle", "0.5", *CLI_SETTINGS, "--scheduler", "local:2")
    assert result.returncode == 3, result.stderr  # the highest code among skipped segments, as without a cluster
    log = result.stderr
    assert "on the Dask cluster at local:2" in log and "distributed" not in log
    assert len(re.findall(r"INFO complete: ", log)) == 5 and len(re.findall(r"INFO encoding ", log)) == 5
    assert re.search(rf"ERROR skipped {rec}/bad\.mp4: not a video file .*\(exit code 3; retried when it changes\)", log), log
    cache = ProxyCache(tmp_path / "cache")
    proxies = [cache.lookup(c, "default", SETTINGS) for c in copies]
    for copy, proxy in zip(copies, proxies):
        assert f"INFO proxy ready: {copy} -> {proxy} (encode " in log
    assert [indices(p) for p in proxies[:3]] == [list(range(20))] * 3
    assert indices(proxies[3]) == list(range(len(indices(proxies[3]))))
    assert no_partial_files(tmp_path / "cache")


def test_cli_watch_on_the_cluster_stops_cleanly_on_sigterm(make_media, tmp_path):
    rec, root = tmp_path / "rec", tmp_path / "cache"
    long_sources = [make_media("cluster-long.mp4", frames=900, width=640, height=480, gop=30), *(make_media(f"cluster-share-{i}.mp4", frames=90, gop=30) for i in range(3))]
    copies = _recordings(rec, long_sources[::-1])  # the long one newest: first on the cluster
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(root)}
    args = ["watch", rec, "--poll", "--settle", "0.5", "--height", "240", "--hwaccel", "none", "--scheduler", "local:2"]
    child = subprocess.Popen([sys.executable, "-m", "scrubproxy", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not any(TEMP_FILE_RE.fullmatch(p.name) for p in root.rglob("*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.monotonic() < deadline, "no encode started"
        stopped = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, log = child.communicate(timeout=30)
    finally:
        child.kill()
    assert time.monotonic() - stopped < 15, log
    assert child.returncode == 0, log
    assert "stopped encoding " in log and log.rstrip().endswith("INFO stopped"), log
    assert no_partial_files(root), log  # the running encode stopped and removed its temp files
    assert ProxyCache(root).lookup(copies[-1], None, ProxySettings(height=240)) is None  # stopped, not finished


def test_cli_without_the_extra_scheduler_says_what_to_install(session_sources, tmp_path):
    """A Python whose ``import distributed`` fails, as where the extra is not installed."""
    blocked = "import sys; sys.modules['distributed'] = None; from scrubproxy.cli import run; run()"
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(tmp_path / "cache")}
    for command in (("proxy", session_sources[0]), ("watch", tmp_path, "--once")):
        result = subprocess.run([sys.executable, "-c", blocked, *map(str, command), "--scheduler", "local"], check=False, capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 6
        assert error_line(result) == "error: --scheduler needs the Dask extra: pip install 'scrubproxy[dask]'"
