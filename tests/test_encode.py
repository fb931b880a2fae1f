"""The encoder: one upright, square-pixel, BT.601 full-range proxy frame per
source frame, in order, on sources made with PyAV whose frames carry their index."""

from __future__ import annotations

import fractions
import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from scrubproxy import ProxyCache, ProxySettings
from scrubproxy.decode import SourceDecoder
from scrubproxy.encode import encode_proxy
from scrubproxy.probe import probe
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import PATCH_COLOURS, PatternPainter, patch_box, read_index

#: Largest error (RGB levels, per channel, patch mean) a correct colour path shows
#: here; the reference's ffmpeg command is 20 to 35 levels off on BT.709 sources.
COLOUR_TOLERANCE = 6


def proxy_indices(path: Path) -> list[int]:
    with ProxyReader(path) as r:
        return [read_index(r[k]) for k in range(len(r))]


def patch_errors(jpeg: bytes) -> list[int]:
    """Per patch, the largest channel error of its mean colour, decoded by Pillow
    (an independent decoder that reads JPEG as BT.601 full range)."""
    img = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.float64)
    h, w = img.shape[:2]
    errors = []
    for i, rgb in enumerate(PATCH_COLOURS):
        y0, y1, x0, x1 = patch_box(i, h, w)
        mean = img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
        errors.append(round(np.abs(mean - np.asarray(rgb)).max()))
    return errors


def upright_reference(width: int, height: int, k: int, quarter_turns: int, size: tuple[int, int]) -> np.ndarray:
    """Source frame ``k`` as a player shows it (np.rot90 counter-clockwise), scaled to ``size`` (w, h)."""
    src = np.ascontiguousarray(np.rot90(PatternPainter(width, height).paint(k), quarter_turns))
    return np.asarray(Image.fromarray(src).resize(size, Image.BILINEAR)).astype(np.int16)


def test_long_gop_with_b_frames_gives_one_proxy_frame_per_source_frame_in_order(cache: ProxyCache, make_media):
    src = make_media("longgop.mp4", frames=90, gop=90, bframes=3)
    assert probe(src).video.frame_count == 90
    assert proxy_indices(cache.ensure(src)) == list(range(90))


def test_hevc_with_b_frames_in_matroska_keeps_every_frame_in_order(cache: ProxyCache, make_media):
    src = make_media("hevc-bframes.mkv", frames=40, codec="libx265", gop=40, bframes=4)
    assert proxy_indices(cache.ensure(src)) == list(range(40))


def test_a_size_change_mid_stream_keeps_every_frame_at_one_proxy_size(tmp_path, make_media):
    """An MPEG-TS whose picture size changes part-way (a camera reconfigured
    mid-recording): every frame still comes out, in order, at the size set by
    the first frame (each conversion thread rebuilds its filter for the new size)."""
    first = make_media("resize-a.ts", frames=30, width=320, height=240, gop=10, bframes=2)
    second = make_media("resize-b.ts", frames=30, width=640, height=360, gop=10, bframes=2, start_time=1.0, first_index=30)
    joined = tmp_path / "resized.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    result = encode_proxy(joined, tmp_path / "out", ProxySettings(hwaccel="none"))
    assert result.frames == 60
    with ProxyReader(result.proxy_path) as r:
        assert {r[k].shape for k in range(len(r))} == {(240, 320, 3)}
    assert proxy_indices(result.proxy_path) == list(range(60))


def test_odd_size_source_gives_even_proxy_dimensions(cache: ProxyCache, make_media):
    src = make_media("odd.mp4", frames=12, width=318, height=238, gop=12, bframes=2)
    path = cache.ensure(src, settings=ProxySettings(height=237))
    with ProxyReader(path) as r:
        assert (r.metadata.width % 2, r.metadata.height % 2) == (0, 0)
        assert r.metadata.height == 236
        assert abs(r.metadata.width / r.metadata.height - 318 / 238) < 0.02
        assert [read_index(r[k]) for k in range(len(r))] == list(range(12))


