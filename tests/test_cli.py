"""The ``scrubproxy`` command, run as a real child process: its outputs, and one
line ``error: <file>: <reason>`` with a distinct exit code for every bad input."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import filelock
import numpy as np
import pytest

from scrubproxy import ProxyCache, __version__
from scrubproxy.hwchoice import MEMORY_NAME
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import RecordingSpec, make_recording, read_index

FRAGMENTED = (("movflags", "frag_keyframe+empty_moov"),)


def one_error_line(result: subprocess.CompletedProcess, path: Path | None, *words: str) -> str:
    """The single stderr line of a failed run, checked for the file and the reason's words."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    prefix = f"error: {path}: " if path is not None else "error: "
    assert line.startswith(prefix), line
    for word in words:
        assert word in line.lower(), line
    assert result.stdout == ""
    return line


def cache_files(root: Path) -> list[Path]:
    """Proxies, frame maps, manifests and temporary files under a cache root (not lock files, not hwaccel auto's measurements)."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.name not in ("CACHEDIR.TAG", MEMORY_NAME) and ".locks" not in p.relative_to(root).parts]


def copy_to(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


# -- outputs ------------------------------------------------------------------------------


def test_version(run_cli):
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"scrubproxy {__version__}"


def test_proxy_prints_one_path_per_line_and_nothing_else(run_cli, session_sources, tmp_path):
    result = run_cli("proxy", "--session", "s1", *session_sources)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    cache = ProxyCache(tmp_path / "cache")
    for line, src in zip(lines, session_sources):
        assert Path(line) == cache.lookup(src, "s1")
        with ProxyReader(Path(line)) as r:
            assert [read_index(r[k]) for k in range(len(r))] == list(range(20))
    assert result.stderr == "", "no progress bar (nor anything else) when stderr is not a terminal"
    again = run_cli("proxy", "--session", "s1", "--jobs", "2", *session_sources)
    assert again.returncode == 0 and again.stdout == result.stdout


def on_terminal(*args: str | Path, cache_dir: Path, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``scrubproxy ARGS`` with stderr on a terminal (a pty); (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(cache_dir), "TERM": "xterm", "COLUMNS": "100"}
    child = subprocess.Popen([sys.executable, "-m", "scrubproxy", *map(str, args)], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = child.communicate(timeout=timeout)
    reader.join(timeout=10)
    os.close(master)
    return child.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_bar_goes_to_a_terminal_on_stderr_only(tmp_path, cfr_source):
    code, stdout, terminal = on_terminal("proxy", cfr_source, cache_dir=tmp_path / "cache")
    assert code == 0
    assert "60/60" in terminal and "cfr.mp4" in terminal, terminal
    assert stdout.splitlines() == [str(ProxyCache(tmp_path / "cache").lookup(cfr_source))]


def test_quiet_shows_no_bar_even_on_a_terminal(tmp_path, cfr_source):
    master, slave = pty.openpty()
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(tmp_path / "cache"), "TERM": "xterm"}
    child = subprocess.run(
        [sys.executable, "-m", "scrubproxy", "proxy", "--quiet", str(cfr_source)],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        timeout=120,
        check=False,
    )
    os.close(slave)
    os.set_blocking(master, False)
    try:
        shown = os.read(master, 65536)
    except (BlockingIOError, OSError):
        shown = b""
    os.close(master)
    assert child.returncode == 0
    assert shown == b""


def test_path_prints_where_the_proxy_will_be_without_encoding(run_cli, cfr_source, tmp_path):
    result = run_cli("path", "--session", "s", cfr_source)
    assert result.returncode == 0, result.stderr
    predicted = Path(result.stdout.strip())
    assert not predicted.exists() and cache_files(tmp_path / "cache") == []
    made = run_cli("proxy", "--session", "s", cfr_source)
    assert Path(made.stdout.strip()) == predicted and predicted.exists()


def test_ls_json_lists_every_proxy_with_its_state(run_cli, session_sources, tmp_path, cfr_source):
    changing = copy_to(cfr_source, tmp_path / "changing.mp4")
    cache = ProxyCache(tmp_path / "cache")  # the same cache the command uses
    for session, src in (("a", session_sources[0]), ("a", changing), ("b", session_sources[1])):
        cache.ensure(src, session)
    make_recording(RecordingSpec(path=changing, frames=5))
    result = run_cli("ls", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    by_source = {(r["session"], Path(r["source"]).name): r for r in rows}
    assert set(by_source) == {("a", "seg-000.mp4"), ("a", "changing.mp4"), ("b", "seg-001.mp4")}
    assert by_source[("a", "seg-000.mp4")]["state"] == "valid" and by_source[("a", "seg-000.mp4")]["frames"] == 20
    assert by_source[("a", "changing.mp4")]["state"] == "stale"
    for r in rows:
        assert Path(r["proxy"]).is_file() and r["size"] > Path(r["proxy"]).stat().st_size and r["partial"] is False
    only_b = json.loads(run_cli("ls", "--session", "b", "--json").stdout)
    assert [r["session"] for r in only_b] == ["b"]


def test_clean_session_all_and_stale(run_cli, session_sources, tmp_path, cfr_source):
    gone = copy_to(cfr_source, tmp_path / "gone.mp4")
    cache = ProxyCache(tmp_path / "cache")  # the same cache the command uses
    for session in ("a", "b", "c"):
        cache.ensure(session_sources[0], session)
    cache.ensure(gone, "c")
    gone.unlink()

    def states() -> list[tuple[str, str]]:
        return sorted((e.session, e.state) for e in cache.entries())

    assert run_cli("clean").returncode == 2  # says which, deletes nothing
    assert states() == [("a", "valid"), ("b", "valid"), ("c", "stale"), ("c", "valid")]
    result = run_cli("clean", "--session", "a")
    assert result.returncode == 0 and "removed 1 proxy" in result.stderr
    assert states() == [("b", "valid"), ("c", "stale"), ("c", "valid")]
    assert run_cli("clean", "--stale").returncode == 0
    assert states() == [("b", "valid"), ("c", "valid")]
    assert run_cli("clean", "--session", "b", "--all").returncode == 2
    result = run_cli("clean", "--all")
    assert result.returncode == 0 and "removed 2 proxies" in result.stderr
    assert states() == [] and cache_files(tmp_path / "cache") == []
    assert all(s.exists() for s in session_sources)


def test_clean_refuses_a_cache_dir_with_foreign_files(run_cli, tmp_path, cfr_source):
    root = tmp_path / "documents"
    assert run_cli("proxy", cfr_source, cache_dir=root).returncode == 0
    (root / "thesis.odt").write_bytes(b"canary")
    before = sorted(p for p in root.rglob("*"))
    result = run_cli("clean", "--all", cache_dir=root)
    assert result.returncode == 2
    one_error_line(result, root.resolve(), "refusing", "thesis.odt")
    assert sorted(p for p in root.rglob("*")) == before and (root / "thesis.odt").read_bytes() == b"canary"


def test_info_json_describes_rate_rotation_colour_and_proxy_state(run_cli, make_media, vfr_source):
    src = make_media("info-rot.mp4", frames=10, width=320, height=240, rotation=90, colorspace="ITU709", full_range=True)
    result = run_cli("info", "--json", src)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    v = data["video"]
    assert v["average_rate"] == "30" and v["variable_rate"] is False and v["frames"] == 10
    assert v["rotation"] == 90 and (v["display_width"], v["display_height"]) == (240, 320)
    assert v["matrix"] == "bt709" and v["range"] == "full" and v["bit_depth"] == 8
    assert data["proxy"]["state"] == "missing or stale"
    assert run_cli("proxy", src).returncode == 0
    assert json.loads(run_cli("info", "--json", src).stdout)["proxy"]["state"] == "valid"
    vfr = json.loads(run_cli("info", "--json", vfr_source).stdout)["video"]
    assert vfr["variable_rate"] is True and vfr["rotation"] == 0 and vfr["matrix"] == "bt470bg"
    text = run_cli("info", src)
    assert text.returncode == 0 and "rotation 90" in text.stdout and "constant rate" in text.stdout


def test_demo_makes_a_recording_and_its_exact_proxy(run_cli, tmp_path):
    result = run_cli("demo", "--folder", tmp_path / "demo", "--seconds", "1")
    assert result.returncode == 0, result.stderr
    proxy = Path(result.stdout.strip())
    assert proxy.is_file() and (tmp_path / "demo" / "demo-recording.mp4").is_file()
    assert "exact" in result.stderr and "MISMATCH" not in result.stderr
    with ProxyReader(proxy) as r:
        assert [read_index(r[k]) for k in range(len(r))] == list(range(30))


# -- bad input ----------------------------------------------------------------------------


def test_missing_path_exits_2(run_cli, tmp_path):
    missing = tmp_path / "nope.mp4"
    result = run_cli("proxy", missing)
    assert result.returncode == 2
    one_error_line(result, missing, "no such file")
    assert cache_files(tmp_path / "cache") == []


def test_folder_exits_2(run_cli, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    result = run_cli("proxy", folder)
    assert result.returncode == 2
    one_error_line(result, folder, "folder")


@pytest.mark.parametrize("session", ["..", ".", "a/b", "x" * 129, "séance", ".locks"])
def test_bad_session_exits_2(run_cli, cfr_source, tmp_path, session):
    result = run_cli("proxy", "--session", session, cfr_source)
    assert result.returncode == 2, result.stderr
    one_error_line(result, None, "session")
    assert cache_files(tmp_path / "cache") == []


def test_bad_session_exits_2_in_every_command(run_cli, cfr_source, tmp_path):
    for command in (
        ["path", "--session", "..", cfr_source],
        ["clean", "--session", ".."],
        ["ls", "--session", ".."],
        ["info", "--session", "..", cfr_source],
    ):
        result = run_cli(*command)
        assert result.returncode == 2, (command, result.stderr)
        one_error_line(result, None, "session")
    assert cache_files(tmp_path / "cache") == []


@pytest.mark.parametrize(
    "option, value, word",
    [("--height", "8", "height"), ("--height", "5000", "height"), ("--quality", "1", "quality"), ("--quality", "32", "quality")],
)
def test_height_or_quality_out_of_range_exits_2(run_cli, cfr_source, tmp_path, option, value, word):
    result = run_cli("proxy", option, value, cfr_source)
    assert result.returncode == 2
    one_error_line(result, None, word)
    assert cache_files(tmp_path / "cache") == []


def test_unknown_hardware_decoder_exits_2(run_cli, cfr_source, tmp_path):
    result = run_cli("proxy", "--hwaccel", "nosuchdevice", cfr_source)
    assert result.returncode == 2
    one_error_line(result, None, "nosuchdevice", "not available")
    assert cache_files(tmp_path / "cache") == []


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_unreadable_sources_exit_3_and_leave_nothing(run_cli, tmp_path, cfr_source):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 50)
    audio = _audio_only(tmp_path / "voice.m4a")
    data = cfr_source.read_bytes()  # ftyp, mdat, moov: a cut before the moov
    cut = tmp_path / "interrupted.mp4"
    cut.write_bytes(data[: data.index(b"moov") - 4 - 100])
    unknown = tmp_path / "unknown-codec.mp4"  # a damaged sample description: the codec tag is garbage
    unknown.write_bytes(data.replace(b"avc1", b"zzz1"))
    mdat = data.index(b"mdat")
    spliced = tmp_path / "spliced.mp4"  # 3 kB repeated inside the frames: the boxes after them break off
    spliced.write_bytes(data[: mdat + 5000] + data[mdat + 2000 :])
    cases = [
        (empty, ("empty",)),
        (text, ("not a video",)),
        (audio, ("no video stream", "audio")),
        (cut, ("moov", "probably interrupted")),
        (unknown, ("unknown codec",)),
        (spliced, ("damaged at byte", "moov")),
    ]
    for path, words in cases:
        result = run_cli("proxy", path)
        assert result.returncode == 3, (path, result.stderr)
        one_error_line(result, path, *words)
    info = run_cli("info", text)
    assert info.returncode == 3
    one_error_line(info, text, "not a video")
    assert cache_files(tmp_path / "cache") == []


def test_unwritable_cache_folder_exits_4_and_leaves_nothing(run_cli, tmp_path, cfr_source):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"canary")
    for cache_dir in (blocker / "cache", blocker):
        result = run_cli("proxy", cfr_source, cache_dir=cache_dir)
        assert result.returncode == 4, result.stderr
        line = one_error_line(result, None, "cache folder")
        assert str(blocker) in line
    assert blocker.read_bytes() == b"canary"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def _as_if_the_muxer_crashed(mkv: Path) -> bytes:
    """The bytes of ``mkv`` with the segment size still "unknown", as FFmpeg's
    Matroska muxer leaves it until it closes the file (so every crashed recording)."""
    data = bytearray(mkv.read_bytes())
    at = data.index(b"\x18\x53\x80\x67") + 4  # the Segment element's size field
    assert data[at] == 0x01, "expected an 8-byte size field"
    data[at : at + 8] = b"\x01\xff\xff\xff\xff\xff\xff\xff"
    return bytes(data)


@pytest.mark.parametrize(
    "name, options, crashed",
    [("cut.mkv", (), False), ("crashed.mkv", (), True), ("cut-fragmented.mp4", FRAGMENTED, False)],
)
def test_cut_off_recording_gives_a_partial_proxy_and_is_rebuilt_when_it_grows(run_cli, tmp_path, name, options, crashed):
    full = make_recording(RecordingSpec(path=tmp_path / "full" / name, frames=60, gop=10, bframes=2, container_options=options))
    src = tmp_path / "rec" / name
    src.parent.mkdir()
    data = _as_if_the_muxer_crashed(full) if crashed else full.read_bytes()
    src.write_bytes(data[: len(data) * 6 // 10])
    result = run_cli("proxy", src)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr.lower() and "cut off" in result.stderr.lower()
    proxy = Path(result.stdout.strip())
    manifest = json.loads(proxy.with_suffix(".json").read_text())
    assert manifest["partial"] is True and manifest["warnings"]
    with ProxyReader(proxy) as r:
        got = [read_index(r[k]) for k in range(len(r))]
        mapped = [round(r.time_of(k) * 30) for k in range(len(r))]
    assert 20 <= len(got) < 60 and got == list(range(len(got))) == mapped
    assert manifest["proxy"]["frames"] == len(got)
    cache = ProxyCache(tmp_path / "cache")
    assert [(e.state, e.partial) for e in cache.entries()] == [("valid", True)]
    # The recorder finishes writing: the source grows, the partial proxy is stale and rebuilt whole.
    src.write_bytes(data)
    assert [e.state for e in cache.entries()] == ["stale"]
    again = run_cli("proxy", src)
    assert again.returncode == 0 and again.stderr == ""
    assert json.loads(proxy.with_suffix(".json").read_text())["partial"] is False
    with ProxyReader(proxy) as r:
        assert [read_index(r[k]) for k in range(len(r))] == list(range(60))


def test_corrupt_packets_are_skipped_with_a_warning_and_an_honest_count(run_cli, tmp_path):
    src = make_recording(RecordingSpec(path=tmp_path / "damaged.mp4", frames=60, gop=10, bframes=0))
    with av.open(str(src)) as c:
        packets = [(p.pts, p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(src.read_bytes())
    _, pos, size = packets[25]  # a P-frame: frames 25-29 lose their reference, 30 is a keyframe
    data[pos + 4 : pos + size] = b"\xa5" * (size - 4)
    src.write_bytes(bytes(data))
    result = run_cli("proxy", src)
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stderr.lower()
    proxy = Path(result.stdout.strip())
    manifest = json.loads(proxy.with_suffix(".json").read_text())
    with ProxyReader(proxy) as r:
        mapped = [round(r.time_of(k) * 30) for k in range(len(r))]
        assert len(r) == manifest["proxy"]["frames"] < 60
        # The frame map says which source frames the proxy holds: every one once, in order.
        assert mapped == sorted(set(mapped)) and set(mapped) <= set(range(60)) and len(mapped) == len(r)
        for k, index in enumerate(mapped):
            if index < 25 or index >= 30:  # frames with sound references show exactly their own index
                assert read_index(r[k]) == index
    assert any("damaged" in w for w in manifest["warnings"])


@pytest.fixture
def slow_source(make_media) -> Path:
    """Long enough to be caught mid-encode (300 frames of 640x480, one GOP)."""
    return make_media("slow-640x480.mp4", frames=300, width=640, height=480, gop=300, codec_options=(("preset", "ultrafast"),))


def start_mid_encode(src: Path, root: Path, *args: str) -> subprocess.Popen:
    """``scrubproxy proxy --height 480 SRC`` as a child, returned once its temporary proxy is 100 kB along."""
    child = subprocess.Popen(
        [sys.executable, "-m", "scrubproxy", "proxy", "--height", "480", str(src), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SCRUBPROXY_CACHE_DIR": str(root)},
    )
    sdir = root / "default"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        temps = list(sdir.glob(".*.tmp.mkv")) if sdir.exists() else []
        if temps and temps[0].stat().st_size > 100_000:
            return child
        time.sleep(0.002)
    pytest.fail(f"the encode was not caught mid-way: {child.communicate()}")


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_stops_the_encode_and_leaves_nothing(tmp_path, slow_source, run_cli, signum, code, said):
    root = tmp_path / "cache"
    child = start_mid_encode(slow_source, root)
    child.send_signal(signum)
    out, err = child.communicate(timeout=60)
    assert child.returncode == code
    assert out == "" and err.strip() == said
    # Stopped, not finished in the background: nothing was published, no temp file is left.
    assert cache_files(root) == []
    assert json.loads(run_cli("ls", "--json", cache_dir=root).stdout) == []


def test_a_second_proxy_says_it_waits_and_a_reused_one_says_reused(tmp_path, cfr_source, run_cli):
    root = tmp_path / "cache"
    predicted = Path(run_cli("path", cfr_source, cache_dir=root).stdout.strip())
    # Another process encoding it holds its lock (the layout of docs/architecture.md).
    lock_path = root / ".locks" / "default" / f"{predicted.stem}.lock"
    lock_path.parent.mkdir(parents=True)
    lock = filelock.FileLock(lock_path)
    lock.acquire()
    child = subprocess.Popen(
        [sys.executable, "-m", "scrubproxy", "proxy", str(cfr_source)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SCRUBPROXY_CACHE_DIR": str(root)},
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.append(child.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    lock.release()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and out.strip() == str(predicted), err
    assert said == [f"{cfr_source}: waiting for another process's encode\n"] and err == ""
    code, stdout, terminal = on_terminal("proxy", cfr_source, cache_dir=root)
    assert code == 0 and stdout == out
    assert "reused" in terminal and "fps" not in terminal and "1/1" not in terminal, terminal


def test_debug_shows_the_traceback(run_cli, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    result = run_cli("--debug", "proxy", text)
    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" in result.stderr and "SourceUnreadableError" in result.stderr


@pytest.mark.parametrize("args", [["proxy", "--height", "abc", "x.mp4"], ["proxy", "--jobs", "0", "x.mp4"], ["no-such-command"]])
def test_usage_errors_are_one_line_and_exit_2(run_cli, args):
    done = run_cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert done.stdout == ""


# -- one set of proxy settings and sessions for every command ---------------------------

PROXY_COMMANDS = ("proxy", "path", "info", "verify", "frame", "play", "serve", "watch")


def help_text(run_cli, *args: str) -> str:
    """``--help`` of a command, with the box drawing and line breaks of rich's layout taken out."""
    result = run_cli(*args, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout).split())


