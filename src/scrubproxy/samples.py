"""Synthetic recordings whose frames carry their own index in their pixels.

Used by ``scrubproxy demo``, the tests and the benchmarks: every frame shows its
index as a 3 x 8 grid of black/white cells over the top half of the picture (24
bits, big enough to survive downscaling to a few dozen pixels and strong JPEG
compression), saturated colour patches for colour checks and a moving texture
so that encoders see real motion. ``read_index`` recovers the index from an RGB
picture of any size.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

INDEX_ROWS = 3
INDEX_COLS = 8
INDEX_BITS = INDEX_ROWS * INDEX_COLS

#: Saturated patches (RGB) drawn in the lower half, left to right: red, green,
#: blue, yellow, cyan, magenta, mid grey. Colour-matrix mistakes show up here.
PATCH_COLOURS: tuple[tuple[int, int, int], ...] = (
    (220, 30, 30),
    (30, 200, 40),
    (30, 40, 220),
    (230, 220, 30),
    (30, 210, 220),
    (210, 40, 200),
    (128, 128, 128),
)


def _cell_box(row: int, col: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel box (y0, y1, x0, x1) of one index cell in a picture of this size."""
    band = height // 2
    y0, y1 = row * band // INDEX_ROWS, (row + 1) * band // INDEX_ROWS
    x0, x1 = col * width // INDEX_COLS, (col + 1) * width // INDEX_COLS
    return y0, y1, x0, x1


