"""Every kind of file people drop into a recordings folder: what is refused
(text, stills, audio with or without cover art, subtitles, data), what is
proxied frame-exactly (animated GIF, HDR PQ/HLG, anamorphic, interlaced)."""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import av
import numpy as np
import pytest

from scrubproxy import ProxyCache, tonemap
from scrubproxy.deinterlace import deinterlace_filters, deinterlaced
from scrubproxy.deinterlace import describe as deinterlace_note
from scrubproxy.encode import encode_proxy
from scrubproxy.errors import NotARecordingError, SourceUnreadableError
from scrubproxy.original import original_rgb
from scrubproxy.probe import REFUSED_KINDS, classify, probe
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import (
    HDR_COLOUR_NITS,
    HDR_GREY_NITS,
    PatternPainter,
    RecordingSpec,
    hdr_patch_box,
    make_hdr_recording,
    make_interlaced_recording,
    make_recording,
    read_index,
)
from scrubproxy.verify import verify_proxy

# ---------------------------------------------------------------- makers


def _picture(k: int = 5, w: int = 64, h: int = 48) -> np.ndarray:
    return PatternPainter(w, h).paint(k)


def _still(path: Path, codec: str, pix_fmt: str) -> Path:
    with av.open(str(path), "w", format="image2") as out:
        s = out.add_stream(codec)
        s.width, s.height, s.pix_fmt = 64, 48, pix_fmt
        out.mux(s.encode(av.VideoFrame.from_ndarray(_picture(), format="rgb24").reformat(format=pix_fmt)))
        out.mux(s.encode(None))
    return path


def _mp3(path: Path, cover: bool) -> Path:
    with av.open(str(path), "w") as out:
        audio = out.add_stream("libmp3lame", rate=44100)
        if cover:
            art = out.add_stream("mjpeg")
            art.width, art.height, art.pix_fmt = 64, 48, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1152
            out.mux(audio.encode(frame))
        if cover:
            out.mux(art.encode(av.VideoFrame.from_ndarray(_picture(), format="rgb24").reformat(format="yuvj420p")))
            out.mux(art.encode(None))
        out.mux(audio.encode(None))
    return path


def _data_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mpegts") as out:
        data = out.add_data_stream()
        for i in range(5):
            packet = av.Packet(b"telemetry %d" % i)
            packet.stream, packet.pts, packet.dts = data, i * 3000, i * 3000
            out.mux(packet)
    return path


def _animation(path: Path, codec: str, fmt: str, frames: int = 12) -> Path:
    painter = PatternPainter(96, 64)
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "rgb8" if codec == "gif" else "yuv420p"
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(painter.paint(k), format="rgb24").reformat(format=s.pix_fmt)
            frame.pts = k
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, list[Path]]:
    d = tmp_path_factory.mktemp("refused")
    notes = d / "notes.txt"  # long enough for FFmpeg's tty demuxer to take it
    notes.write_text("shot list, day 2: the kitchen scene, take 3 was the good one\n" * 100)
    srt = d / "subs.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:03,000 --> 00:00:04,000\nBye\n")
    return {
        "text": [notes],
        "image": [_still(d / "still.png", "png", "rgb24"), _still(d / "still.jpg", "mjpeg", "yuvj420p")],
        "subtitles": [srt],
        "audio": [_mp3(d / "voice.mp3", cover=False)],
        "cover-art": [_mp3(d / "song.mp3", cover=True)],
        "data": [_data_only(d / "telemetry.ts")],
    }


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("kind", ["text", "image", "subtitles", "audio", "cover-art", "data"])
def test_what_is_not_a_recording_is_refused_with_its_kind(refused, kind):
    for path in refused[kind]:
        assert classify(path) == kind, path
        with pytest.raises(NotARecordingError) as err:
            probe(path)
        assert err.value.kind == kind
        assert err.value.reason == REFUSED_KINDS[kind]
        assert err.value.exit_code == 3 and err.value.path == path
        assert isinstance(err.value, SourceUnreadableError)


