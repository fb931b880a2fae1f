"""Live: a segment still being recorded is scrubbable, exactly, while it grows.

Every test has a real recorder process write the segment (``scrubproxy.pacer``
copies a pre-encoded recording through FFmpeg's own muxers at a few times real
time, so the file grows in the muxer's bursts and its header is rewritten at
close, or a plain writer appends bytes), and, where it matters, a real follower
process (``ProxyCache.follow``) that the test reads from, kills, or fools.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import pytest

from scrubproxy import ProxyCache
from scrubproxy.probe import probe
from scrubproxy.samples import read_index

FRAMES = 150
SPEED = 3.0  # times real time: 5 s of recording in under 2 s
FORMATS = {
    "matroska": ("mkv", []),
    "mpegts": ("ts", []),
    "fragmented-mp4": ("mp4", ["--format", "mp4", "--option", "movflags=frag_keyframe+empty_moov"]),
}


@pytest.fixture(scope="module")
def recording(make_media) -> Path:
    """What the recorder writes: 150 frames of 30 fps H.264 with B-frames, GOP 30."""
    return make_media("live-source.mkv", frames=FRAMES, gop=30, bframes=2, width=320, height=240)


def record(source: Path, target: Path, fmt: str = "matroska", *extra: str, speed: float = SPEED) -> subprocess.Popen:
    ext_args = FORMATS[fmt][1] or ["--format", fmt]
    return subprocess.Popen([sys.executable, "-m", "scrubproxy.pacer", str(source), str(target), "--speed", str(speed), *ext_args, *extra])


def append_slowly(data: bytes, target: Path, seconds: float) -> subprocess.Popen:
    """A writer that appends ``data`` to ``target`` in 20 chunks over ``seconds``, holding it open."""
    code = textwrap.dedent(
        f"""
        import sys, time
        data = open({str(target) + '.src'!r}, 'rb').read()
        step = max(1, len(data) // 20)
        with open({str(target)!r}, 'wb') as f:
            for i in range(0, len(data), step):
                f.write(data[i:i + step]); f.flush(); time.sleep({seconds} / 20)
        """
    )
    Path(str(target) + ".src").write_bytes(data)
    return subprocess.Popen([sys.executable, "-c", code])


def follow(root: Path, source: Path, session: str = "live") -> subprocess.Popen:
    """A follower in its own process; prints the final proxy's path, or one error line and its exit code."""
    code = textwrap.dedent(
        f"""
        import sys
        from scrubproxy import ProxyCache, ScrubProxyError
        try:
            print(ProxyCache({str(root)!r}).follow({str(source)!r}, {session!r}))
        except ScrubProxyError as exc:
            print(f"error: {{exc.reason}}", file=sys.stderr); sys.exit(exc.exit_code)
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, what: str, timeout: float = 30.0, poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def live_entry(cache: ProxyCache, session: str = "live"):
    return next((e for e in cache.entries(session) if e.state == "live" and (e.frames or 0) > 0), None)


def indices(reader, start: int = 0) -> list[int]:
    return [read_index(reader[k]) for k in range(start, len(reader))]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_segment_is_scrubbable_exactly_while_recorded_and_becomes_an_ordinary_proxy(tmp_path, recording, run_cli, fmt):
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / f"rec.{FORMATS[fmt][0]}"
    recorder = record(recording, target, fmt, speed=1.5)
    wait_for(target.exists, "the recorder to start")
    follower = follow(cache.root, target)
    wait_for(lambda: live_entry(cache), "the first published frames")
    listed = json.loads(run_cli("ls", "--json", "--session", "live", cache_dir=cache.root).stdout)
    assert [(e["state"], e["frames"] > 0) for e in listed] == [("live", True)]
    seen_lengths, bytes_seen = [], {}
    with cache.open(target, "live") as r:
        assert r.live
        checked = 0
        while recorder.poll() is None or r.live:
            n = r.refresh()
            seen_lengths.append(n)
            # Every frame below len(r) is exact, and a frame once visible never changes.
            assert indices(r, checked) == list(range(checked, n))
            assert all(r.index_at(r.time_of(k)) == k for k in range(checked, n))
            bytes_seen.update((k, r.jpeg(k)) for k in range(checked, n))
            checked = n
            time.sleep(0.05)
        assert r.refresh() == FRAMES and not r.live
        live_build = r.frame_map.header.build_id
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert len(set(seen_lengths)) >= 3, f"the proxy should have grown in steps: {seen_lengths}"
    assert recorder.wait() == 0
    # The finished file (its header rewritten at close) is the same recording: no second encode.
    assert probe(target).video.frame_count == FRAMES
    with cache.open(target, "live") as final:
        assert Path(out.strip()) == final.path and not final.live and not final.metadata.partial
        assert final.frame_map.header.build_id == live_build
        assert indices(final) == list(range(FRAMES))
        assert all(final.jpeg(k) == data for k, data in bytes_seen.items())
    assert [e.state for e in cache.entries()] == ["valid"]


def test_a_killed_recorder_leaves_a_partial_proxy_of_every_frame_that_decodes(tmp_path, recording):
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / "rec.mkv"
    writer = append_slowly(recording.read_bytes(), target, 4.0)  # chunks that end mid-cluster, mid-packet
    wait_for(target.exists, "the recorder to start")
    follower = follow(cache.root, target)
    wait_for(lambda: (live_entry(cache) or None) and live_entry(cache).frames >= 30, "some frames")
    writer.send_signal(signal.SIGKILL)  # the file just stops, inside a cluster
    writer.wait()
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    with av.open(str(target)) as c:
        decodable = sum(1 for _ in c.decode(video=0))
    with cache.open(target, "live") as r:
        assert len(r) == decodable and 30 <= decodable < FRAMES
        assert indices(r) == list(range(decodable))
        assert r.metadata.partial and not r.live


@pytest.mark.parametrize("change", ["truncated", "replaced", "deleted"])
def test_a_file_truncated_replaced_or_deleted_while_followed_is_dropped(tmp_path, recording, make_media, change):
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / "rec.mkv"
    recorder = record(recording, target, speed=1.0)
    wait_for(target.exists, "the recorder to start")
    follower = follow(cache.root, target)
    wait_for(lambda: live_entry(cache), "the first published frames")
    recorder.send_signal(signal.SIGKILL)
    recorder.wait()
    if change == "truncated":
        os.truncate(target, target.stat().st_size // 3)
    elif change == "replaced":
        other = tmp_path / "other.mkv"
        other.write_bytes(make_media("live-other.mkv", frames=40, width=320, height=240).read_bytes())
        os.replace(other, target)
    else:
        target.unlink()
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == 3 and change in err, err
    # Nothing of the other file is ever served: the live proxy is gone, nothing is left behind.
    assert cache.entries() == []
    assert not any(p.is_file() for p in (cache.root / "live").glob("*")) if (cache.root / "live").exists() else True
    if change == "replaced":
        with cache.open(target, "live") as r:  # handled again as the file it now is
            assert len(r) == 40 and indices(r) == list(range(40))


def test_a_recorder_that_pauses_with_the_file_open_keeps_its_segment_live(tmp_path, recording):
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / "rec.mkv"
    recorder = record(recording, target, "matroska", "--pause-at", "45", "--pause", "5")
    wait_for(target.exists, "the recorder to start")
    follower = follow(cache.root, target)
    wait_for(lambda: (live_entry(cache) or None) and live_entry(cache).frames >= 25, "the frames before the pause")
    time.sleep(3.0)  # well past the follower's 1 s quiet time: only the open file keeps it going
    assert follower.poll() is None
    assert [e.state for e in cache.entries()] == ["live"]
    assert recorder.wait(30) == 0
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    with cache.open(target, "live") as r:
        assert indices(r) == list(range(FRAMES)) and not r.metadata.partial


def test_a_killed_follower_is_never_taken_for_a_finished_proxy(tmp_path, recording):
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / "rec.mkv"
    recorder = record(recording, target, speed=1.5)
    wait_for(target.exists, "the recorder to start")
    follower = follow(cache.root, target)
    wait_for(lambda: live_entry(cache), "the first published frames")
    follower.send_signal(signal.SIGKILL)
    follower.wait()
    assert [e.state for e in cache.entries()] == ["orphan"]  # its owner is gone: not live, not valid
    assert cache.lookup(target, "live") is None and cache.live_proxy(target, "live") is None
    assert recorder.wait() == 0
    with cache.open(target, "live") as r:  # rebuilt, whole
        assert indices(r) == list(range(FRAMES)) and not r.live
    assert [e.state for e in cache.entries()] == ["valid"]
    assert sorted(p.suffix for p in (cache.root / "live").iterdir()) == [".frames", ".json", ".mkv"]


def test_a_file_that_never_becomes_a_video_is_refused_and_leaves_nothing(tmp_path):
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / "rec.mkv"
    writer = append_slowly(os.urandom(200_000), target, 1.0)
    wait_for(target.exists, "the writer to start")
    follower = follow(cache.root, target)
    _, err = follower.communicate(timeout=60)
    writer.wait()
    assert follower.returncode == 3 and err.count("\n") == 1, err
    assert cache.entries() == []


def test_a_picture_size_change_while_recorded_keeps_every_frame_at_one_size(tmp_path, make_media):
    first = make_media("live-resize-a.ts", frames=30, width=320, height=240, gop=10, bframes=2)
    second = make_media("live-resize-b.ts", frames=30, width=640, height=360, gop=10, bframes=2, start_time=1.0, first_index=30)
    cache = ProxyCache(tmp_path / "cache")
    target = tmp_path / "rec.ts"
    writer = append_slowly(first.read_bytes() + second.read_bytes(), target, 1.5)
    wait_for(target.exists, "the writer to start")
    follower = follow(cache.root, target)
    out, err = follower.communicate(timeout=60)
    assert writer.wait() == 0 and follower.returncode == 0, err
    with cache.open(target, "live") as r:
        assert indices(r) == list(range(60))
        assert {r[k].shape for k in range(len(r))} == {(240, 320, 3)}


def test_proxy_of_a_file_still_written_follows_it_to_its_end_or_takes_a_partial_snapshot(tmp_path, recording, run_cli):
    root = tmp_path / "cache"
    target = tmp_path / "rec.mkv"
    recorder = record(recording, target, speed=1.0)
    wait_for(lambda: target.exists() and target.stat().st_size > 20_000, "some of the recording")
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(root)}
    whole = subprocess.Popen([sys.executable, "-m", "scrubproxy", "proxy", str(target), "--session", "whole"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    snapshot = run_cli("proxy", target, "--no-follow", "--session", "snap", cache_dir=root)
    assert snapshot.returncode == 0, snapshot.stderr
    [entry] = json.loads(run_cli("ls", "--json", "--session", "snap", cache_dir=root).stdout)
    assert entry["partial"] and entry["frames"] < FRAMES
    out, err = whole.communicate(timeout=60)
    assert recorder.wait() == 0
    assert whole.returncode == 0, err
    assert "still being recorded" in err
    cache = ProxyCache(root)
    with cache.open(target, "whole") as r:
        assert Path(out.strip()) == r.path
        assert indices(r) == list(range(FRAMES)) and not r.metadata.partial
    # The snapshot was of a file that has grown since: it is never taken for the whole recording.
    assert cache.lookup(target, "snap") is None
    assert "missing or stale" in run_cli("info", target, "--session", "snap", cache_dir=root).stdout