def patch_box(i: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel box (y0, y1, x0, x1) of colour patch ``i``, inner part only."""
    n = len(PATCH_COLOURS)
    y0, y1 = height * 5 // 8, height * 7 // 8
    x0, x1 = i * width // n, (i + 1) * width // n
    my, mx = (y1 - y0) // 4, (x1 - x0) // 4
    return y0 + my, y1 - my, x0 + mx, x1 - mx


class PatternPainter:
    """Paints frame ``k`` as an RGB array; keeps its static layers between frames."""

    def __init__(self, width: int, height: int, seed: int = 1, grain: int = 0) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        # Sensor-like grain (a few layers cycled) makes the bitrate and decode
        # cost of a camera recording; 0 keeps test media small.
        self._grain = [rng.integers(-grain, grain + 1, size=(height, width, 1), dtype=np.int16) for _ in range(4)] if grain else []
        # A smooth texture, wider than the picture, rolled sideways for motion.
        # Blocks rounded up so that sizes that are not multiples of 16 are covered.
        small = rng.integers(40, 200, size=(max(2, -(-height // 16)), max(2, -(-width // 16)), 3))
        tex = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)[:height].astype(np.uint8)
        self._texture = np.ascontiguousarray(tex)
        self._base = np.zeros((height, width, 3), np.uint8)

    def paint(self, k: int) -> np.ndarray:
        h, w = self.height, self.width
        img = self._base
        tex = np.roll(self._texture, 7 * k, axis=1)[:, :w]
        if self._grain:
            img[:] = np.clip(tex[:h, :w] + self._grain[k % len(self._grain)], 0, 255)
        else:
            img[:] = tex[:h, :w]
        for bit in range(INDEX_BITS):
            row, col = divmod(bit, INDEX_COLS)
            y0, y1, x0, x1 = _cell_box(row, col, h, w)
            img[y0:y1, x0:x1] = 255 if (k >> (INDEX_BITS - 1 - bit)) & 1 else 0
        for i, rgb in enumerate(PATCH_COLOURS):
            n = len(PATCH_COLOURS)
            img[h * 5 // 8 : h * 7 // 8, i * w // n : (i + 1) * w // n] = rgb
        return img.copy()


def read_index(rgb: np.ndarray) -> int:
    """Read the frame index painted by :class:`PatternPainter` from an RGB picture."""
    h, w = rgb.shape[:2]
    luma = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    value = 0
    for bit in range(INDEX_BITS):
        row, col = divmod(bit, INDEX_COLS)
        y0, y1, x0, x1 = _cell_box(row, col, h, w)
        my, mx = (y1 - y0) // 4, (x1 - x0) // 4
        cell = luma[y0 + my : y1 - my, x0 + mx : x1 - mx]
        value = (value << 1) | int(cell.mean() > 128)
    return value


@dataclass(frozen=True)
class RecordingSpec:
    """What :func:`make_recording` writes.

    ``rate`` is the nominal frame rate; ``times`` (seconds), when given,
    overrides it with explicit presentation times for a variable-rate file.
    """

    path: Path
    frames: int = 60
    width: int = 320
    height: int = 240
    rate: fractions.Fraction = fractions.Fraction(30)
    codec: str = "libx264"
    gop: int = 30
    bframes: int = 0
    pix_fmt: str = "yuv420p"
    colorspace: str = "ITU601"  # matrix used to write the pixels (and tagged)
    full_range: bool = False
    rotation: int = 0  # display rotation stored as metadata, degrees
    sample_aspect: fractions.Fraction | None = None
    times: Sequence[float] | None = None
    start_time: float = 0.0
    codec_options: tuple[tuple[str, str], ...] = ()
    container_options: tuple[tuple[str, str], ...] = ()  # e.g. (("movflags", "frag_keyframe+empty_moov"),)
    audio: bool = False
    tone: float = 0.0  # audio: a sine of this many Hz (0: silence), so a test can tell whose sound plays
    grain: int = 0  # amplitude of per-pixel noise, as a camera's sensor adds
    first_index: int = 0  # index painted on the first frame (a recording's later part)


def _time_base_for(spec: RecordingSpec) -> fractions.Fraction:
    if spec.times is not None:
        return fractions.Fraction(1, 90000)
    return 1 / fractions.Fraction(spec.rate)


def make_recording(spec: RecordingSpec) -> Path:
    """Encode a synthetic recording described by ``spec`` with PyAV (writes ``spec.path``)."""
    path = Path(spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    painter = PatternPainter(spec.width, spec.height, grain=spec.grain)
    time_base = _time_base_for(spec)
    with av.open(str(path), "w", options=dict(spec.container_options)) as out:
        stream = out.add_stream(spec.codec, rate=spec.rate)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = spec.pix_fmt
        stream.time_base = time_base
        cc = stream.codec_context
        cc.time_base = time_base
        cc.gop_size = spec.gop
        cc.max_b_frames = spec.bframes
        colorspace = av.video.reformatter.Colorspace[spec.colorspace]
        cc.colorspace = int(colorspace)
        cc.color_range = 2 if spec.full_range else 1
        if spec.sample_aspect is not None:
            cc.sample_aspect_ratio = spec.sample_aspect
        options = {"bf": str(spec.bframes)} if spec.codec == "libx264" else {}
        if spec.codec == "libx264":
            options.update({"preset": "veryfast", "keyint_min": str(spec.gop), "sc_threshold": "0"})
        if spec.codec == "libx265":
            options.update({"preset": "ultrafast", "x265-params": f"keyint={spec.gop}:bframes={spec.bframes}:log-level=error"})
        options.update(dict(spec.codec_options))
        cc.options = options
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        audio = out.add_stream("aac", rate=48000) if spec.audio else None
        start_ticks = round(spec.start_time / time_base)
        audio_samples = 0
        for k in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(painter.paint(spec.first_index + k), format="rgb24")
            frame = frame.reformat(
                format=spec.pix_fmt,
                dst_colorspace=colorspace,
                dst_color_range=2 if spec.full_range else 1,
            )
            frame.colorspace = int(colorspace)
            frame.color_range = 2 if spec.full_range else 1
            if spec.times is not None:
                frame.pts = start_ticks + round(spec.times[k] / time_base)
            else:
                frame.pts = start_ticks + k
            frame.time_base = time_base
            out.mux(stream.encode(frame))
            if audio is not None:
                audio_samples = _mux_audio(out, audio, audio_samples, int((k + 1) / spec.rate * 48000), spec.tone)
        out.mux(stream.encode(None))
        if audio is not None:
            out.mux(audio.encode(None))
    return path


def _mux_audio(out: av.container.OutputContainer, audio: av.audio.stream.AudioStream, have: int, want: int, tone: float) -> int:
    """Mux silence (or a ``tone`` Hz sine at half scale) until the audio holds ``want`` samples; returns the samples muxed."""
    while have + 1024 <= want:
        t = np.arange(have, have + 1024) / 48000
        wave = (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32)[None, :] if tone else np.zeros((1, 1024), np.float32)
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = have
        out.mux(audio.encode(frame))
        have += 1024
    return have


def vfr_times(seed: int = 3, stretches: Iterable[tuple[float, int]] = ((60, 40), (30, 30), (20, 20), (60, 30)), drop: float = 0.1) -> list[float]:
    """Presentation times of a variable-rate recording: stretches of
    (rate, frames), with about ``drop`` of the frames dropped at random."""
    rng = np.random.default_rng(seed)
    times, t = [], 0.0
    for rate, count in stretches:
        for _ in range(count):
            if not times or rng.random() >= drop:
                times.append(round(t, 6))
            t += 1.0 / rate
    return times


#: Patches of an HDR sample (lower half, two rows), as BT.2020 display light in
#: nits: a grey ramp (26 nits is BT.2408's HDR 18% grey, 203 its reference
#: white), then saturated BT.2020 colours at moderate light.
HDR_GREY_NITS: tuple[float, ...] = (26.0, 100.0, 203.0, 400.0, 600.0, 800.0, 1000.0)
HDR_COLOUR_NITS: tuple[tuple[float, float, float], ...] = (
    (150.0, 10.0, 10.0),
    (10.0, 150.0, 10.0),
    (10.0, 10.0, 150.0),
    (150.0, 150.0, 10.0),
    (10.0, 150.0, 150.0),
    (150.0, 10.0, 150.0),
    (60.0, 30.0, 10.0),
)
#: The index cells of an HDR sample: black and reference white.
HDR_INDEX_WHITE_NITS = 203.0


def hdr_patch_box(row: int, i: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel box (y0, y1, x0, x1), inner part, of patch ``i`` of row 0 (greys) or 1 (colours)."""
    n = len(HDR_GREY_NITS)
    y0 = height // 2 + row * height // 4
    y1 = y0 + height // 4
    x0, x1 = i * width // n, (i + 1) * width // n
    my, mx = (y1 - y0) // 4, (x1 - x0) // 4
    return y0 + my, y1 - my, x0 + mx, x1 - mx


def paint_hdr_nits(k: int, width: int, height: int) -> np.ndarray:
    """Frame ``k`` of an HDR sample as BT.2020 display light (H, W, 3) in nits:
    the index over the top half (0 and 203 nits), the patches below."""
    img = np.zeros((height, width, 3), np.float64)
    for bit in range(INDEX_BITS):
        row, col = divmod(bit, INDEX_COLS)
        y0, y1, x0, x1 = _cell_box(row, col, height, width)
        img[y0:y1, x0:x1] = HDR_INDEX_WHITE_NITS if (k >> (INDEX_BITS - 1 - bit)) & 1 else 0.0
    n = len(HDR_GREY_NITS)
    for i in range(n):
        x0, x1 = i * width // n, (i + 1) * width // n
        img[height // 2 : height * 3 // 4, x0:x1] = HDR_GREY_NITS[i]
        img[height * 3 // 4 :, x0:x1] = HDR_COLOUR_NITS[i]
    return img


def _bt2020_yuv420p10(signal: np.ndarray) -> av.VideoFrame:
    """Non-linear BT.2020 R'G'B' in [0, 1] -> a limited-range 10-bit 4:2:0 frame (BT.2020 non-constant luminance)."""
    r, g, b = signal[..., 0], signal[..., 1], signal[..., 2]
    y = 0.2627 * r + 0.6780 * g + 0.0593 * b
    cb, cr = (b - y) / 1.8814, (r - y) / 1.4746
    h, w = y.shape
    planes = [
        np.round(64 + 876 * y),
        np.round(512 + 896 * cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))),
        np.round(512 + 896 * cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))),
    ]
    frame = av.VideoFrame(w, h, "yuv420p10le")
    for plane, values in zip(frame.planes, planes):
        rows = np.zeros((values.shape[0], plane.line_size // 2), np.uint16)
        rows[:, : values.shape[1]] = np.clip(values, 0, 1023)
        plane.update(rows.tobytes())
    return frame


def make_hdr_recording(
    path: Path,
    transfer: str = "pq",
    frames: int = 6,
    width: int = 640,
    height: int = 360,
    max_cll: int | None = 1000,
    mastering_peak: int | None = 1000,
) -> Path:
    """A 10-bit HEVC (libx265) HDR recording, ``transfer`` ``pq`` or ``hlg``,
    BT.2020, painted by :func:`paint_hdr_nits` (index and patches of known
    light). PQ gets HDR10 metadata (MaxCLL, mastering peak) unless None."""
    from .tonemap import nits_to_hlg, nits_to_pq  # the BT.2100 formulas live there

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trc = {"pq": (16, "smpte2084"), "hlg": (18, "arib-std-b67")}[transfer]
    params = ["log-level=error", "keyint=30", "colorprim=bt2020", f"transfer={trc[1]}", "colormatrix=bt2020nc"]
    if transfer == "pq" and mastering_peak:
        params += ["hdr10=1", f"master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L({mastering_peak * 10000},1)"]
    if transfer == "pq" and max_cll:
        params += [f"max-cll={max_cll},400"]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        cc = stream.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = 9, trc[0], 9, 1
        cc.options = {"preset": "ultrafast", "x265-params": ":".join(params)}
        for k in range(frames):
            nits = paint_hdr_nits(k, width, height)
            signal = nits_to_pq(nits) if transfer == "pq" else nits_to_hlg(nits)
            frame = _bt2020_yuv420p10(signal)
            frame.pts = k
            frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range = 9, trc[0], 9, 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def make_interlaced_recording(path: Path, frames: int = 20, width: int = 720, height: int = 576, flagged: bool = True, order: str = "tff") -> Path:
    """A 25 fps H.264 recording whose two fields come from different moments
    (the bottom field's texture moved on: combing), each frame's index painted
    in both fields. ``flagged``: coded as interlaced (x264 ``tff``/``bff``);
    else coded progressive, so only ``idet`` can tell."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    painter = PatternPainter(width, height)
    second = 1 if order == "tff" else 0  # the field shown second: its texture has moved on
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        cc = stream.codec_context
        cc.colorspace, cc.color_range = int(av.video.reformatter.Colorspace.ITU601), 1
        options = {"preset": "veryfast", "bf": "0", "g": "25"}
        if flagged:
            options.update({"flags": "+ildct+ilme", "x264-params": f"{order}=1"})
        cc.options = options
        for k in range(frames):
            rgb = painter.paint(k)
            rgb[second::2] = np.roll(rgb[second::2], 6, axis=1)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_colorspace=av.video.reformatter.Colorspace.ITU601, dst_color_range=1)
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