def test_every_proxy_command_takes_the_settings_and_says_what_no_session_means(run_cli):
    for command in PROXY_COMMANDS:
        text = help_text(run_cli, command)
        for option in ("--height", "--quality", "--stream", "--hwaccel", "--session", "--cache-dir", "--debug"):
            assert option in text, (command, option)
        assert "any session is reused" in text and "session 'default'" in text, command
        assert "--container" not in text


def test_arguments_and_jobs_read_the_same_in_every_command(run_cli):
    def usage(command: str) -> str:
        text = run_cli(command, "--help").stdout
        return next(line for line in text.splitlines() if "Usage:" in line).split("Usage: scrubproxy ")[1].strip()

    assert {c: usage(c) for c in PROXY_COMMANDS} == {
        "proxy": "proxy [OPTIONS] SRC...",
        "path": "path [OPTIONS] SRC",
        "info": "info [OPTIONS] SRC",
        "verify": "verify [OPTIONS] SRC",
        "frame": "frame [OPTIONS] SRC [K]",
        "play": "play [OPTIONS] [SRC...]",
        "serve": "serve [OPTIONS] [SRC...]",
        "watch": "watch [OPTIONS] FOLDER...",
    }
    for command in ("proxy", "play", "serve", "watch"):
        assert re.search(r"--jobs -j [^-]*?Segments encoded at once[^\[]*\[default: 1\]", help_text(run_cli, command)), command