@pytest.mark.parametrize("rotation, quarter_turns", [(90, 1), (270, 3), (180, 2)])
def test_rotated_source_gives_an_upright_proxy(cache: ProxyCache, make_media, rotation, quarter_turns):
    w, h = 318, 238
    src = make_media(f"rot{rotation}.mp4", frames=8, width=w, height=h, rotation=rotation, gop=8, bframes=2)
    assert probe(src).video.rotation == rotation
    with ProxyReader(cache.ensure(src)) as r:
        expected_shape = (w, h) if rotation in (90, 270) else (h, w)
        assert (r.metadata.height, r.metadata.width) == expected_shape
        for k in range(len(r)):
            frame = r[k].astype(np.int16)
            size = (frame.shape[1], frame.shape[0])
            right = np.abs(frame - upright_reference(w, h, k, quarter_turns, size)).mean()
            assert right < 8, f"frame {k}: {right:.1f} levels from the upright source"
            # The check can tell the turns apart: the opposite turn is far off.
            wrong = np.abs(frame - upright_reference(w, h, k, quarter_turns + 2, size)).mean()
            assert wrong > 4 * right
            assert read_index(np.rot90(r[k], -quarter_turns)) == k


def test_non_square_pixels_are_made_square(cache: ProxyCache, make_media):
    src = make_media("anamorphic.mp4", frames=6, width=320, height=240, sample_aspect=fractions.Fraction(4, 3))
    with ProxyReader(cache.ensure(src)) as r:
        # 320x240 pixels 4/3 wide are shown 427x240: the proxy is that shape with square pixels.
        assert r.metadata.height == 240
        assert r.metadata.width in (426, 428)
        assert proxy_indices(r.metadata.proxy_path) == list(range(6))
        assert max(patch_errors(r.jpeg(3))) <= COLOUR_TOLERANCE


@pytest.mark.parametrize(
    "name, spec",
    [
        ("bt601-limited.mp4", {"colorspace": "ITU601", "full_range": False}),
        ("bt601-full.mp4", {"colorspace": "ITU601", "full_range": True}),
        ("bt709-hd-limited.mp4", {"colorspace": "ITU709", "width": 1280, "height": 720}),
        ("bt709-hd-full.mp4", {"colorspace": "ITU709", "width": 1280, "height": 720, "full_range": True}),
        ("bt709-10bit-hevc.mkv", {"colorspace": "ITU709", "width": 1280, "height": 720, "codec": "libx265", "pix_fmt": "yuv420p10le"}),
    ],
)
def test_proxy_colours_match_the_painted_colours(cache: ProxyCache, make_media, name, spec):
    src = make_media(name, frames=4, gop=4, **spec)
    info = probe(src).video
    assert info.color_range == ("full" if spec.get("full_range") else "limited")
    if spec.get("pix_fmt") == "yuv420p10le":
        assert info.bit_depth == 10
    with ProxyReader(cache.ensure(src)) as r:
        assert r.metadata.height == min(360, spec.get("height", 240))
        for k in (0, len(r) - 1):
            assert read_index(r[k]) == k
            errors = patch_errors(r.jpeg(k))
            assert max(errors) <= COLOUR_TOLERANCE, f"patch errors {errors} (levels)"


def test_ten_bit_source_scaled_straight_to_eight_bit_keeps_every_frame_exact(cache: ProxyCache, make_media):
    """The chain drops a 10-bit source's extra bits in the scaler (not in a pass
    of its own): every frame still lands at its index, B-frames included, and
    the colours stay within the tolerance on the first, a middle and the last frame."""
    src = make_media("hevc-10bit-bframes.mkv", frames=24, gop=12, bframes=3, width=640, height=360, codec="libx265", pix_fmt="yuv420p10le", colorspace="ITU709")
    assert probe(src).video.bit_depth == 10
    with ProxyReader(cache.ensure(src)) as r:
        assert proxy_indices(r.metadata.proxy_path) == list(range(24))
        for k in (0, 11, 23):
            assert max(patch_errors(r.jpeg(k))) <= COLOUR_TOLERANCE


def _luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def test_the_encoders_h264_decoder_does_not_drift_over_a_long_gop(make_media):
    """The encoder skips H.264 deblocking only where no frame inherits it: over
    a GOP of 120 with B-frames and camera grain, the frames it decodes stay as
    close to a full decode at the end of the GOP as at its start (skipping it
    in every frame drifts to about 43 dB here by the middle of the GOP)."""
    src = make_media("drift-gop120.mp4", frames=120, width=320, height=240, gop=120, bframes=2, grain=6, codec_options=(("x264-params", "b-adapt=0"),))
    with av.open(str(src)) as c:
        full = {f.pts: f.to_ndarray(format="gray") for f in c.decode(video=0)}
    decoder = SourceDecoder(probe(src), "cpu")
    try:
        ours = [(pts, frame.to_ndarray(format="gray")) for pts, frame in decoder.frames()]
    finally:
        decoder.close()
    assert [pts for pts, _ in ours] == sorted(full)
    psnr = [_luma_psnr(full[pts], gray) for pts, gray in ours]
    assert min(psnr[60:]) >= 50, f"late-GOP luma PSNR against a full decode: {min(psnr[60:]):.1f} dB"


