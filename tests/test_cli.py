"""The ``scrubproxy`` command, run as a real child process: its outputs, and one
line ``error: <file>: <reason>`` with a distinct exit code for every bad input."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from scrubproxy import ProxyCache, __version__
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
    """Proxies, frame maps, manifests and temporary files under a cache root (not lock files)."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.name != "CACHEDIR.TAG" and ".locks" not in p.relative_to(root).parts]


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


def test_progress_bar_goes_to_a_terminal_on_stderr_only(tmp_path, cfr_source):
    master, slave = pty.openpty()
    env = {**os.environ, "SCRUBPROXY_CACHE_DIR": str(tmp_path / "cache"), "TERM": "xterm", "COLUMNS": "100"}
    child = subprocess.Popen(
        [sys.executable, "-m", "scrubproxy", "proxy", str(cfr_source)], stdout=subprocess.PIPE, stderr=slave, env=env
    )
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
    stdout, _ = child.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    assert child.returncode == 0
    terminal = b"".join(chunks).decode(errors="replace")
    assert "60/60" in terminal and "cfr.mp4" in terminal, terminal
    assert stdout.decode().splitlines() == [str(ProxyCache(tmp_path / "cache").lookup(cfr_source))]


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


def test_ctrl_c_stops_the_encode_and_leaves_nothing(tmp_path, make_media):
    src = make_media("slow-640x480.mp4", frames=300, width=640, height=480, gop=300, codec_options=(("preset", "ultrafast"),))
    root = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-m", "scrubproxy", "proxy", "--height", "480", src],
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
            break
        time.sleep(0.002)
    else:
        pytest.fail(f"the encode was not caught mid-way: {child.communicate()}")
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130
    assert out == "" and err.strip() == "interrupted"
    # Stopped, not finished in the background: nothing was published, no temp file is left.
    assert cache_files(root) == []


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