def test_global_options_work_after_the_command_too(run_cli, cfr_source, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    made = run_cli("proxy", cfr_source, "--cache-dir", elsewhere, "--quiet")
    assert made.returncode == 0, made.stderr
    assert Path(made.stdout.strip()).is_relative_to(elsewhere)
    listed = run_cli("ls", "--json", "--cache-dir", elsewhere)
    assert listed.returncode == 0 and [Path(r["proxy"]) for r in json.loads(listed.stdout)] == [Path(made.stdout.strip())]
    assert json.loads(run_cli("ls", "--json").stdout) == []  # the default cache was not used
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    assert "Traceback" in run_cli("proxy", text, "--debug").stderr


def test_other_settings_are_found_by_every_command_with_the_same_settings(run_cli, make_media, tmp_path):
    src = make_media("tall-480.mp4", frames=12, width=320, height=480, gop=6, bframes=1)
    root = tmp_path / "cache"
    made = run_cli("proxy", src, "--height", "241", "--quality", "7")
    assert made.returncode == 0, made.stderr
    proxy = Path(made.stdout.strip())
    with ProxyReader(proxy) as r:
        assert r.metadata.height == 240  # rounded down to even
    same = ("--height", "241", "--quality", "7")
    info = json.loads(run_cli("info", src, "--json", *same).stdout)
    assert info["proxy"] == {"path": str(proxy), "session": "default", "state": "valid"}
    assert json.loads(run_cli("info", src, "--json").stdout)["proxy"]["state"] == "missing or stale"  # the default is another proxy
    assert run_cli("path", src, *same).stdout.strip() == str(proxy)
    frame = run_cli("frame", src, "5", "-o", tmp_path / "f.png", *same)
    assert frame.returncode == 0, frame.stderr
    assert read_index(np.asarray(av.open(str(tmp_path / "f.png")).decode(video=0).__next__().to_ndarray(format="rgb24"))) == 5
    verified = run_cli("verify", src, *same)
    assert verified.returncode == 0 and ", ok" in verified.stderr, verified.stderr
    assert [(e.session, e.proxy_path) for e in ProxyCache(root).entries()] == [("default", proxy)], "nothing else was encoded"


def test_verify_and_frame_make_the_proxy_of_their_own_settings_only(run_cli, make_media, tmp_path):
    src = make_media("tall-480b.mp4", frames=12, width=320, height=480, gop=6, bframes=1)
    assert run_cli("verify", src, "--height", "240").returncode == 0
    assert run_cli("frame", src, "3", "-o", tmp_path / "f.jpg", "--height", "240").returncode == 0
    entries = ProxyCache(tmp_path / "cache").entries()
    assert len(entries) == 1
    with ProxyReader(entries[0].proxy_path) as r:
        assert r.metadata.height == 240


def test_without_session_a_proxy_of_another_session_is_found(run_cli, cfr_source, tmp_path):
    made = run_cli("proxy", cfr_source, "--session", "monday")
    proxy = Path(made.stdout.strip())
    assert json.loads(run_cli("info", cfr_source, "--json").stdout)["proxy"] == {"path": str(proxy), "session": "monday", "state": "valid"}
    assert run_cli("path", cfr_source).stdout.strip() == str(proxy)
    assert run_cli("proxy", cfr_source).stdout.strip() == str(proxy)
    assert run_cli("frame", cfr_source, "7", "-o", tmp_path / "f.jpg").returncode == 0
    assert run_cli("verify", cfr_source).returncode == 0
    assert [e.session for e in ProxyCache(tmp_path / "cache").entries()] == ["monday"], "nothing made in 'default'"
    # A named session is that session only.
    assert json.loads(run_cli("info", cfr_source, "--json", "--session", "tuesday").stdout)["proxy"]["state"] == "missing or stale"


# -- frame --------------------------------------------------------------------------------


def test_frame_takes_negative_numbers_and_refuses_times_and_numbers_out_of_range(run_cli, cfr_source, tmp_path):
    for i, (args, expected) in enumerate(((["-1"], 59), (["-60"], 0), (["-2", "--height", "240"], 58), (["-o", tmp_path / "m3.png", "-3"], 57), (["-t", "1.0"], 30))):
        output = [] if "-o" in args else ["-o", tmp_path / f"f{i}.jpg"]
        result = run_cli("frame", cfr_source, *args, *output)
        assert result.returncode == 0, (args, result.stderr)
        out = Path(result.stdout.strip())
        with av.open(str(out)) as c:
            assert read_index(next(c.decode(video=0)).to_ndarray(format="rgb24")) == expected, args
    for args, words in ((["60"], ("out of range", "0 to 59")), (["-61"], ("out of range", "-60 to -1")), (["-t", "999"], ("outside", "0 to 2.000000 s")), (["-t", "-0.5"], ("outside",))):
        result = run_cli("frame", cfr_source, *args)
        assert result.returncode == 2, (args, result.stderr)
        one_error_line(result, cfr_source, *words)


def test_frame_original_is_the_exact_source_frame_at_full_resolution_upright(run_cli, make_media, tmp_path):
    src = make_media("orig-rot.mp4", frames=24, width=322, height=242, rotation=90, gop=12, bframes=2)
    result = run_cli("frame", src, "17", "--original", "-o", tmp_path / "o.png")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "o.png")) as c:
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24")
    with ProxyCache(tmp_path / "cache").open(src) as r:
        assert np.array_equal(rgb, r.original(17))
    assert rgb.shape == (322, 242, 3) and read_index(np.rot90(rgb, -1)) == 17  # upright: the stored picture turned a quarter


