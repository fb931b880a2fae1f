"""Real child processes running ``ensure``, killed for real (SIGKILL) at several
points, racing each other, or running out of disk.

The kill points inside publishing are exact: the child's own script wraps the
stdlib call (``os.replace`` / ``os.unlink``) that publishing makes and SIGKILLs
itself right there, so the library carries no test hooks. The mid-encode kill
is plain timing: the parent watches the cache folder and kills the child once
its temporary proxy has grown.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scrubproxy import ProxyCache, ProxySettings
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import RecordingSpec, make_recording, read_index

FRAMES = 300
SETTINGS = ProxySettings(height=480)

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    from scrubproxy import ProxyCache, ProxySettings

    root, source, point, force = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "force"
    if os.environ.get("CHILD_NO_LOCK"):  # a writer on a network filesystem, where file locks do not hold
        import filelock
        class NoLock:  # takes every lock at once, holds none
            def __init__(self, *a, **k): pass
            def acquire(self, *a, **k): return self
            def release(self, *a, **k): pass
            def __enter__(self): return self
            def __exit__(self, *exc): pass
        filelock.FileLock = NoLock
    if os.environ.get("CHILD_HOSTNAME"):  # a machine named like most servers: host.domain
        import socket
        socket.gethostname = lambda: os.environ["CHILD_HOSTNAME"]
    real_replace, real_unlink = os.replace, os.unlink

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *a, **k):
        name = os.path.basename(dst)
        if point == "before-manifest-rename" and name.endswith(".json") and name != "decoders.json":  # a manifest, not the hwaccel memory
            die()
        real_replace(src, dst, *a, **k)
        if point == "after-proxy-rename" and name.endswith((".avi", ".mkv")):
            die()
        if point == "pause-after-proxy-rename" and name.endswith((".avi", ".mkv")):
            Path(root, "paused").touch()
            while not Path(root, "resume").exists():
                time.sleep(0.005)
        if point == "after-frames-rename" and name.endswith(".frames"):
            die()

    def unlink(path, *a, **k):
        real_unlink(path, *a, **k)
        if point == "after-old-manifest-removed" and str(path).endswith(".json"):
            die()
        if point == "pause-after-old-manifest-removed" and str(path).endswith(".json"):
            Path(root, "paused").touch()  # tell the parent, then wait for its go-ahead
            while not Path(root, "resume").exists():
                time.sleep(0.005)

    real_fsync = os.fsync

    def fsync(fd):
        # After the last frame is decoded the encoder syncs its files: the recorder
        # writes more of the source right then (once).
        if point == "source-grows-after-decoding" and os.path.getsize(source) < os.path.getsize(os.environ["GROWN_SOURCE"]):
            with open(source, "ab") as f:
                f.write(Path(os.environ["GROWN_SOURCE"]).read_bytes()[os.path.getsize(source):])
        real_fsync(fd)

    os.replace, os.unlink, os.fsync = replace, unlink, fsync
    ProxyCache(root).ensure(source, settings=ProxySettings(height=480), force=force)
    print("finished")
    """
)


@pytest.fixture(scope="module")
def slow_source(make_media) -> Path:
    """640x480, 300 frames: its encode takes long enough (about a second here) to be caught mid-way."""
    return make_media("slow-640x480.mp4", frames=FRAMES, width=640, height=480, gop=FRAMES, codec_options=(("preset", "ultrafast"),))


def start_child(
    cache: ProxyCache, source: Path, point: str, force: bool = False, hostname: str = "", grown: Path | None = None, no_lock: bool = False
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cache.root), str(source), point, "force" if force else "build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CHILD_HOSTNAME": hostname, "GROWN_SOURCE": str(grown or ""), "CHILD_NO_LOCK": "1" if no_lock else ""},
    )


