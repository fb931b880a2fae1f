"""Thumbnail sheets and the tracks made from them: every tile is a known frame, every cue spans its frames' times."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from scrubproxy import ProxyCache
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import read_index
from scrubproxy.thumbs import ThumbSpec, open_thumbs, thumbs_path

_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(\S+?)#xywh=(\d+),(\d+),(\d+),(\d+)")


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def tile_pixels(sheet: bytes, x: int, y: int, w: int, h: int) -> np.ndarray:
    return simplejpeg.decode_jpeg(sheet, colorspace="RGB")[y : y + h, x : x + w]


def expected_tiles(times: np.ndarray, duration: float, interval: float) -> list[int]:
    count = int(np.ceil(duration / interval - 1e-6))
    return sorted({int(np.searchsorted(times, i * interval + 1e-6, side="right")) - 1 for i in range(count)})


@pytest.mark.parametrize("interval", [0.25, 1.0])
def test_every_tile_is_the_frame_on_screen_at_its_time_vfr_and_cfr(cache, vfr_source, cfr_source, interval):
    for source in (vfr_source, cfr_source):
        with cache.open(source) as reader, open_thumbs(reader, ThumbSpec(interval=interval, width=100, cols=4, rows=3)) as sheets:
            times = reader.frame_map.times
            assert sheets.frames.tolist() == expected_tiles(times, reader.metadata.duration, interval)
            assert (sheets.tile_width, sheets.tile_height) == (100, 76)  # 320x240, even height
            for i in range(len(sheets)):
                n, x, y = sheets.place(i)
                assert read_index(tile_pixels(sheets.sheet(n), x, y, sheets.tile_width, sheets.tile_height)) == sheets.frames[i]
                start, end = sheets.span(i, times)
                assert start == times[sheets.frames[i]]
                assert end == (times[sheets.frames[i + 1]] if i + 1 < len(sheets) else reader.metadata.duration)


def test_sheets_live_beside_the_proxy_follow_its_build_and_go_with_it(tmp_path, cfr_source):
    cache = ProxyCache(tmp_path / "cache")
    spec = ThumbSpec(interval=0.5)
    with cache.open(cfr_source) as reader:
        open_thumbs(reader, spec).close()
        path = thumbs_path(reader.path, spec)
        first_build = reader.frame_map.header.build_id.hex()
    assert path.parent == reader.path.parent and path.exists()
    assert not list(path.parent.glob(".*.tmp.*"))  # published by rename, nothing left over
    [entry] = cache.entries()
    assert path in entry.files and entry.size >= path.stat().st_size
    cache.ensure(cfr_source, force=True)  # a rebuilt proxy: the sheets are cut again, for it
    with cache.open(cfr_source) as reader, open_thumbs(reader, spec) as sheets:
        assert sheets.build_id == reader.frame_map.header.build_id.hex() != first_build
    assert cache.cleanup() == 1
    assert not path.exists()


def test_bad_specs_are_refused():
    from scrubproxy.errors import BadInputError

    for kw in ({"interval": 0}, {"interval": float("nan")}, {"width": 8}, {"cols": 0}):
        with pytest.raises(BadInputError):
            ThumbSpec(**kw)


def parse_vtt(text: str) -> list[tuple[float, float, str, tuple[int, int, int, int]]]:
    assert text.startswith("WEBVTT\n")
    cues = [(seconds(*m.groups()[:4]), seconds(*m.groups()[4:8]), m[9], tuple(map(int, m.groups()[9:]))) for m in _CUE.finditer(text)]
    assert len(cues) == text.count("-->")
    return cues


def test_vtt_export_of_files_and_of_a_session_timeline(run_cli, tmp_path, vfr_source, session_sources):
    out = tmp_path / "out"
    done = run_cli("thumbs", vfr_source, "--format", "vtt", "--interval", "0.5", "-o", out)
    assert done.returncode == 0, done.stderr
    with ProxyReader(ProxyCache(tmp_path / "cache").lookup(vfr_source)) as reader:
        times = reader.frame_map.times
        cues = parse_vtt((out / "vfr.vtt").read_text())
        frames = expected_tiles(times, reader.metadata.duration, 0.5)
        assert len(cues) == len(frames)
        for (start, end, sheet, (x, y, w, h)), k, nxt in zip(cues, frames, frames[1:] + [None]):
            assert start == round(times[k], 3) and end == round(times[nxt] if nxt else reader.metadata.duration, 3)
            assert read_index(tile_pixels((out / sheet).read_bytes(), x, y, w, h)) == k

    done = run_cli("proxy", *session_sources, "--session", "rec", "--quiet")
    assert done.returncode == 0, done.stderr
    done = run_cli("thumbs", "--session", "rec", "--format", "vtt", "-o", out, "--interval", "0.25")
    assert done.returncode == 0, done.stderr
    cues = parse_vtt((out / "rec.vtt").read_text())
    # 20 frames at 30 fps per segment: tiles at 0, 0.25, 0.5 s of each, on one timeline
    starts = [round(i * 20 / 30 + t, 3) for i in range(3) for t in (0, 7 / 30, 15 / 30)]
    assert [c[0] for c in cues] == starts
    assert [c[1] for c in cues] == starts[1:] + [2.0]  # contiguous: each cue ends where the next begins
    for start, _, sheet, (x, y, w, h) in cues:
        part = int(sheet.split("-")[1])  # rec-<segment>-<sheet>.jpg
        assert read_index(tile_pixels((out / sheet).read_bytes(), x, y, w, h)) == round((start - part * 20 / 30) * 30)


def test_bif_export_parses_back_to_the_frame_map(run_cli, tmp_path, vfr_source):
    out = tmp_path / "out"
    done = run_cli("thumbs", vfr_source, "--format", "bif", "--interval", "0.5", "-o", out)
    assert done.returncode == 0, done.stderr
    data = (out / "vfr.bif").read_bytes()
    assert data[:8] == bytes([0x89, 0x42, 0x49, 0x46, 0x0D, 0x0A, 0x1A, 0x0A])
    version, count, multiplier = struct.unpack_from("<III", data, 8)
    assert (version, multiplier) == (0, 1)
    index = [struct.unpack_from("<II", data, 64 + 8 * i) for i in range(count + 1)]
    assert index[-1] == (0xFFFFFFFF, len(data))
    with ProxyReader(ProxyCache(tmp_path / "cache").lookup(vfr_source)) as reader:
        times = reader.frame_map.times
        frames = expected_tiles(times, reader.metadata.duration, 0.5)
    assert count == len(frames)
    for (ms, offset), (_, end), k in zip(index, index[1:], frames):
        assert ms == round(times[k] * 1000)
        assert read_index(np.asarray(Image.open(io.BytesIO(data[offset:end])).convert("RGB"))) == k


def test_jellyfin_export_uses_its_layout_and_defaults(run_cli, tmp_path, make_media):
    source = make_media("long.mp4", frames=90, rate=3)  # 30 s at 3 fps: three tiles at Jellyfin's 10 s
    out = tmp_path / "out"
    done = run_cli("thumbs", source, "--format", "jellyfin", "-o", out)
    assert done.returncode == 0, done.stderr
    sheet = out / "long.trickplay" / "320 - 10x10" / "0.jpg"
    assert done.stdout.splitlines() == [str(sheet)]
    rgb = np.asarray(Image.open(sheet).convert("RGB"))
    assert rgb.shape == (240, 3200, 3)  # one row of ten 320x240 places, three of them used
    assert [read_index(rgb[:, i * 320 : (i + 1) * 320]) for i in range(3)] == [0, 30, 60]
    done = run_cli("thumbs", source, "--format", "jellyfin", "--interval", "0.1", "-o", out)
    assert done.returncode == 2 and "shorter than a frame" in done.stderr


def test_thumbs_needs_a_known_format_and_something_to_do(run_cli, tmp_path, cfr_source):
    assert run_cli("thumbs", cfr_source, "--format", "gif", "-o", tmp_path).returncode == 2
    done = run_cli("thumbs", "--format", "vtt", "-o", tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error:")