def test_verify_shows_its_progress_on_a_terminal(tmp_path, cfr_source):
    code, stdout, terminal = on_terminal("verify", cfr_source, "--samples", "10", cache_dir=tmp_path / "cache")
    assert code == 0, terminal
    assert "verify cfr.mp4" in terminal and "10/10 frames" in terminal, terminal


# -- errors that say the fix ----------------------------------------------------------------


def test_a_folder_or_a_glob_that_matched_nothing_says_what_to_do(run_cli, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    line = one_error_line(run_cli("proxy", folder), folder, "folder")
    assert f"scrubproxy watch {folder} --once" in line and f"{folder}/*.mp4" in line
    pattern = folder / "*.mp4"  # what the shell passes on when nothing matches
    for command in ("proxy", "verify", "play", "serve"):
        result = run_cli(command, pattern)
        assert result.returncode == 2, (command, result.stderr)
        one_error_line(result, pattern, "matched no file")


def test_clean_of_a_session_without_proxies_lists_the_sessions(run_cli, cfr_source, tmp_path):
    result = run_cli("clean", "--session", "monday")
    assert result.returncode == 2
    one_error_line(result, None, "'monday' has no proxies", "has no sessions")
    for session in ("b-session", "a-session"):
        assert run_cli("proxy", cfr_source, "--session", session).returncode == 0
    result = run_cli("clean", "--session", "monday")
    assert result.returncode == 2
    one_error_line(result, None, "'monday' has no proxies", "a-session, b-session")
    assert len(ProxyCache(tmp_path / "cache").entries()) == 2


def test_play_refuses_mpv_args_that_take_its_ipc_socket(run_cli, cfr_source, tmp_path):
    for arg in ("--input-ipc-server=/tmp/mine.sock", "--input-ipc-client=fd://3"):
        result = run_cli("play", cfr_source, f"--mpv-arg={arg}", "--quiet")
        assert result.returncode == 2, result.stderr
        one_error_line(result, None, arg.split("=")[0], "ipc socket")
    assert cache_files(tmp_path / "cache") == [], "refused before any encode"


def test_readme_lists_every_exit_code(run_cli):
    import scrubproxy.errors as errors

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = {int(code) for code in re.findall(r"(\d+) [a-z]", readme.split("Exit codes:")[1].split("\n\n")[0])}
    raised = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ScrubProxyError)}
    assert listed == {0, 1, 130, 143} | raised
    assert raised <= {int(c) for c in re.findall(r"\b(\d) (?:for|on)\b", errors.__doc__)}