def wait_for_pause(cache: ProxyCache, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not (cache.root / "paused").exists():
        assert time.monotonic() < deadline and child.poll() is None, child.communicate()
        time.sleep(0.005)


def resume(cache: ProxyCache, child: subprocess.Popen) -> None:
    (cache.root / "resume").touch()
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    (cache.root / "paused").unlink()
    (cache.root / "resume").unlink()


def assert_full_proxy(proxy: Path, frames: int = FRAMES) -> None:
    with ProxyReader(proxy) as r:
        assert [read_index(r[k]) for k in range(len(r))] == list(range(frames))


def assert_no_valid_partial(cache: ProxyCache, source: Path) -> None:
    assert cache.lookup(source, settings=SETTINGS) is None
    assert all(e.state != "valid" for e in cache.entries())


def assert_rebuilt_and_clean(cache: ProxyCache, source: Path, frames: int = FRAMES) -> None:
    proxy = cache.ensure(source, settings=SETTINGS)
    assert_full_proxy(proxy, frames)
    assert sorted(p.name for p in proxy.parent.iterdir()) == sorted(proxy.with_suffix(s).name for s in (".mkv", ".frames", ".json"))
    assert [e.state for e in cache.entries()] == ["valid"]


def test_killed_encode_never_leaves_a_visible_proxy(cache: ProxyCache, slow_source: Path):
    child = start_child(cache, slow_source, "none")
    sdir = cache.root / "default"
    deadline = time.monotonic() + 60
    temp = None
    while time.monotonic() < deadline and child.poll() is None:
        temps = [p for p in sdir.glob(".*.tmp.mkv")] if sdir.exists() else []
        if temps and temps[0].stat().st_size > 200_000:
            temp = temps[0]
            break
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert temp is not None, f"the encode was not caught mid-way: {child.stdout.read()} {child.stderr.read()}"
    assert child.returncode == -signal.SIGKILL
    assert temp.exists(), "the killed encode's temporary file should still be there (the test would prove nothing)"
    assert [p.name for p in sdir.iterdir() if not p.name.startswith(".")] == []  # nothing published
    assert_no_valid_partial(cache, slow_source)
    assert [e.state for e in cache.entries()] == ["orphan"]
    assert_rebuilt_and_clean(cache, slow_source)
    assert not temp.exists()


@pytest.mark.parametrize("point", ["after-proxy-rename", "after-frames-rename", "before-manifest-rename"])
def test_kill_while_publishing_never_leaves_a_valid_partial_proxy(cache: ProxyCache, cfr_source: Path, point: str):
    child = start_child(cache, cfr_source, point)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    sdir = cache.root / "default"
    names = sorted(p.name for p in sdir.iterdir())
    assert any(n.endswith(".mkv") and not n.startswith(".") for n in names), names  # the rename had happened
    assert not any(n.endswith(".json") and not n.startswith(".") for n in names), names  # the manifest had not
    assert_no_valid_partial(cache, cfr_source)
    assert_rebuilt_and_clean(cache, cfr_source, 60)


@pytest.mark.parametrize("hostname", ["rec-01", "rec-01.studio.example.com"])
def test_leftovers_of_a_killed_run_are_listed_removed_on_next_use_and_cleanable(
    cache: ProxyCache, cfr_source: Path, hostname: str, monkeypatch
):
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)  # the same machine as the child
    child = start_child(cache, cfr_source, "before-manifest-rename", hostname=hostname)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    sdir = cache.root / "default"
    leftovers = [p for p in sdir.iterdir() if p.name.startswith(".")]
    assert leftovers, "the kill should have left the temporary manifest"
    [entry] = cache.entries()
    assert entry.state == "orphan" and set(leftovers) <= set(entry.files)
    cache.ensure(cfr_source, settings=SETTINGS)
    assert not any(p.exists() for p in leftovers)
    child = start_child(cache, cfr_source, "before-manifest-rename", force=True, hostname=hostname)
    child.communicate(timeout=120)
    assert cache.cleanup() == 1
    assert not sdir.exists() or list(sdir.iterdir()) == []


def test_kill_during_a_forced_rebuild_leaves_no_mismatched_proxy(cache: ProxyCache, cfr_source: Path):
    old = cache.ensure(cfr_source, settings=SETTINGS)
    old_build = json.loads(old.with_suffix(".json").read_text())["build_id"]
    child = start_child(cache, cfr_source, "after-old-manifest-removed", force=True)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert_no_valid_partial(cache, cfr_source)
    assert_rebuilt_and_clean(cache, cfr_source, 60)
    assert json.loads(old.with_suffix(".json").read_text())["build_id"] != old_build


RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from scrubproxy import ProxyCache, ProxySettings

    root, source, ready, go = sys.argv[1:5]
    cache = ProxyCache(root)
    Path(ready).touch()
    while not os.path.exists(go):
        time.sleep(0.001)
    calls = []
    path = cache.ensure(source, settings=ProxySettings(height=480), progress=lambda *a: calls.append(a))
    manifest = json.loads(path.with_suffix(".json").read_text())
    print(json.dumps({"path": str(path), "encoded": bool(calls), "build_id": manifest["build_id"]}))
    """
)


def test_four_processes_ensuring_one_source_share_one_encode(cache: ProxyCache, slow_source: Path, tmp_path: Path):
    go = tmp_path / "go"
    children = []
    for i in range(4):
        ready = tmp_path / f"ready-{i}"
        children.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", RACER, str(cache.root), str(slow_source), str(ready), str(go)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 60
    while not all(r.exists() for r, _ in children):
        assert time.monotonic() < deadline and all(c.poll() is None for _, c in children), "a racer did not start"
        time.sleep(0.01)
    go.touch()
    results = []
    for _, c in children:
        out, err = c.communicate(timeout=120)
        assert c.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["encoded"] for r in results) == 1, results
    assert len({r["path"] for r in results}) == 1
    path = Path(results[0]["path"])
    final = json.loads(path.with_suffix(".json").read_text())
    assert {r["build_id"] for r in results} == {final["build_id"]}
    assert_full_proxy(path)
    assert [e.state for e in cache.entries()] == ["valid"]


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _cli_with_size_limit(cache: ProxyCache, *args: str, limit: int = 64_000) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scrubproxy", "--cache-dir", str(cache.root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_file_size_limit(limit),
    )


def test_disk_full_during_encode_exits_4_with_one_line_and_leaves_no_file(cache: ProxyCache, cfr_source: Path):
    result = _cli_with_size_limit(cache, "proxy", str(cfr_source))
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    # It names the folder that filled up (the temporary file it was writing is gone by now).
    assert len(lines) == 1 and lines[0].startswith(f"error: {cache.root / 'default'}: ") and "disk full" in lines[0], result.stderr
    sdir = cache.root / "default"
    assert list(sdir.iterdir()) == []
    assert cache.entries() == []


def test_disk_full_during_a_forced_rebuild_keeps_the_old_valid_proxy(cache: ProxyCache, cfr_source: Path):
    proxy = cache.ensure(cfr_source)
    before = {p.name: p.read_bytes() for p in proxy.parent.iterdir()}
    result = _cli_with_size_limit(cache, "proxy", "--force", str(cfr_source))
    assert result.returncode == 4, result.stderr
    assert "disk full" in result.stderr and len(result.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in proxy.parent.iterdir()} == before
    assert cache.lookup(cfr_source) == proxy


def test_cleanup_during_an_encode_skips_it_and_the_encode_succeeds(cache: ProxyCache, slow_source: Path, session_sources):
    done = cache.ensure(session_sources[0])
    child = start_child(cache, slow_source, "none")
    sdir = cache.root / "default"
    deadline = time.monotonic() + 60
    while not list(sdir.glob(".*.tmp.mkv")):
        assert time.monotonic() < deadline and child.poll() is None, "the encode was not caught mid-way"
        time.sleep(0.002)
    removed = cache.cleanup()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and out.strip() == "finished", err
    assert removed == 1 and not done.exists()
    proxy = cache.lookup(slow_source, settings=SETTINGS)
    assert proxy is not None
    assert_full_proxy(proxy)


REBUILDER = textwrap.dedent(
    """
    import sys
    from scrubproxy import ProxyCache
    cache = ProxyCache(sys.argv[1])
    for _ in range(int(sys.argv[3])):
        cache.ensure(sys.argv[2], force=True)
    """
)


def test_listing_and_cleaning_while_another_process_publishes_never_fail(cache: ProxyCache, cfr_source: Path):
    cache.ensure(cfr_source)
    child = subprocess.Popen([sys.executable, "-c", REBUILDER, str(cache.root), str(cfr_source), "12"], stderr=subprocess.PIPE, text=True)
    listings = 0
    while child.poll() is None:
        for entry in cache.entries():  # files appear, are renamed and replaced under our feet
            assert entry.state in ("valid", "orphan")
        cache.cleanup(stale_only=True)
        listings += 1
    assert child.wait() == 0, child.stderr.read()
    assert listings > 10
    assert [e.state for e in cache.entries()] == ["valid"]
    assert_full_proxy(cache.lookup(cfr_source), 60)


def test_cleaning_a_session_while_an_ensure_starts_does_not_break_it(cache: ProxyCache, slow_source: Path):
    child = start_child(cache, slow_source, "none")
    sdir = cache.root / "default"
    deadline = time.monotonic() + 60
    while not sdir.exists():  # the child made the session folder and is about to encode into it
        assert time.monotonic() < deadline and child.poll() is None, "the child never made its session folder"
        time.sleep(0.001)
    cache.cleanup("default")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and out.strip() == "finished", err
    assert_full_proxy(cache.lookup(slow_source, settings=SETTINGS))


def test_an_entry_listed_mid_publish_is_judged_again_before_removal(cache: ProxyCache, cfr_source: Path):
    """cleanup lists, then removes: a proxy republished in between must be seen as it is now."""
    cache.ensure(cfr_source, settings=SETTINGS)
    child = start_child(cache, cfr_source, "pause-after-old-manifest-removed", force=True)
    wait_for_pause(cache, child)
    [listed] = cache.entries()  # between the old manifest and the new one
    assert listed.state == "orphan"
    resume(cache, child)
    assert not cache.remove_entry(listed, keep_valid=True)  # valid by now: kept
    proxy = cache.lookup(cfr_source, settings=SETTINGS)
    assert proxy is not None
    assert_full_proxy(proxy, 60)
    assert cache.remove_entry(listed)  # removal takes every file of the proxy as it is now
    assert cache.entries() == [] and list(proxy.parent.iterdir()) == []


def test_a_source_that_grows_during_its_encode_is_stale_afterwards(cache: ProxyCache, tmp_path: Path):
    """A recorder still writing the segment: the proxy covers what was there when
    the encode read it, so the longer file must not count as covered."""
    full = make_recording(RecordingSpec(path=tmp_path / "full.mkv", frames=60, gop=10))
    growing = tmp_path / "rec" / "growing.mkv"
    growing.parent.mkdir()
    data = full.read_bytes()
    growing.write_bytes(data[: len(data) // 2])
    child = start_child(cache, growing, "source-grows-after-decoding", grown=full)
    _, err = child.communicate(timeout=120)
    # Publishing a proxy that is stale at once, or refusing to publish: both are honest.
    assert child.returncode == 0 or "scrubproxy.errors.EncodeError" in err, err
    assert growing.read_bytes() == data  # it grew while the encode ran
    proxy = cache.lookup(growing, settings=SETTINGS)
    if proxy is not None:  # trusted only if it really holds the whole recording
        assert_full_proxy(proxy, 60)
    assert_full_proxy(cache.ensure(growing, settings=SETTINGS), 60)


def test_two_writers_that_ignore_the_lock_never_publish_a_mismatched_proxy(cache: ProxyCache, cfr_source: Path):
    """DESIGN: file locks are unreliable on network filesystems; the manifest
    alone must keep a proxy from being trusted with another encode's files."""
    child = start_child(cache, cfr_source, "pause-after-proxy-rename", no_lock=True)  # height 480 -> 240 high
    wait_for_pause(cache, child)  # its proxy is in place, its frame map and manifest not yet
    small = ProxySettings(height=120)
    cache.ensure(cfr_source, settings=small, force=True)  # a second writer publishes in between
    resume(cache, child)
    for settings, height in ((SETTINGS, 240), (small, 120)):
        proxy = cache.lookup(cfr_source, settings=settings)
        if proxy is not None:  # trusted only if files and manifest belong together
            with ProxyReader(proxy) as r:
                assert r.metadata.height == height
        proxy = cache.ensure(cfr_source, settings=settings)
        with ProxyReader(proxy) as r:
            assert r.metadata.height == height
            assert [read_index(r[k]) for k in range(len(r))] == list(range(60))