@pytest.mark.parametrize(
    "name, spec",
    [
        ("mpeg2.ts", {"codec": "mpeg2video"}),
        ("vp9.webm", {"codec": "libvpx-vp9", "width": 1280, "height": 720, "colorspace": "ITU709"}),
        ("av1.mkv", {"codec": "libsvtav1"}),
        ("prores-422-10bit.mov", {"codec": "prores_ks", "pix_fmt": "yuv422p10le", "width": 1280, "height": 720, "colorspace": "ITU709"}),
        ("h264-444.mp4", {"codec": "libx264", "pix_fmt": "yuv444p"}),
        ("ffv1-rgb.mkv", {"codec": "ffv1", "pix_fmt": "bgr0", "width": 1280, "height": 720, "colorspace": "ITU709"}),
        ("qtrle-rgb.mov", {"codec": "qtrle", "pix_fmt": "rgb24"}),
    ],
)
def test_other_codecs_and_pixel_formats_give_exact_true_colour_proxies(cache: ProxyCache, make_media, name, spec):
    """Recorders write more than H.264 4:2:0: MPEG-2 (broadcast), VP9 and AV1
    (browsers, OBS), ProRes 4:2:2 10-bit (cameras), 4:4:4 and RGB (screen capture)."""
    if spec["codec"] not in av.codecs_available:
        pytest.skip(f"{spec['codec']} is not in this FFmpeg build")
    src = make_media(name, frames=16, gop=8, **spec)
    with ProxyReader(cache.ensure(src)) as r:
        assert r.metadata.height == min(360, spec.get("height", 240))
        assert proxy_indices(r.metadata.proxy_path) == list(range(16))
        assert max(patch_errors(r.jpeg(5))) <= COLOUR_TOLERANCE


def test_the_colour_check_catches_a_matrix_mistake(make_media):
    """The tolerance is tight enough to see BT.709 pixels read as BT.601."""
    src = make_media("bt709-hd-limited.mp4", frames=4, gop=4, colorspace="ITU709", width=1280, height=720)
    with av.open(str(src)) as c:
        frame = next(c.decode(video=0))
        wrong = frame.to_ndarray(format="rgb24", src_colorspace=av.video.reformatter.Colorspace.ITU601)
    buf = io.BytesIO()
    Image.fromarray(wrong).save(buf, format="JPEG", quality=95)
    assert max(patch_errors(buf.getvalue())) > 3 * COLOUR_TOLERANCE


def _two_stream_source(path: Path) -> Path:
    """Matroska with a small video stream first (index painted + 1000) and a
    larger one second (index painted as is), as a screen-plus-camera recorder writes."""
    if path.exists():
        return path
    specs = [(160, 120, 1000), (320, 240, 0)]
    with av.open(str(path), "w") as out:
        streams = []
        for w, h, _ in specs:
            s = out.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.codec_context.options = {"preset": "ultrafast"}
            streams.append(s)
        painters = [PatternPainter(w, h) for w, h, _ in specs]
        for k in range(10):
            for s, p, (_, _, offset) in zip(streams, painters, specs):
                frame = av.VideoFrame.from_ndarray(p.paint(k + offset), format="rgb24").reformat(format="yuv420p")
                frame.pts = k
                out.mux(s.encode(frame))
        for s in streams:
            out.mux(s.encode(None))
    return path


def test_several_video_streams_default_to_the_largest(cache: ProxyCache, media_dir):
    src = _two_stream_source(media_dir / "two-streams.mkv")
    with ProxyReader(cache.ensure(src)) as r:
        assert r.metadata.height == 240
        assert [read_index(r[k]) for k in range(len(r))] == list(range(10))


def test_a_named_video_stream_is_used(cache: ProxyCache, media_dir):
    src = _two_stream_source(media_dir / "two-streams.mkv")
    path = cache.ensure(src, settings=ProxySettings(stream=0))
    with ProxyReader(path) as r:
        assert r.metadata.height == 120
        assert [read_index(r[k]) for k in range(len(r))] == list(range(1000, 1010))