# -- sessions in recording order ----------------------------------------------------------


@pytest.fixture
def numbered_session(make_media, tmp_path) -> tuple[Path, list[Path]]:
    """Session 'nat' of seg-10, seg-2, seg-9 (made in that order); recording order is 2, 9, 10."""
    root = tmp_path / "cache"
    sources = [make_media(f"seg-{n}.mp4", frames=6 + n, gop=5) for n in (10, 2, 9)]
    cache = ProxyCache(root)
    for src in sources:
        cache.ensure(src, "nat")
    return root, [sources[1], sources[2], sources[0]]


def test_serve_session_lists_seg_2_before_seg_10(numbered_session):
    from servehelp import serving
    import urllib.request

    root, ordered = numbered_session
    with serving("--session", "nat", cache_dir=root) as base:
        timeline = json.loads(urllib.request.urlopen(base + "api/timeline", timeout=60).read())
    assert [s["name"] for s in timeline["segments"]] == [s.name for s in ordered]
    assert [s["frames"] for s in timeline["segments"]] == [8, 15, 16]


@pytest.mark.skipif(shutil.which("mpv") is None and os.environ.get("CI") != "true", reason="mpv not installed")
def test_play_session_plays_seg_2_before_seg_10(numbered_session):
    from test_player import mpv_property, played

    root, ordered = numbered_session
    cmd = [sys.executable, "-m", "scrubproxy", "play", "--session", "nat", "--mpv-arg=--vo=null", "--mpv-arg=--ao=null"]
    with played(cmd, {**os.environ, "SCRUBPROXY_CACHE_DIR": str(root)}) as (proc, ask):
        edl = mpv_property(ask, "playlist/0/filename")
        at = [edl.index(f"/{s.stem}-") for s in ordered]
        assert at == sorted(at), edl
        ask("quit")
        assert proc.wait(10) == 0