def test_cli_refuses_in_one_line_with_exit_3(refused, run_cli):
    for path, words in ((refused["cover-art"][0], "its picture is cover art"), (refused["text"][0], "text, not a recording")):
        result = run_cli("proxy", path)
        assert result.returncode == 3, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert lines == [f"error: {path}: {REFUSED_KINDS[classify(path)]}"], result.stderr
        assert words in lines[0]


def test_a_one_frame_video_is_a_still(tmp_path):
    path = make_recording(RecordingSpec(path=tmp_path / "one.mp4", frames=1))
    assert classify(path) == "image"
    with pytest.raises(NotARecordingError):
        probe(path)


def test_animated_gif_is_proxied_frame_exactly(tmp_path):
    gif = _animation(tmp_path / "loop.gif", "gif", "gif")
    assert classify(gif) == "animation"
    info = probe(gif)
    assert info.kind == "animation" and info.video.frame_count == 12
    result = encode_proxy(info, tmp_path / "loop")
    with ProxyReader(result.proxy_path) as r:
        assert [read_index(r[k]) for k in range(len(r))] == list(range(12))


def test_animated_webp_is_an_animation_this_ffmpeg_cannot_decode(tmp_path):
    webp = _animation(tmp_path / "loop.webp", "libwebp_anim", "webp")
    assert classify(webp) == "animation"
    with pytest.raises(SourceUnreadableError, match="animated WebP"):
        probe(webp)


def test_a_recording_is_video(cfr_source):
    assert classify(cfr_source) == "video"
    info = probe(cfr_source)
    assert info.kind == "video" and info.video.field_order == "progressive"
    assert tonemap.describe(info) is None and deinterlace_filters(info) == [] and deinterlace_note(info) is None


# ---------------------------------------------------------------- HDR

#: Largest hue difference (CIELAB, degrees) allowed between a saturated
#: BT.2020 patch and its SDR proxy. Measured on these patches (most of them
#: outside BT.709, desaturated toward their own luminance): 0.2-3.0 degrees
#: for PQ, 0.4-2.9 for HLG; the margin covers JPEG chroma loss.
HUE_TOLERANCE_DEG = 6.0

_XYZ_FROM_2020 = np.array([[0.6370, 0.1446, 0.1689], [0.2627, 0.6780, 0.0593], [0.0000, 0.0281, 1.0610]])
_XYZ_FROM_709 = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def _hue(linear_rgb: np.ndarray, to_xyz: np.ndarray) -> float:
    xyz = to_xyz @ linear_rgb / _D65
    f = np.cbrt(np.maximum(xyz, 1e-9))
    a, b = 500 * (f[0] - f[1]), 200 * (f[1] - f[2])
    return float(np.degrees(np.arctan2(b, a)))


def _patch(rgb: np.ndarray, row: int, i: int) -> np.ndarray:
    y0, y1, x0, x1 = hdr_patch_box(row, i, *rgb.shape[:2])
    return rgb[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)


@pytest.fixture(scope="module", params=["pq", "hlg"])
def hdr_proxy(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"hdr-{request.param}")
    source = make_hdr_recording(d / f"{request.param}.mkv", request.param, frames=6)
    info = probe(source)
    return request.param, info, encode_proxy(info, d / "proxy")


def test_hdr_is_recognised_with_its_metadata(hdr_proxy):
    transfer, info, _ = hdr_proxy
    assert info.video.transfer == {"pq": "smpte2084", "hlg": "arib-std-b67"}[transfer]
    assert info.video.primaries == "bt2020"
    assert tonemap.hdr_transfer(info) == transfer
    assert tonemap.source_peak(info) == 1000
    if transfer == "pq":
        assert info.video.content_light == 1000 and info.video.mastering_peak == 1000
    note = tonemap.describe(info)
    assert "tone-mapped to SDR BT.709" in note and ("PQ" if transfer == "pq" else "HLG") in note


