"""``scrubproxy watch`` as a real child process, fed by a real writer process that
writes segments slowly in chunks, as a recorder does; encoders are real child
processes, stopped and killed for real."""

from __future__ import annotations

import datetime
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import pytest

from scrubproxy import EncodeError, ProxyCache, ProxySettings
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import read_index

# Writes each staging file into the target folder in chunks, keeping it open
# between chunks as a recorder does (one close per segment), and logs
# "<path> <wall time of close>" once it is closed. A pause longer than the
# watcher's --settle in the middle of the first segment would fool a watcher
# that only waits for the size to settle.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    target, log, pause = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    for i, staged in enumerate(map(Path, sys.argv[4:])):
        data = staged.read_bytes()
        step = max(1, len(data) // 8)
        with open(target / staged.name, "wb", buffering=0) as f:
            for k, at in enumerate(range(0, len(data), step)):
                f.write(data[at : at + step])
                time.sleep(pause if (i == 0 and k == 3) else 0.1)
        with open(log, "a") as out:
            out.write(f"{target / staged.name} {time.time()}\\n")
    """
)

SETTLE = "1"


class Watcher:
    """A running ``scrubproxy watch`` child and its log (stderr, plain lines)."""

    def __init__(self, tmp_path: Path, cache_dir: Path, *args: str) -> None:
        self.log_path = tmp_path / f"watch-{time.monotonic_ns()}.log"
        env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(cache_dir), "COLUMNS": "200"}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scrubproxy", "watch", "--settle", SETTLE, *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )
        self.wait_for(lambda: "watching" in self.text(), "start")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, word: str) -> list[tuple[float, str]]:
        """(wall time, rest) of each log line whose message starts with ``word``."""
        found = []
        for line in self.text().splitlines():
            m = re.match(r"(\S+ \S+) \w+ (.*)", line)
            if m and m[2].startswith(word):
                when = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.append((when, m[2][len(word) :].strip()))
        return found

    def wait_for(self, predicate, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"watch exited ({self.proc.returncode}) waiting for {what}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._log.close()
        return rc, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def watchers(tmp_path):
    started: list[Watcher] = []

    def start(cache_dir: Path, *args: str) -> Watcher:
        w = Watcher(tmp_path, cache_dir, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


#: Proxies of the long segment as tall as its source: slower to encode, easier to interrupt.
TALL = ProxySettings(height=480)
#: Loops of 600 frames in the long segment.
LONG_LOOPS = 8


@pytest.fixture(scope="session")
def long_source(make_media) -> Path:
    """A segment whose proxy takes a few seconds to encode (long enough to
    interrupt, even when a loaded machine delays the signal): 600 frames,
    remuxed eight times over (painting 4,800 frames would take 30 s)."""
    once = make_media("long-once.mp4", frames=600, width=640, height=480, gop=60, codec_options=(("preset", "ultrafast"),))
    looped = once.with_name(f"long-looped-{LONG_LOOPS}.mp4")
    if not looped.exists():
        with av.open(str(once)) as src, av.open(str(looped), "w") as out:
            stream = out.add_stream_from_template(src.streams.video[0])
            packets = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.time_base) for p in src.demux(video=0) if p.size]
            first, last = min(p[1] for p in packets), max(p[1] for p in packets)
            span = last - first + (last - first) // (len(packets) - 1)  # one loop's duration, a frame step included
            for loop in range(LONG_LOOPS):
                for data, pts, dts, key, time_base in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + loop * span, dts + loop * span
                    packet.is_keyframe, packet.time_base, packet.stream = key, time_base, stream
                    out.mux(packet)
    return looped


def temps(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*") if ".tmp." in p.name)


def manifest(cache: ProxyCache, source: Path, settings: ProxySettings = ProxySettings()) -> dict:
    proxy = cache.lookup(source, None, settings)
    assert proxy is not None, f"no valid proxy of {source}"
    return json.loads(proxy.with_suffix(".json").read_text())


def assert_frame_exact(cache: ProxyCache, source: Path, frames: int, settings: ProxySettings = ProxySettings()) -> None:
    proxy = cache.lookup(source, None, settings)
    assert proxy is not None, f"no valid proxy of {source}"
    with ProxyReader(proxy) as r:
        assert len(r) == frames
        for k in (0, frames // 2, frames - 1):
            assert read_index(r[k]) == k


def set_mtime(path: Path, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


def test_segments_written_slowly_get_proxies_only_once_closed(tmp_path, make_media, watchers):
    staged = [make_media(f"live-{i}.mp4", frames=60, gop=30, bframes=1) for i in range(3)]
    rec, cache_dir = tmp_path / "rec", tmp_path / "cache"
    rec.mkdir()
    w = watchers(cache_dir, rec, "--jobs", "1")
    closes = tmp_path / "closed.log"
    # Pause 2.5 s (more than twice --settle) inside the first segment.
    writer = subprocess.Popen([sys.executable, "-c", WRITER, rec, closes, "2.5", *staged])
    assert writer.wait(60) == 0
    cache = ProxyCache(cache_dir)
    segments = [rec / s.name for s in staged]
    w.wait_for(lambda: all(cache.lookup(s) for s in segments), "all proxies")
    closed_at = {Path(p): float(t) for p, t in (line.split() for line in closes.read_text().splitlines())}
    encodes = w.lines("encoding")
    assert sorted(Path(p) for _, p in encodes) == sorted(segments), "each segment encoded exactly once"
    for when, p in encodes:
        assert when >= closed_at[Path(p)] - 0.01, f"{p} was encoded before its writer closed it"
    for s in segments:
        assert manifest(cache, s)["source"]["size"] == s.stat().st_size
        assert_frame_exact(cache, s, 60)
    rc, took = w.stop()
    assert rc == 0 and took < 5


def test_backlog_goes_newest_first_and_a_bad_segment_is_skipped_until_it_changes(tmp_path, make_media, watchers, run_cli):
    rec, cache_dir = tmp_path / "rec", tmp_path / "cache"
    rec.mkdir()
    ages = {"b.mp4": 300, "c.mp4": 100, "a.mp4": 200}  # newest: c, a, b
    for name, age in ages.items():
        shutil.copy(make_media(f"backlog-{name}", frames=30), rec / name)
        set_mtime(rec / name, age)
    (rec / "bad.mp4").write_bytes(b"this is not a video " * 500)
    set_mtime(rec / "bad.mp4", 50)
    (rec / "notes.txt").write_text("not a segment")

    once = run_cli("watch", rec, "--once", "--jobs", "1", cache_dir=cache_dir)
    assert once.returncode == 3, once.stderr
    assert re.search(r"skipped \S*bad\.mp4: not a video file", once.stderr), once.stderr
    order = [Path(line.split()[-1]).name for line in once.stderr.splitlines() if " encoding " in line]
    assert order == ["bad.mp4", "c.mp4", "a.mp4", "b.mp4"], once.stderr
    cache = ProxyCache(cache_dir)
    made = {n: manifest(cache, rec / n) for n in ages}
    assert sorted(made, key=lambda n: made[n]["created"]) == ["c.mp4", "a.mp4", "b.mp4"]
    assert "notes.txt" not in once.stderr

    w = watchers(cache_dir, rec, "--jobs", "1")
    w.wait_for(lambda: len(w.lines("skipped")) == 1, "the bad segment to be tried again after a restart")
    time.sleep(3)  # more than a rescan: an unchanged bad segment is not retried
    assert len(w.lines("skipped")) == 1
    assert w.lines("encoding") == [w.lines("encoding")[0]] and "bad.mp4" in w.lines("encoding")[0][1]
    assert {n: manifest(cache, rec / n)["build_id"] for n in ages} == {n: m["build_id"] for n, m in made.items()}

    # The recorder rewrites it with a real recording: retried, and proxied.
    (rec / "bad.mp4").write_bytes(make_media("fixed.mp4", frames=45).read_bytes())
    w.wait_for(lambda: cache.lookup(rec / "bad.mp4") is not None, "the fixed segment's proxy")
    assert_frame_exact(cache, rec / "bad.mp4", 45)
    assert w.stop()[0] == 0


def test_sigterm_mid_encode_leaves_nothing_and_a_restart_after_sigkill_resumes(tmp_path, make_media, long_source, watchers, run_cli):
    rec, cache_dir = tmp_path / "rec", tmp_path / "cache"
    rec.mkdir()
    for i in range(2):
        shutil.copy(make_media(f"kill-{i}.mp4", frames=30), rec / f"small-{i}.mp4")
        set_mtime(rec / f"small-{i}.mp4", 10 + i)
    shutil.copy(long_source, rec / "long.mp4")
    set_mtime(rec / "long.mp4", 60)  # oldest: encoded last
    cache = ProxyCache(cache_dir)
    args = (rec, "--jobs", "1", "--height", "480")

    w = watchers(cache_dir, *args)
    w.wait_for(lambda: any(p.name.startswith(".long-") for p in temps(cache_dir)), "the long encode to start")
    rc, took = w.stop(signal.SIGTERM)
    assert rc == 0 and took < 5, w.text()
    assert temps(cache_dir) == []
    assert cache.lookup(rec / "long.mp4", None, TALL) is None, w.text()
    assert [e.state for e in cache.entries()] == ["valid", "valid"]
    made = {n: manifest(cache, rec / n, TALL) for n in ("small-0.mp4", "small-1.mp4")}

    w = watchers(cache_dir, *args)
    w.wait_for(lambda: any(p.name.startswith(".long-") for p in temps(cache_dir)), "the long encode to start again")
    assert len(w.lines("proxy already valid")) == 2
    w.proc.kill()
    w.proc.wait(10)
    # Its encoder dies with it (and removes its temporary files) rather than running on.
    deadline = time.monotonic() + 10
    while temps(cache_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temps(cache_dir) == []
    assert cache.lookup(rec / "long.mp4", None, TALL) is None

    w = watchers(cache_dir, *args)
    w.wait_for(lambda: any(p.name.startswith(".long-") for p in temps(cache_dir)), "the long encode to start after the restart")
    # Someone opens that segment meanwhile: `proxy` in another process waits on the
    # cache lock and shares the watcher's encode instead of making a second one.
    asked = run_cli("proxy", rec / "long.mp4", "--height", "480", "--quiet", cache_dir=cache_dir)
    assert asked.returncode == 0, asked.stderr
    w.wait_for(lambda: w.lines("proxy ready"), "the watcher to report the long proxy")
    assert Path(asked.stdout.strip()) == cache.lookup(rec / "long.mp4", None, TALL)
    assert manifest(cache, rec / "long.mp4", TALL)["created"] <= w.lines("proxy ready")[0][0] + 0.01, "published twice"
    with ProxyReader(cache.lookup(rec / "long.mp4", None, TALL)) as r:  # loops of frames 0-599
        assert len(r) == 600 * LONG_LOOPS
        assert [read_index(r[k]) for k in (0, 599, 600, 1799, 600 * LONG_LOOPS - 1)] == [0, 599, 0, 599, 599]
    assert {n: manifest(cache, rec / n, TALL)["build_id"] for n in made} == {n: m["build_id"] for n, m in made.items()}, (
        "valid proxies re-encoded"
    )
    assert [p for _, p in w.lines("encoding")] == [str(rec / "long.mp4")]
    assert w.stop()[0] == 0
    assert temps(cache_dir) == []


def test_budget_evicts_least_recently_used_never_the_new_proxy_and_clean_stale(tmp_path, make_media, watchers, run_cli):
    old, rec, cache_dir = tmp_path / "old", tmp_path / "rec", tmp_path / "cache"
    old.mkdir()
    rec.mkdir()
    cache = ProxyCache(cache_dir)
    sources = []
    for i, used_ago in enumerate((400, 300, 200, 100)):
        src = old / f"s{i}.mp4"
        shutil.copy(make_media("budget.mp4", frames=30), src)
        sources.append(src)
        m = cache.ensure(src).with_suffix(".json")
        t = time.time()
        os.utime(m, (t - used_ago, t - 1000))  # last used `used_ago` s ago, made 1000 s ago
    # Looking is not using: listing and lookups leave "last used" alone (relatime
    # would otherwise stamp the first plain read of each manifest).
    manifests = sorted(cache_dir.rglob("*.json"))
    before = [m.stat().st_atime_ns for m in manifests]
    assert all(cache.lookup(src) for src in sources) and len(cache.entries()) == 4
    assert run_cli("ls", cache_dir=cache_dir).returncode == 0
    assert [m.stat().st_atime_ns for m in manifests] == before
    with cache.open(sources[0]) as r:  # opening through the cache is a use: s0 becomes the most recent
        r.jpeg(0)
    biggest = max(e.size for e in cache.entries())
    shutil.copy(make_media("budget.mp4", frames=30), rec / "new.mp4")
    set_mtime(rec / "new.mp4", 5)

    result = run_cli("watch", rec, "--once", "--max-size", str(3 * biggest + 1000), cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    kept = {e.source.name for e in cache.entries()}
    assert kept == {"s0.mp4", "s3.mp4", "new.mp4"}, result.stderr
    assert len(re.findall(r"evicted ", result.stderr)) == 2
    assert sum(e.size for e in cache.entries()) <= 3 * biggest + 1000

    listing = json.loads(run_cli("ls", "--json", cache_dir=cache_dir).stdout)
    assert {Path(row["source"]).name: row["state"] for row in listing} == {"s0.mp4": "valid", "s3.mp4": "valid", "new.mp4": "valid"}
    assert all(row["last_used"] and row["size"] > 0 for row in listing)

    sources[3].unlink()  # gone
    with open(sources[0], "ab") as f:  # changed
        f.write(b"\0" * 16)
    cleaned = run_cli("clean", "--stale", cache_dir=cache_dir)
    assert cleaned.returncode == 0 and "removed 2 proxies" in cleaned.stderr, cleaned.stderr
    assert [e.source.name for e in cache.entries()] == ["new.mp4"]
    assert cache.lookup(rec / "new.mp4") is not None


def test_deleted_segments_and_a_vanished_folder_are_reported_not_fatal(tmp_path, make_media, long_source, watchers):
    a, b, cache_dir = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    a.mkdir()
    b.mkdir()
    w = watchers(cache_dir, a, b, "--jobs", "1", "--height", "480")
    queued = make_media("queued.mp4", frames=30)
    shutil.copy(long_source, a / "long.mp4")
    w.wait_for(lambda: any(p.name.startswith(".long-") for p in temps(cache_dir)), "the long encode to start")
    shutil.copy(queued, a / "queued.mp4")
    w.wait_for(lambda: any("queued.mp4" in p for _, p in w.lines("complete:")), "the short segment to be queued")
    (a / "queued.mp4").unlink()
    w.wait_for(lambda: any("queued.mp4" in p for _, p in w.lines("dropped")), "the queued segment to be dropped")
    (a / "long.mp4").unlink()
    w.wait_for(lambda: any("long.mp4" in p for _, p in w.lines("dropped")), "the encoding segment to be dropped")
    assert temps(cache_dir) == []
    assert ProxyCache(cache_dir).entries() == []

    shutil.rmtree(b)
    w.wait_for(lambda: "folder unavailable" in w.text(), "the vanished folder to be reported")
    b.mkdir()
    shutil.copy(queued, b / "back.mp4")
    w.wait_for(lambda: ProxyCache(cache_dir).lookup(b / "back.mp4", None, TALL) is not None, "a proxy in the folder that came back")
    assert [Path(p).name for _, p in w.lines("encoding")] == ["long.mp4", "back.mp4"], "a dropped segment was encoded"
    rc, took = w.stop(signal.SIGINT)
    assert rc == 0 and took < 5
    assert temps(cache_dir) == []


def test_a_segment_that_changes_while_encoded_gets_no_proxy_of_its_old_content(tmp_path, make_media):
    source = tmp_path / "growing.mp4"
    shutil.copy(make_media("growing.mp4", frames=60), source)
    cache = ProxyCache(tmp_path / "cache")
    appended = False

    def progress(done: int, total: int | None, fps: float) -> None:
        nonlocal appended
        if not appended:  # the recorder writes more while the encode runs
            appended = True
            with open(source, "ab") as f:
                f.write(b"\0" * 4096)

    with pytest.raises(EncodeError, match="changed while its proxy was being made"):
        cache.ensure(source, progress=progress)
    assert appended
    assert cache.lookup(source) is None
    assert temps(tmp_path / "cache") == [] and cache.entries() == []


def test_a_missing_folder_is_bad_input(tmp_path, run_cli):
    result = run_cli("watch", tmp_path / "nowhere", "--once")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"


def test_a_terminal_gets_a_live_status_line(tmp_path, make_media):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(make_media("tty.mp4", frames=30), rec / "seg.mp4")
    set_mtime(rec / "seg.mp4", 60)
    main, child = pty.openpty()
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(tmp_path / "cache"), "TERM": "xterm", "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "scrubproxy", "watch", rec, "--once"], stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the child exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert proc.wait(30) == 0
    text = shown.decode(errors="replace")
    assert re.search(r"queue \d+ · being written \d+ · (idle|encoding seg\.mp4)", text), text


def test_an_encode_reports_its_outcome_as_a_value(tmp_path, make_media):
    from scrubproxy.watch.messages import Done, Failed, Progress
    from scrubproxy.watch.workers import encode_segment

    source, bad = make_media("outcome.mp4", frames=30), tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video " * 500)
    root = str(tmp_path / "cache")
    seen: list[Progress] = []
    done = encode_segment(root, str(source), None, ProxySettings(), seen.append)
    assert isinstance(done, Done) and done.proxy == ProxyCache(root).lookup(source)
    assert all(isinstance(p, Progress) for p in seen)
    assert_frame_exact(ProxyCache(root), source, 30)
    failed = encode_segment(root, str(bad), None, ProxySettings(), seen.append)
    assert failed == Failed(3, bad, failed.reason) and "not a video file" in failed.reason


def _sound_only(path: Path, seconds: float) -> Path:
    """A Matroska file holding only sound (a recorder's separate microphone track)."""
    import numpy as np

    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=48000)
        for i in range(int(seconds * 48000 / 1024)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 1024
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


def test_a_file_that_is_no_recording_is_ignored_once_per_content(tmp_path, make_media, watchers):
    folder, cache_dir = tmp_path / "rec", tmp_path / "cache"
    folder.mkdir()
    w = watchers(cache_dir, folder)
    mic = _sound_only(folder / "mic.mkv", 0.5)
    w.wait_for(lambda: w.lines("ignored"), "the sound-only file to be ignored")
    shutil.copy(make_media("after-mic.mp4", frames=15), folder / "after.mp4")
    w.wait_for(lambda: ProxyCache(cache_dir).lookup(folder / "after.mp4") is not None, "the next segment's proxy")
    time.sleep(4.5)  # more than two folder scans
    assert [p for _, p in w.lines("ignored")] == [f"{mic}: audio only: no video stream"]
    assert [Path(p).name for _, p in w.lines("encoding")] == ["after.mp4"]
    assert not w.lines("skipped") and not w.lines("complete: " + str(mic))
    _sound_only(mic, 1.0)  # new content: judged again
    w.wait_for(lambda: len(w.lines("ignored")) == 2, "the changed file to be ignored again")
    rc, _ = w.stop()
    assert rc == 0
