"""Player: the real mpv binary, headless, over its real IPC socket, on media whose frames carry their index.

What mpv shows is read back from its own screenshots of the video frame
(``screenshot-to-file ... video``), never from what the Player believes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_live import follow, live_entry, record, wait_for  # the real recorder and follower

from scrubproxy import BadInputError, Player, PlayerError, ProxyCache, ScrubProxyError
from scrubproxy.player import lua_script, session_segments
from scrubproxy.player.mpvipc import MpvProcess
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import read_index, vfr_times

# In CI these tests must run: a missing mpv there is a failure, not a skip.
pytestmark = pytest.mark.skipif(shutil.which("mpv") is None and os.environ.get("CI") != "true", reason="mpv not installed (Debian: apt-get install mpv)")


def shown(player: Player, folder: Path) -> int:
    """The index painted in the video frame mpv shows now."""
    path = player.screenshot(folder / "shot.jpg")
    with Image.open(path) as img:
        return read_index(np.asarray(img.convert("RGB")))


def mpv_children() -> list[int]:
    """Pids of mpv processes whose parent is this test process (zombies included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm == "mpv":
            pids.append(int(entry.name))
    return pids


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def late_source(make_media) -> Path:
    """Variable-rate MKV with audio whose video starts 0.5 s after the container's start."""
    times = vfr_times()
    return make_media("late.mkv", frames=len(times), times=times, start_time=0.5, audio=True)


def check_random_seeks(player: Player, folder: Path, count: int, seed: int, extra: list[int] = ()) -> None:
    rng = np.random.default_rng(seed)
    targets = list(extra) + rng.integers(0, len(player), count).tolist()
    wrong = []
    for g in targets:
        player.seek_frame(g)
        seg, k = player.timeline.locate(g)
        got = shown(player, folder)
        if got != k or player.frame() != g:
            wrong.append((g, seg.name, k, got, player.frame()))
    assert not wrong, f"{len(wrong)} of {len(targets)} seeks showed another frame: {wrong[:5]}"
    # the random walk went both ways
    steps = np.diff(targets)
    assert (steps > 0).any() and (steps < 0).any()


def test_seek_frame_is_exact_on_a_constant_rate_proxy(cfr_source, cache, tmp_path):
    with Player(cfr_source, cache=cache, headless=True) as p:
        assert p.segments[0].proxy.suffix == ".mkv"
        check_random_seeks(p, tmp_path, 100, seed=1, extra=[len(p) - 1, 0])


def test_seek_frame_is_exact_on_a_variable_rate_proxy(vfr_source, cache, tmp_path):
    with Player(vfr_source, cache=cache, headless=True) as p:
        assert p.segments[0].proxy.suffix == ".mkv"
        check_random_seeks(p, tmp_path, 100, seed=2, extra=[len(p) - 1, 0, 1])


def test_seek_frame_is_exact_where_the_video_starts_late(late_source, cache, tmp_path):
    with Player(late_source, cache=cache, headless=True) as p:
        assert abs(p.mpv_timeline.parts[0].start - 0.5) < 1e-3  # the proxy's own clock starts at its first frame
        check_random_seeks(p, tmp_path, 40, seed=3, extra=[0, len(p) - 1, 1])


def test_a_session_plays_as_one_timeline_with_exact_joins(session_sources, cache, tmp_path):
    with Player(session_sources, session="monday", cache=cache, headless=True) as p:
        assert [s.frames for s in p.segments] == [20, 20, 20] and len(p) == 60
        ends = [g for s in p.segments for g in (s.first, s.first + s.frames - 1)]
        check_random_seeks(p, tmp_path, 100, seed=4, extra=ends + ends[::-1])
        # no gap and no overlap: each part starts where the previous one ends
        parts = p.mpv_timeline.parts
        for a, b in zip(parts, parts[1:]):
            assert b.offset == a.offset + a.length
        assert abs(p.command("get_property", "duration") - p.mpv_timeline.duration) < 1e-3


def test_a_session_mixing_constant_and_variable_rate_segments_is_exact(session_sources, late_source, vfr_source, tmp_path):
    sources = [session_sources[0], late_source, session_sources[1], vfr_source]
    cache = ProxyCache(tmp_path / "odd, name; 100% [x]")  # EDL separators in the proxies' paths
    with Player(sources, cache=cache, headless=True) as p:
        assert {s.proxy.suffix for s in p.segments} == {".mkv"}
        ends = [g for s in p.segments for g in (s.first, s.first + s.frames - 1)]
        check_random_seeks(p, tmp_path, 60, seed=5, extra=ends)


def test_seek_time_shows_the_frame_on_screen_at_that_source_time(vfr_source, session_sources, cache, tmp_path):
    with ProxyReader(cache.ensure(vfr_source)) as r:
        times = r.frame_map.times.copy()
    with Player(vfr_source, cache=cache, headless=True) as p:
        rng = np.random.default_rng(6)
        picks = rng.integers(0, len(times) - 1, 25)
        cases = [(times[k], k) for k in picks]  # exactly on a frame's time
        cases += [((times[k] + times[k + 1]) / 2, k) for k in picks]  # inside frame k
        cases += [(times[k + 1] - 1e-4, k) for k in picks]  # just before the next frame
        cases += [(-1.0, 0), (times[-1] + 10, len(times) - 1)]
        for t, k in cases:
            assert p.seek_time(t) == k
            assert shown(p, tmp_path) == k, f"seek_time({t}) should show frame {k}"
    with Player(session_sources, cache=cache, headless=True) as p:
        for g in (0, 19, 20, 39, 40, 59, 33):
            t = p.timeline.time_of(g)
            _, k = p.timeline.locate(g)
            assert p.seek_time(t + 0.01) == g
            assert shown(p, tmp_path) == k


def test_step_moves_by_frames_both_ways_and_stops_at_the_ends(session_sources, cache, tmp_path):
    with Player(session_sources, cache=cache, headless=True) as p:
        p.seek_frame(17)
        for expected in (18, 19, 20, 21):  # across the join between segments 0 and 1
            assert p.step(1) == expected
            assert shown(p, tmp_path) == p.timeline.locate(expected)[1]
        assert p.step(-3) == 18 and shown(p, tmp_path) == 18
        assert p.step(-100) == 0 and shown(p, tmp_path) == 0
        assert p.step(1000) == 59 and shown(p, tmp_path) == 19


def test_frame_out_of_range_is_refused_and_the_player_keeps_working(cfr_source, cache, tmp_path):
    with Player(cfr_source, cache=cache, headless=True) as p:
        p.seek_frame(5)
        for bad in (len(p), -1, 10**9):
            with pytest.raises(IndexError, match="out of range"):
                p.seek_frame(bad)
        with pytest.raises(TypeError):
            p.seek_frame(2.5)
        assert p.frame() == 5 and shown(p, tmp_path) == 5


def test_a_source_that_cannot_be_proxied_fails_before_mpv_starts(tmp_path, cache):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(ScrubProxyError) as info:
        Player(bad, cache=cache, headless=True)
    assert info.value.path is not None and info.value.path.name == "notes.mp4"
    assert not mpv_children()
    with pytest.raises(BadInputError):
        Player(tmp_path / "missing.mp4", cache=cache, headless=True)
    assert not mpv_children()


def test_missing_mpv_says_how_to_install_it_and_encodes_nothing(cfr_source, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    cache = ProxyCache(tmp_path / "cache")
    with pytest.raises(PlayerError, match="apt-get install mpv"):
        Player(cfr_source, cache=cache, headless=True)
    assert cache.entries() == []


def test_an_existing_socket_path_is_refused_and_left_alone(cfr_source, cache, tmp_path):
    taken = tmp_path / "mpv.sock"
    taken.write_text("someone else's")
    with pytest.raises(BadInputError, match="already exists"):
        Player(cfr_source, cache=cache, headless=True, socket_path=taken)
    assert taken.read_text() == "someone else's"
    assert not mpv_children()


def test_mpv_killed_mid_session_gives_a_clear_error_not_a_hang(cfr_source, cache):
    p = Player(cfr_source, cache=cache, headless=True, timeout=5)
    p.seek_frame(3)
    os.kill(p.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(PlayerError, match="killed by SIGKILL"):
        p.seek_frame(10)
    assert time.monotonic() - started < 3
    with pytest.raises(PlayerError):
        p.frame()
    p.close()
    assert not mpv_children()


def test_mpv_that_stops_answering_is_stopped_after_the_timeout(cfr_source, cache):
    p = Player(cfr_source, cache=cache, headless=True, timeout=1)
    pid = p.pid
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(PlayerError, match="did not answer"):
        p.seek_frame(10)
    assert time.monotonic() - started < 5
    assert gone(pid)
    p.close()


def test_no_mpv_outlives_its_player(cfr_source, cache):
    with Player(cfr_source, cache=cache, headless=True) as p:
        pid, folder = p.pid, Path(p._res.folder)
        assert folder.exists() and not gone(pid)
    assert gone(pid) and not folder.exists()
    with pytest.raises(PlayerError, match="closed"):
        p.frame()
    p = Player(cfr_source, cache=cache, headless=True)
    pid = p.pid
    del p
    gc.collect()
    assert gone(pid)
    assert not mpv_children()


def test_the_original_opens_at_the_exact_frame_through_mpvs_own_start_time(late_source, cfr_source, cache, tmp_path):
    """The ``o`` key's viewer: mpv on the source, landing on the frame the proxy showed."""
    for source, picks in ((late_source, (0, 1, 37, 109)), (cfr_source, (0, 29, 58))):
        with ProxyReader(cache.ensure(source)) as r:
            pts = r.frame_map.source_pts * float(r.frame_map.header.source_time_base)
        for k in picks:
            sock = tmp_path / f"orig-{source.stem}-{k}.sock"
            proc = MpvProcess(
                ["--no-config", "--vo=null", "--ao=null", "--pause", "--hr-seek=yes", f"--script={lua_script()}",
                 f"--script-opts=scrubproxy-goto={pts[k]:.9f}", "--", str(source)],
                sock,
                tmp_path / "orig.log",
            )
            try:
                client = proc.connect(10)
                client.wait_event("file-loaded")
                start = client.get("demuxer-start-time") or 0.0
                deadline = time.monotonic() + 10
                got = None
                while got is None:
                    assert time.monotonic() < deadline, "the original never reached the frame"
                    time.sleep(0.02)
                    if abs((client.get("time-pos") or 0.0) - (pts[k] - start)) > 1e-3:
                        continue
                    try:  # refused until the first frame is on screen
                        client.command("screenshot-to-file", str(tmp_path / "orig.jpg"), "video")
                    except PlayerError:
                        continue
                    with Image.open(tmp_path / "orig.jpg") as img:
                        got = read_index(np.asarray(img.convert("RGB")))
                assert got == k, f"{source.name} frame {k}"
            finally:
                proc.stop()


def press(player: Player, key: str) -> int:
    """Press ``key`` in mpv (the Lua script's bindings seek) and wait for the frame to be on screen."""
    mpv = player._mpv
    mpv.clear_events()
    mpv.command("keypress", key)
    mpv.wait_event("playback-restart")
    return player.frame()


def test_keys_step_by_frame_and_by_source_seconds_across_segments(session_sources, vfr_source, cache, tmp_path):
    with Player([session_sources[0], vfr_source], cache=cache, headless=True) as p:
        one_second_on = p.timeline.index_at(p.timeline.time_of(0) + 1)
        assert one_second_on > 20  # lands inside the second segment
        assert press(p, "Shift+RIGHT") == one_second_on  # the page's keys: shift+arrow a second, arrow a frame
        assert shown(p, tmp_path) == p.timeline.locate(one_second_on)[1]
        assert press(p, ".") == one_second_on + 1
        assert press(p, "LEFT") == one_second_on
        assert press(p, "UP") == len(p) - 1  # +10 s runs past the end: the last frame
        assert press(p, "DOWN") == 0
        log = (p._res.folder / "mpv.log").read_text()
        assert "scrubproxy" not in log and "Lua" not in log, log


def _mpv_child_socket(parent: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in Path("/proc").iterdir():
            if not pid.name.isdigit():
                continue
            try:
                stat = (pid / "stat").read_text()
                args = (pid / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent and stat.split("(")[1].startswith("mpv"):
                for a in args:
                    if a.startswith(b"--input-ipc-server="):
                        path = a.split(b"=", 1)[1].decode()
                        if os.path.exists(path):
                            return path
        time.sleep(0.05)
    raise AssertionError("scrubproxy play started no mpv")


def wait_for_keys_line(proc) -> None:
    """``scrubproxy play`` prints its key help once the Player is up (mpv shows the first frame)."""
    for line in proc.stderr:
        if line.startswith("keys:"):
            return
    raise AssertionError(f"scrubproxy play ended before mpv was up (exit {proc.wait()})")


def connect_to_played_mpv(proc):
    """Once ``scrubproxy play`` (child ``proc``) is up, a function sending one
    command to its mpv over mpv's own socket and returning the reply."""
    wait_for_keys_line(proc)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(_mpv_child_socket(proc.pid))
    sock.settimeout(10)
    reader = sock.makefile("rb")

    def ask(*command):
        sock.sendall(json.dumps({"command": list(command), "request_id": 1}).encode() + b"\n")
        while True:
            msg = json.loads(reader.readline())
            if msg.get("request_id") == 1:
                return msg

    return ask


@contextlib.contextmanager
def played(cmd: list[str], env: dict):
    """Run ``scrubproxy play`` (``cmd``) as a child; yield (process, ask-its-mpv). Killed if still running after."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, connect_to_played_mpv(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def mpv_property(ask, name: str, timeout: float = 10):
    """The value of mpv property ``name`` once it exists (mpv is still loading the file until then)."""
    deadline = time.monotonic() + timeout
    while (reply := ask("get_property", name)).get("error") != "success":
        assert time.monotonic() < deadline, f"mpv never had {name}"
        time.sleep(0.05)
    return reply["data"]


def test_cli_play_opens_the_session_as_one_timeline_and_exits_with_mpv(session_sources, tmp_path):
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "scrubproxy", "play", *map(str, session_sources), "--session", "cli", "--mpv-arg=--vo=null", "--mpv-arg=--ao=null"]
    with played(cmd, env) as (proc, ask):
        assert abs(mpv_property(ask, "duration") - 2.0) < 0.01  # 3 x 20 frames at 30 fps
        assert ask("get_property", "pause")["data"] is True
        assert ask("get_property", "hr-seek")["data"] in (True, "yes")
        ask("quit")
        assert proc.wait(10) == 0
    # then the whole session by its name alone: its segments in recording order
    with played(cmd[:4] + ["--session", "cli", "--mpv-arg=--vo=null"], env) as (proc, ask):
        edl = mpv_property(ask, "playlist/0/filename")
        assert [edl.index(s.stem) for s in session_sources] == sorted(edl.index(s.stem) for s in session_sources)
        ask("quit")
        assert proc.wait(10) == 0
    assert subprocess.run([sys.executable, "-m", "scrubproxy", "play", "--session", "nothing-here", "--quiet"], env=env, capture_output=True, timeout=60).returncode == 2


def test_cli_play_refuses_a_bad_source_before_starting_mpv(run_cli, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    result = run_cli("play", bad, "--quiet")
    assert result.returncode == 3
    assert result.stderr.startswith("error: ") and "notes.mp4" in result.stderr
    assert run_cli("play", "--quiet").returncode == 2


@pytest.mark.parametrize("ending", ["exit without close", "SIGKILL"])
def test_no_mpv_outlives_the_process_that_started_it(cfr_source, tmp_path, ending):
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from scrubproxy import Player, ProxyCache\n"
        f"p = Player({str(cfr_source)!r}, cache=ProxyCache({str(tmp_path / 'cache')!r}), headless=True)\n"
        "print(p.pid, flush=True)\n"
        f"time.sleep({0 if ending == 'exit without close' else 60})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(child.stdout.readline())
        if ending == "SIGKILL":
            child.kill()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    deadline = time.monotonic() + 5

    def dead() -> bool:  # gone, or a zombie waiting for init to reap it
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    while not dead():
        assert time.monotonic() < deadline, f"mpv {pid} outlived its Python process ({ending})"
        time.sleep(0.05)


def test_a_session_encodes_each_proxy_once_and_a_lone_segment_reuses_it(session_sources, cache):
    with Player(session_sources, cache=cache, headless=True) as p:
        proxies = [s.proxy for s in p.segments]
    assert [q.suffix for q in proxies] == [".mkv"] * 3
    entries = cache.entries()
    assert len(entries) == 3 and all(e.state == "valid" for e in entries)
    stamp = proxies[0].stat().st_mtime_ns
    with Player(session_sources[0], cache=cache, headless=True) as p:
        assert p.segments[0].proxy == proxies[0]  # no re-encode just to play it alone
    assert proxies[0].stat().st_mtime_ns == stamp


@pytest.fixture(scope="module")
def tone_session(make_media) -> list[Path]:
    """Three 1 s segments: a 440 Hz tone, no audio track at all, an 880 Hz tone."""
    return [
        make_media("tone-0.mp4", frames=30, gop=10, bframes=1, audio=True, tone=440),
        make_media("tone-1.mp4", frames=30, gop=10, bframes=1),
        make_media("tone-2.mp4", frames=30, gop=10, bframes=1, audio=True, tone=880),
    ]


def pcm_samples(path: Path) -> np.ndarray:
    """The s16 mono samples mpv's pcm output wrote (the bytes after the WAV 'data' header)."""
    data = path.read_bytes() if path.exists() else b""
    at = data.find(b"data")
    return np.frombuffer(data[at + 8 :] if at >= 0 else b"", "<i2")


def dominant_hz(samples: np.ndarray, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(spectrum.argmax())])


def test_sound_plays_in_sync_with_its_own_segment_and_never_while_scrubbing(tone_session, cache, tmp_path):
    wav = tmp_path / "heard.wav"
    pcm = ["--ao=pcm", f"--ao-pcm-file={wav}", "--audio-format=s16", "--audio-channels=mono", "--audio-samplerate=48000"]
    with Player(tone_session, cache=cache, headless=True, mpv_args=pcm) as p:
        assert p.command("get_property", "current-tracks/audio")["selected"]
        check_random_seeks(p, tmp_path, 30, seed=7, extra=[29, 30, 59, 60, 89])  # sound on: still exact
        for n in (1, 1, -1, 5, -3):
            p.step(n)
        time.sleep(0.3)
        assert p.command("get_property", "pause") is True
        assert len(pcm_samples(wav)) == 0, "seeking and stepping made sound"
        p.seek_frame(0)
        p.command("set_property", "pause", False)
        deadline = time.monotonic() + 20
        while not p.command("get_property", "eof-reached"):
            assert time.monotonic() < deadline, "the timeline never finished playing"
            time.sleep(0.05)
    heard = pcm_samples(wav).astype(np.float64) / 32768
    assert len(heard) >= int(2.9 * 48000), len(heard)
    first, middle, last = (heard[int(a * 48000) : int(b * 48000)] for a, b in ((0.1, 0.9), (1.1, 1.9), (2.1, 2.9)))
    assert abs(dominant_hz(first) - 440) < 5 and abs(dominant_hz(last) - 880) < 5
    assert np.sqrt(np.mean(middle**2)) < 1e-3 < np.sqrt(np.mean(last**2))  # silence where the source has none


def test_sound_stays_in_sync_across_joins_while_playing(tone_session, cache):
    with Player(tone_session, cache=cache, headless=True) as p:  # --ao=null keeps real time
        p.seek_frame(15)
        p.command("set_property", "pause", False)
        drift = []
        deadline = time.monotonic() + 10
        while (p.command("get_property", "time-pos") or 0) < 2.8 and time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(PlayerError):  # not there for a moment at a join
                drift.append(abs(p.command("get_property", "avsync")))
        assert len(drift) > 10 and max(drift) < 0.1, drift


def test_sources_without_sound_play_without_an_audio_stream(session_sources, cache):
    with Player(session_sources, cache=cache, headless=True) as p:
        assert not p.mpv_timeline.has_audio and "!new_stream" not in p.mpv_timeline.edl()
        assert [t["type"] for t in p.command("get_property", "track-list")] == ["video"]


def test_a_session_plays_while_recorded_exactly_up_to_its_newest_frame_and_end_reaches_the_new_one(make_media, tmp_path):
    """A real recorder writes seg-2 while a real follower publishes its frames;
    the Player (and ``scrubproxy play --session``) play it up to its newest
    published frame, and reload / End reach the frames and segments published since."""
    root = tmp_path / "cache"
    cache = ProxyCache(root)
    seg1 = Path(shutil.copy(make_media("live-seg-1.mkv", frames=30, gop=10, bframes=2, width=320, height=240), tmp_path / "seg-1.mkv"))
    cache.ensure(seg1, "live")
    target = tmp_path / "seg-2.mkv"
    recorder = record(make_media("live-source.mkv", frames=150, gop=30, bframes=2, width=320, height=240), target, "matroska", "--pause-at", "75", "--pause", "4", speed=1.5)
    follower = None
    try:
        wait_for(target.exists, "the recorder to start")
        follower = follow(root, target)
        wait_for(lambda: (e := live_entry(cache)) and e.frames >= 10, "the first published frames")
        with Player(session_segments(cache, "live"), "live", cache, headless=True, watch_session=True) as p:
            n1 = len(p) - 30
            assert [s.name for s in p.segments] == ["seg-1.mkv", "seg-2.mkv"] and p.growing and n1 < 150
            p.seek_frame(len(p) - 1)  # the newest published frame, exactly
            assert shown(p, tmp_path) == n1 - 1 and p.frame() == len(p) - 1
            for g in (0, 29, 30, 30 + n1 // 2):
                p.seek_frame(g)
                assert shown(p, tmp_path) == p.timeline.locate(g)[1]
            p.seek_frame(35)
            wait_for(lambda: live_entry(cache).frames > n1 + 5, "more frames")
            assert p.reload() > 30 + n1 + 5
            assert p.frame() == 35 and shown(p, tmp_path) == 5  # reloaded at the frame shown
            edge = p.live_edge()
            assert edge == len(p) - 1 and p.frame() == edge and shown(p, tmp_path) == edge - 30
            for g in (29, 30, 30 + n1 - 1):  # reachable before: the same numbers
                p.seek_frame(g)
                assert shown(p, tmp_path) == (29 if g == 29 else g - 30)

            # The CLI while recording: End reloads (the finished seg-2 and a new seg-3) and shows the newest frame.
            env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(root)}
            cmd = [sys.executable, "-m", "scrubproxy", "play", "--session", "live", "--mpv-arg=--vo=null", "--mpv-arg=--ao=null"]
            with played(cmd, env) as (proc, ask):
                first_duration = mpv_property(ask, "duration")
                _, err = follower.communicate(timeout=60)
                assert follower.returncode == 0, err
                seg3 = Path(shutil.copy(make_media("live-seg-3.mkv", frames=10, first_index=500, width=320, height=240), tmp_path / "seg-3.mkv"))
                cache.ensure(seg3, "live")
                ask("keypress", "END")

                def newest_shown() -> bool:
                    if ask("get_property", "duration").get("data", 0) <= first_duration:
                        return False
                    if ask("screenshot-to-file", str(tmp_path / "cli.jpg"), "video").get("error") != "success":
                        return False
                    with Image.open(tmp_path / "cli.jpg") as img:
                        return read_index(np.asarray(img.convert("RGB"))) == 509

                wait_for(newest_shown, "End to show seg-3's last frame", timeout=20, poll=0.1)
                ask("quit")
                assert proc.wait(10) == 0

            # The API's reload: seg-2 whole, seg-3 after it, every earlier frame where it was.
            assert p.reload() == 30 + 150 + 10 and not p.segments[1].reader.live
            for g, index in ((29, 29), (30 + n1 - 1, n1 - 1), (30 + 149, 149), (180, 500), (189, 509)):
                p.seek_frame(g)
                assert shown(p, tmp_path) == index, g
            # what the CLI saw at its start: seg-2 still growing
            assert first_duration < p.mpv_timeline.duration - 10 / 30
    finally:
        for child in (recorder, follower):
            if child is not None and child.poll() is None:
                child.kill()
            if child is not None:
                child.wait()