def test_hdr_proxy_keeps_every_frame_in_place(hdr_proxy):
    _, info, result = hdr_proxy
    with ProxyReader(result.proxy_path) as r:
        assert len(r) == info.video.frame_count == 6
        assert [read_index(r[k]) for k in range(len(r))] == list(range(6))
    report = verify_proxy(info.path, result.proxy_path, samples=None)
    assert report.ok, report.mismatches


def test_hdr_greys_land_where_the_tone_curve_puts_them(hdr_proxy):
    _, info, result = hdr_proxy
    with ProxyReader(result.proxy_path) as r:
        rgb = r[3].astype(np.float64)
    greys = np.array([_patch(rgb, 0, i).mean() for i in range(len(HDR_GREY_NITS))])
    expected = 255 * tonemap.to_sdr(np.array([[n, n, n] for n in HDR_GREY_NITS]), 1000)[:, 0]
    # Mid grey and every grey within 3 codes of the curve (LUT + JPEG loss).
    assert np.abs(greys - expected).max() < 3.0, (greys, expected)
    mid = greys[HDR_GREY_NITS.index(26.0)]
    assert 100 < mid < 116  # BT.2408's 18% grey, below the knee: 26/203 in light, gamma 2.4
    white = greys[HDR_GREY_NITS.index(203.0)]
    assert 220 < white < 245  # diffuse white near SDR white, headroom left for highlights
    # Highlights up to the peak are compressed, never clipped: brighter stays brighter.
    highlights = greys[HDR_GREY_NITS.index(203.0) :]
    assert np.all(np.diff(highlights) > -1.0), highlights
    assert highlights[1] > white + 10 and greys[-2] < 255
    # BT.2390's curve rises all the way to the peak and flattens only there.
    nits = np.linspace(203, 1000, 50)
    curve = tonemap.to_sdr(np.repeat(nits[:, None], 3, axis=1), 1000)[:, 0]
    assert np.all(np.diff(curve) >= -1e-12) and np.all(np.diff(curve[nits <= 800]) > 1e-4)


def test_hdr_colours_keep_their_hue(hdr_proxy):
    transfer, info, result = hdr_proxy
    with ProxyReader(result.proxy_path) as r:
        rgb = r[3].astype(np.float64)
    for i, nits in enumerate(HDR_COLOUR_NITS):
        shown = np.power(_patch(rgb, 1, i) / 255, 2.4)  # BT.709 display light
        want, got = _hue(np.array(nits), _XYZ_FROM_2020), _hue(shown, _XYZ_FROM_709)
        diff = abs((got - want + 180) % 360 - 180)
        assert diff < HUE_TOLERANCE_DEG, (transfer, i, nits, want, got)


# ---------------------------------------------------------------- anamorphic


@pytest.mark.parametrize(
    "width, height, sar, proxy_size",
    [
        (720, 576, fractions.Fraction(16, 15), (480, 360)),
        (720, 576, fractions.Fraction(64, 45), (640, 360)),
        (1440, 1080, fractions.Fraction(4, 3), (640, 360)),
    ],
)
def test_anamorphic_proxy_and_original_are_square_pixel_at_display_aspect(tmp_path, width, height, sar, proxy_size):
    source = make_recording(RecordingSpec(path=tmp_path / "ana.mp4", frames=8, width=width, height=height, sample_aspect=sar, gop=4, bframes=1))
    info = probe(source)
    assert info.video.sample_aspect == sar
    assert (info.video.display_width, info.video.display_height) == (round(width * sar), height)
    result = encode_proxy(info, tmp_path / "proxy")
    assert (result.width, result.height) == proxy_size
    with ProxyReader(result.proxy_path) as r:
        assert r[0].shape[:2] == (proxy_size[1], proxy_size[0])
        assert [read_index(r[k]) for k in range(len(r))] == list(range(8))
        pts = int(r.frame_map.source_pts[5])
    original = original_rgb(source, pts)
    assert original.shape[:2] == (height, round(width * sar))
    assert read_index(original) == 5