def test_proxy_height_setting_is_honoured(cache: ProxyCache, make_media):
    src = make_media("cfr-small.mp4", frames=10, gop=10)
    with ProxyReader(cache.ensure(src, settings=ProxySettings(height=120))) as r:
        assert (r.metadata.width, r.metadata.height) == (160, 120)
        assert [read_index(r[k]) for k in range(len(r))] == list(range(10))


def test_proxy_is_never_upscaled(cache: ProxyCache, make_media):
    src = make_media("cfr-small.mp4", frames=10, gop=10)
    with ProxyReader(cache.ensure(src, settings=ProxySettings(height=1080))) as r:
        assert (r.metadata.width, r.metadata.height) == (320, 240)


def test_quality_setting_changes_the_proxy_size(tmp_path, make_media):
    src = make_media("cfr-small.mp4", frames=10, gop=10)
    sizes = {}
    for q in (2, 31):
        result = encode_proxy(src, tmp_path / f"q{q}", ProxySettings(quality=q))
        sizes[q] = result.proxy_path.stat().st_size
        assert proxy_indices(result.proxy_path) == list(range(10))
    assert sizes[2] > 2 * sizes[31]


def test_progress_callback_reports_done_total_and_rate_and_ends_complete(cache: ProxyCache, make_media):
    src = make_media("longgop.mp4", frames=90, gop=90, bframes=3)
    calls: list[tuple[int, int | None, float]] = []
    cache.ensure(src, progress=lambda done, total, fps: calls.append((done, total, fps)))
    assert calls, "progress was never reported"
    done = [c[0] for c in calls]
    assert done == sorted(done)
    assert all(total == 90 for _, total, _ in calls)
    assert all(fps > 0 for _, _, fps in calls)
    assert calls[-1][:2] == (90, 90)


@pytest.mark.parametrize(
    "field, value",
    [
        ("height", 15),
        ("height", 4321),
        ("height", 360.0),
        ("height", True),
        ("quality", 1),
        ("quality", 32),
        ("quality", False),
        ("codec", "h264"),
        ("stream", -1),
        ("stream", True),
        ("stream", "0"),
        ("hwaccel", ""),
    ],
)
def test_settings_out_of_range_are_bad_input(field, value):
    from scrubproxy.errors import BadInputError

    with pytest.raises(BadInputError, match=field):
        ProxySettings(**{field: value})


def test_settings_at_their_limits_are_accepted():
    assert ProxySettings(height=16, quality=2).height == 16
    assert ProxySettings(height=4320, quality=31, stream=0).quality == 31


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_the_encoder_finds_an_unflagged_field_order_on_its_own_frames(tmp_path, order):
    """Given a path, the encoder leaves idet to the frames it decodes anyway (no
    second decode in the probe): the field order it finds is the probe's, and the
    proxy is the one made from a full probe, byte for byte, every frame at its index."""
    from scrubproxy.samples import make_interlaced_recording

    source = make_interlaced_recording(tmp_path / "tv.mp4", frames=30, flagged=False, order=order)
    info = probe(source)
    assert info.video.field_order == order
    assert probe(source, detect_interlace=False).video.field_order == "undetected"
    own = encode_proxy(source, tmp_path / "own", ProxySettings(hwaccel="none"))
    full = encode_proxy(info, tmp_path / "full", ProxySettings(hwaccel="none"))
    assert own.source.video.field_order == order
    with ProxyReader(own.proxy_path) as a, ProxyReader(full.proxy_path) as b:
        assert len(a) == len(b) == 30
        assert [a.jpeg(k) for k in range(30)] == [b.jpeg(k) for k in range(30)]
        assert [read_index(a[k]) for k in range(30)] == list(range(30))


def test_a_progressive_broadcast_size_source_stays_progressive_when_the_encoder_looks(tmp_path, make_media):
    src = make_media("progressive-576.mp4", frames=30, gop=30, width=720, height=576)
    assert probe(src, detect_interlace=False).video.field_order == "undetected"
    result = encode_proxy(src, tmp_path / "p", ProxySettings(hwaccel="none"))
    assert result.source.video.field_order == probe(src).video.field_order == "progressive"
    assert proxy_indices(result.proxy_path) == list(range(30))
