"""The watcher follows segments while they are recorded: real recorder processes
(``scrubproxy.pacer`` at 2-3x real time, or a plain writer appending bytes), a
real ``scrubproxy watch`` (or ``SegmentWatcher`` in this process where its
status is read), real follow children, killed and fooled for real."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import av
import pytest
from test_live import FRAMES, append_slowly, indices, live_entry, record, wait_for
from test_watch import watchers  # noqa: F401  (a fixture)

from scrubproxy import ProxyCache
from scrubproxy.cli.watch import _status_line
from scrubproxy.watch import SegmentWatcher

SESSION = "rec"


@pytest.fixture(scope="module")
def recording(make_media) -> Path:
    """What the recorder writes: 150 frames of 30 fps H.264 with B-frames, GOP 30."""
    return make_media("live-source.mkv", frames=FRAMES, gop=30, bframes=2, width=320, height=240)


def decodable(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def final_proxy(cache: ProxyCache, source: Path):
    return wait_for(lambda: cache.lookup(source, SESSION), f"the proxy of {source.name}")


def test_a_segment_is_followed_from_its_first_frames_and_finished_as_the_same_build(tmp_path, recording, make_media):
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    done = folder / "done.mkv"
    shutil.copy(make_media("live-done.mkv", frames=30), done)  # complete at start, with a recent mtime
    watcher = SegmentWatcher([folder], cache, session=SESSION, settle=1.0, jobs=1)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        target = folder / "seg.mkv"
        recorder = record(recording, target, speed=2.5)
        statuses, checked, live_build = [], 0, None
        while recorder.poll() is None or cache.lookup(target, SESSION) is None:
            statuses.append(watcher.status())
            entry = live_entry(cache, SESSION)
            if entry is not None and live_build is None:
                with cache.open(target, SESSION) as r:
                    assert r.live
                    live_build = r.frame_map.header.build_id
                    checked = len(r)
                    assert indices(r) == list(range(checked))  # exact while it grows
            time.sleep(0.03)
            assert thread.is_alive()
        assert recorder.wait() == 0
    finally:
        watcher.stop()
        thread.join(15)
    # A file already complete at start is never shown as being written; the recording is, with its frames.
    assert all(s.writing <= 1 and "done.mkv" not in str(s.recording) + str(s.following) for s in statuses)
    frames_seen = [n for s in statuses for name, n in s.following if name == "seg.mkv"]
    assert len(set(frames_seen)) >= 3 and max(frames_seen) > 0 and frames_seen == sorted(frames_seen), frames_seen
    shown = next(s for s in statuses if any(n > 0 for _, n in s.following))
    assert f"following seg.mkv {shown.following[0][1]} frames" in str(_status_line(shown))
    # The header rewritten at close is the same recording: one build, no second encode.
    with cache.open(target, SESSION) as r:
        assert live_build is not None and r.frame_map.header.build_id == live_build
        assert indices(r) == list(range(FRAMES)) and not r.metadata.partial and not r.live
    with cache.open(done, SESSION) as r:
        assert indices(r) == list(range(30))
    assert sorted(e.state for e in cache.entries()) == ["valid", "valid"]


def test_a_recorder_killed_mid_segment_leaves_a_partial_proxy_of_every_frame_that_decodes(tmp_path, recording, watchers):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION)
    target = folder / "seg.mkv"
    writer = append_slowly(recording.read_bytes(), target, 3.0)  # chunks that end mid-cluster, mid-packet
    wait_for(lambda: (live_entry(cache, SESSION) or None) and live_entry(cache, SESSION).frames >= 30, "some frames followed")
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    proxy = final_proxy(cache, target)
    n = decodable(target)
    with cache.open(target, SESSION) as r:
        assert r.path == proxy and len(r) == n and 30 <= n < FRAMES
        assert indices(r) == list(range(n)) and r.metadata.partial
    assert [p for _, p in w.lines("following")] == [f"{target} while it is recorded"] and not w.lines("encoding")


def test_a_watcher_killed_while_following_leaves_no_proxy_taken_for_finished_and_rebuilds_after_restart(tmp_path, recording, watchers):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION)
    target = folder / "seg.mkv"
    recorder = record(recording, target, speed=2.0)
    wait_for(lambda: live_entry(cache, SESSION), "the first frames followed")
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait()
    # The follow child dies with the watcher; what it left is never valid, never live.
    wait_for(lambda: [e.state for e in cache.entries()] in ([], ["orphan"]), "the follower to die")
    assert cache.lookup(target, SESSION) is None and cache.live_proxy(target, SESSION) is None
    assert recorder.poll() is None, "the recorder should still be writing"
    w2 = watchers(cache.root, folder, "--session", SESSION)
    assert recorder.wait() == 0
    final_proxy(cache, target)
    with cache.open(target, SESSION) as r:  # followed again from its first frame: exact, whole
        assert indices(r) == list(range(FRAMES)) and not r.metadata.partial
    assert [e.state for e in cache.entries()] == ["valid"]
    assert w2.lines("following")


@pytest.mark.parametrize("change", ["truncated", "replaced", "deleted"])
def test_a_followed_file_truncated_replaced_or_deleted_is_dropped_and_handled_again(tmp_path, recording, make_media, watchers, change):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION)
    target = folder / "seg.mkv"
    recorder = record(recording, target, speed=1.0)
    wait_for(lambda: live_entry(cache, SESSION), "the first frames followed")
    live_build = ProxyCache(cache.root).open(target, SESSION).frame_map.header.build_id
    recorder.send_signal(signal.SIGKILL)
    recorder.wait()
    if change == "truncated":
        with open(target, "r+b") as f:  # a program that truncates opens (and closes) the file
            f.truncate(target.stat().st_size // 3)
    elif change == "replaced":
        other = folder / ".other.mkv"  # renamed over it from the same folder (a hidden name is not a segment)
        shutil.copy(make_media("live-other.mkv", frames=40, width=320, height=240), other)
        os.replace(other, target)
    else:
        target.unlink()
    w.wait_for(lambda: w.lines("dropped"), "the live proxy to be dropped")
    if change == "deleted":
        time.sleep(1.5)
        assert cache.entries() == []
        return
    final_proxy(cache, target)  # handled again, as the file it now is, once complete
    with cache.open(target, SESSION) as r:
        assert r.frame_map.header.build_id != live_build and not r.live
        n = 40 if change == "replaced" else decodable(target)
        assert len(r) == n and indices(r) == list(range(n))  # never a frame of the other content
    assert [e.state for e in cache.entries()] == ["valid"]


def test_a_recorder_that_pauses_longer_than_the_settle_time_keeps_its_segment_live(tmp_path, recording, watchers):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION)  # --settle 1, quiet 0.5 s
    target = folder / "seg.mkv"
    recorder = record(recording, target, "matroska", "--pause-at", "45", "--pause", "3.5", speed=3.0)
    wait_for(lambda: (live_entry(cache, SESSION) or None) and live_entry(cache, SESSION).frames >= 25, "the frames before the pause")
    time.sleep(2.5)  # inside the pause, more than twice --settle
    assert recorder.poll() is None
    assert [e.state for e in cache.entries()] == ["live"] and not w.lines("complete") and not w.lines("proxy ready")
    assert recorder.wait() == 0
    final_proxy(cache, target)
    with cache.open(target, SESSION) as r:
        assert indices(r) == list(range(FRAMES)) and not r.metadata.partial


def test_a_file_that_never_becomes_a_video_is_one_log_line_and_the_watcher_goes_on(tmp_path, make_media, watchers):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION)
    target = folder / "junk.mkv"
    # A Matroska signature (so it is followed), then noise.
    append_slowly(b"\x1a\x45\xdf\xa3" + os.urandom(300_000), target, 1.0).wait()
    w.wait_for(lambda: w.lines("skipped"), "the junk to be skipped")
    after = folder / "after.mkv"
    shutil.copy(make_media("live-after.mkv", frames=20), after)
    final_proxy(cache, after)
    time.sleep(2.5)  # more than a folder scan: nothing more about the junk
    problems = [line for line in w.text().splitlines() if str(target) in line and (" WARNING " in line or " ERROR " in line)]
    assert len(problems) == 1 and "skipped" in problems[0], w.text()
    assert cache.lookup(target, SESSION) is None and [e.state for e in cache.entries()] == ["valid"]


def test_a_picture_size_change_mid_segment_keeps_every_frame_exact_at_one_size(tmp_path, make_media, watchers):  # noqa: F811
    first = make_media("live-resize-a.ts", frames=30, width=320, height=240, gop=10, bframes=2)
    second = make_media("live-resize-b.ts", frames=30, width=640, height=360, gop=10, bframes=2, start_time=1.0, first_index=30)
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION)
    target = folder / "seg.ts"
    assert append_slowly(first.read_bytes() + second.read_bytes(), target, 1.5).wait() == 0
    final_proxy(cache, target)
    with cache.open(target, SESSION) as r:
        assert indices(r) == list(range(60)) and {r[k].shape for k in range(len(r))} == {(240, 320, 3)}
    assert w.lines("following") and not w.lines("encoding")


def test_a_watcher_started_while_a_segment_is_half_written_follows_it_from_its_start(tmp_path, recording, watchers):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    target = folder / "seg.mkv"
    recorder = record(recording, target, speed=2.0)
    wait_for(lambda: target.exists() and target.stat().st_size > recording.stat().st_size // 3, "a third of the recording")
    w = watchers(cache.root, folder, "--session", SESSION)
    wait_for(lambda: live_entry(cache, SESSION), "the first frames followed")
    with cache.open(target, SESSION) as r:
        assert r.live and indices(r) == list(range(len(r)))  # from frame 0
    assert recorder.wait() == 0
    final_proxy(cache, target)
    with cache.open(target, SESSION) as r:
        assert indices(r) == list(range(FRAMES)) and not r.metadata.partial
    assert not w.lines("encoding")


def test_no_follow_proxies_a_segment_only_once_complete(tmp_path, recording, watchers):  # noqa: F811
    folder, cache = tmp_path / "rec", ProxyCache(tmp_path / "cache")
    folder.mkdir()
    w = watchers(cache.root, folder, "--session", SESSION, "--no-follow")
    target = folder / "seg.mkv"
    recorder = record(recording, target, speed=3.0)
    while recorder.poll() is None:
        assert live_entry(cache, SESSION) is None and (not target.exists() or cache.lookup(target, SESSION) is None)
        time.sleep(0.05)
    final_proxy(cache, target)
    with cache.open(target, SESSION) as r:
        assert indices(r) == list(range(FRAMES))
    assert not w.lines("following") and [p for _, p in w.lines("encoding")] == [str(target)]