# ---------------------------------------------------------------- interlaced


@pytest.mark.parametrize("flagged, order", [(True, "tff"), (True, "bff"), (False, "tff")])
def test_interlaced_sources_are_deinterlaced_one_frame_per_frame(tmp_path, flagged, order):
    source = make_interlaced_recording(tmp_path / "tv.mp4", frames=16, flagged=flagged, order=order)
    info = probe(source)
    assert info.video.field_order == order  # flagged, or found by idet
    assert deinterlace_filters(info) and "bwdif" in deinterlace_note(info)
    result = encode_proxy(info, tmp_path / "proxy")
    with av.open(str(source)) as c:
        source_pts = sorted(f.pts for f in c.decode(video=0))
    with ProxyReader(result.proxy_path) as r:
        assert len(r) == 16
        assert list(r.frame_map.source_pts) == source_pts
        assert [read_index(r[k]) for k in range(len(r))] == list(range(16))
    with av.open(str(source)) as c:
        raw = list(c.decode(video=0))
        raw_pts = [f.pts for f in raw]
        out = [frame for _, frame in deinterlaced(info, [(f.pts, f) for f in raw])]
    assert [f.pts for f in out] == raw_pts  # one frame out per frame in, same pts

    def combing(frame: av.VideoFrame) -> float:
        """Mean distance of each row from the average of its neighbours (texture area only)."""
        y = frame.to_ndarray(format="gray").astype(np.float64)[frame.height * 5 // 8 :]
        return float(np.mean(np.abs(y[1:-1] - (y[:-2] + y[2:]) / 2)))

    assert combing(out[8]) < combing(raw[8]) / 2


# ---------------------------------------------------------------- the watcher


def test_watch_ignores_what_is_not_a_recording_in_one_line_each(refused, make_media, run_cli, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    others = {}
    for kind, name in (("text", "notes.txt"), ("image", "still.png"), ("audio", "voice.mp3"), ("cover-art", "song.mp3"), ("data", "telemetry.ts")):
        source = next(p for p in refused[kind] if p.name == name)
        (folder / name).write_bytes(source.read_bytes())
        others[folder / name] = REFUSED_KINDS[kind]
    good = folder / "good.mp4"
    good.write_bytes(make_media("watch-good.mp4", frames=12, gop=6, bframes=1).read_bytes())
    cache_dir = tmp_path / "cache"
    result = run_cli("watch", "--once", "--settle", "0.5", "--pattern", "*", folder, cache_dir=cache_dir)
    assert result.returncode == 0, result.stderr
    messages = [line.split(" ", 3)[3] for line in result.stderr.splitlines() if line.count(" ") >= 3]
    for path, reason in others.items():
        assert [m for m in messages if str(path) in m] == [f"ignored {path}: {reason}"], result.stderr
    assert [m for m in messages if m.startswith(("encoding", "skipped"))] == [f"encoding {good}"], result.stderr
    [entry] = ProxyCache(cache_dir).entries()
    with ProxyReader(entry.proxy_path) as r:
        assert [read_index(r[k]) for k in range(len(r))] == list(range(12))


def test_info_says_what_a_file_is(refused, run_cli, tmp_path):
    gif = _animation(tmp_path / "loop.gif", "gif", "gif")
    text = run_cli("info", gif)
    assert text.returncode == 0, text.stderr
    assert f"{gif} (animation: gif" in " ".join(text.stdout.split())
    data = json.loads(run_cli("info", "--json", gif).stdout)
    assert data["kind"] == "animation" and data["field_order"] == "progressive" and data["transfer"] and data["primaries"]
    song = refused["cover-art"][0]
    result = run_cli("info", song)
    assert result.returncode == 3 and f"error: {song}: {REFUSED_KINDS['cover-art']}" in result.stderr
