"""From a decoded source frame to a proxy JPEG: geometry, colour, the filter chain, compression.

Shared by the encoder (which converts every frame on a pool of threads) and by
``verify`` (which converts a source frame exactly as the encoder did, to
compare it with the proxy's frame).

The chain: area-average scaling to the proxy size with square pixels (the
closest to the source in PSNR, 2 dB above bilinear on 1080p -> 360p and
cheaper than it); BT.601 full-range output from whatever matrix and range the
source has (the only thing a JPEG decoder assumes); display rotation applied.
Compression is libjpeg-turbo (simplejpeg) straight from the planes.
"""

from __future__ import annotations

import fractions
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import av
import av.filter
import numpy as np
import simplejpeg

from .probe import SourceInfo
from .settings import ProxySettings
from .tonemap import hdr_filters

#: Probe's matrix names -> (libavfilter ``scale`` name, ``colorspace`` name).
_MATRIX_NAMES = {
    "bt709": ("bt709", "bt709"),
    "fcc": ("fcc", "fcc"),
    "bt470bg": ("bt470", "bt470bg"),
    "smpte170m": ("smpte170m", "smpte170m"),
    "smpte240m": ("smpte240m", "smpte240m"),
    "bt2020nc": ("bt2020", "bt2020ncl"),
    "bt2020c": ("bt2020", "bt2020ncl"),
}

#: libjpeg quality for each MJPEG quantiser (``-q:v``, 2 to 31): the quality
#: whose luma PSNR equals FFmpeg's MJPEG encoder at that ``-q:v`` on 360p frames
#: of the 1080p60 bench source, plus 4, which makes ``-q:v 5`` as close to the
#: full-resolution source as FFmpeg's encoder (bench/generate.py). Interpolated between.
_QSCALE_TO_JPEG_QUALITY = ((2, 96), (3, 92), (4, 86), (5, 82), (6, 76), (8, 60), (10, 48), (12, 38), (16, 28), (20, 22), (25, 20), (31, 14))

FilterChain = list[tuple[str, str]]


@dataclass(frozen=True)
class ProxyGeometry:
    """Proxy picture size: ``scaled`` is what the source is scaled to before
    rotation, ``width``/``height`` the upright proxy size."""

    width: int
    height: int
    scaled_width: int
    scaled_height: int


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def proxy_geometry(info: SourceInfo, settings: ProxySettings) -> ProxyGeometry:
    """Upright proxy size: ``settings.height`` high (never above the source's
    own height), square pixels, aspect kept, even dimensions."""
    v = info.video
    height = min(settings.height, v.display_height)
    height = max(2, height - height % 2)
    width = _even(height * v.display_width / v.display_height)
    if v.rotation in (90, 270):
        return ProxyGeometry(width, height, height, width)
    return ProxyGeometry(width, height, width, height)


def source_matrix(info: SourceInfo) -> tuple[str, str]:
    """(matrix as probe names it, range ``tv``/``pc``) of the source, guessing as
    players do when the file does not say: BT.709 from 720 lines up, limited range."""
    v = info.video
    matrix = v.matrix if v.matrix in _MATRIX_NAMES else ("bt709" if v.height >= 720 else "smpte170m")
    full = v.color_range == "full" or v.pix_fmt.startswith("yuvj")
    return matrix, "pc" if full else "tv"


def filter_chain(info: SourceInfo, geometry: ProxyGeometry) -> FilterChain:
    """The libavfilter chain from a decoded source frame to an MJPEG-ready frame:
    8-bit 4:2:0, BT.601 matrix, full range, square pixels, upright.

    Scaling keeps the source's matrix and range, and the ``colorspace`` filter
    converts them at proxy size: half the cost of letting swscale convert the
    matrix at source size (1.7 against 3.3 ms a 1080p frame, measured).
    """
    matrix, rng = source_matrix(info)
    scale_name, space_name = _MATRIX_NAMES[matrix]
    chain = hdr_filters(info, geometry.scaled_width, geometry.scaled_height) or [
        (
            "scale",
            f"{geometry.scaled_width}:{geometry.scaled_height}:flags=area"
            f":in_color_matrix={scale_name}:out_color_matrix={scale_name}:in_range={rng}:out_range={rng}",
        ),
        # 8-bit 4:2:0 (without the deprecated "J" formats, which the colorspace
        # filter refuses) straight from the scaler: a 10-bit source loses its
        # extra bits in the same pass that shrinks it, and the matrix is then
        # converted on 8-bit proxy-size planes (1.1 against 1.6 ms a 1080p
        # frame, bench/generate.py's hevc-10bit row for the PSNR).
        ("format", "yuv420p"),
        # Primaries and transfer stay as they are (fast=1): only matrix and range change.
        ("colorspace", f"ispace={space_name}:irange={rng}:iprimaries=bt709:itrc=bt709:space=bt470bg:range=pc:primaries=bt709:trc=bt709:fast=1:format=yuv420p"),
    ]
    chain.append(("setsar", "1"))
    rotation = info.video.rotation
    if rotation == 90:
        chain.append(("transpose", "cclock"))
    elif rotation == 180:
        chain += [("hflip", ""), ("vflip", "")]
    elif rotation == 270:
        chain.append(("transpose", "clock"))
    return chain


class FrameFilter:
    """A configured libavfilter graph: push one decoded frame, pull one proxy frame.

    A graph is built for one input size and pixel format (``size``); a source
    that changes them mid-stream needs a new one.
    """

    def __init__(self, template: av.VideoFrame, chain: FilterChain, threads: int = 0) -> None:
        self.graph = av.filter.Graph()
        self.graph.threads = threads  # 0: FFmpeg's choice (slice threads, one per core)
        node = self.graph.add_buffer(
            width=template.width,
            height=template.height,
            format=template.format.name,
            time_base=template.time_base or fractions.Fraction(1, 1000),
        )
        for name, args in chain:
            nxt = self.graph.add(name, args) if args else self.graph.add(name)
            node.link_to(nxt)
            node = nxt
        sink = self.graph.add("buffersink")
        node.link_to(sink)
        self.graph.configure()
        self.size = frame_size(template)

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.graph.push(frame)
        return self.graph.pull()


def frame_size(frame: av.VideoFrame) -> tuple[int, int, str]:
    """What a :class:`FrameFilter` is built for: (width, height, pixel format)."""
    return frame.width, frame.height, frame.format.name


def jpeg_quality(qscale: int) -> int:
    """libjpeg quality (1-100) equivalent to the MJPEG quantiser ``qscale`` (``-q:v``)."""
    return round(float(np.interp(qscale, *zip(*_QSCALE_TO_JPEG_QUALITY))))


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """One plane of a yuv420p frame as a contiguous (rows, columns) array."""
    plane = frame.planes[index]
    rows, cols = (frame.height, frame.width) if index == 0 else (frame.height // 2, frame.width // 2)
    return np.ascontiguousarray(np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols])


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The luma plane of a filtered (yuv420p) frame as float32 (rows, columns)."""
    return _plane(frame, 0).astype(np.float32)


class ConversionPool:
    """Turns decoded source frames into proxy JPEGs on worker threads.

    Scaling and compression are most of the work after decoding, and both
    release the GIL; done on one thread they made that thread the bottleneck
    of the whole encode (it was busy all the time while the decoder waited on
    the queue). Each worker keeps its own filter graph (the chain holds no
    state between frames) and runs it single-threaded: the parallelism is
    across frames. Results come back in submission order.

    Frames are compressed by libjpeg-turbo (simplejpeg) straight from their
    planes: 0.6 ms a 640x360 frame against 1.8 ms in FFmpeg's MJPEG encoder.
    """

    def __init__(self, chain: FilterChain, quality: int, workers: int | None = None) -> None:
        self.chain = chain
        self.quality = quality
        self.workers = workers or convert_workers()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="scrubproxy-convert")

    def _filter_for(self, frame: av.VideoFrame) -> FrameFilter:
        frame_filter: FrameFilter | None = getattr(self._local, "filter", None)
        if frame_filter is None or frame_filter.size != frame_size(frame):
            frame_filter = self._local.filter = FrameFilter(frame, self.chain, threads=1)
        return frame_filter

    def _convert(self, frame: av.VideoFrame) -> bytes:
        out = self._filter_for(frame)(frame)
        return simplejpeg.encode_jpeg_yuv_planes(_plane(out, 0), _plane(out, 1), _plane(out, 2), quality=self.quality)

    def submit(self, frame: av.VideoFrame) -> Future[bytes]:
        """Start converting ``frame``; the future gives its JPEG."""
        return self._pool.submit(self._convert, frame)

    def close(self) -> None:
        """Wait for running conversions (their graphs must not be freed under them) and drop queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def convert_workers() -> int:
    """Enough conversion threads to keep up with the decoder: converting a
    1080p frame takes about 2 ms of one core (two thirds of decoding it), so
    four threads (about 1,900 frames/s) outrun what FFmpeg's frame threads
    decode even on 16 cores (560 frames/s measured). Each holds one source
    frame: more would only cost memory (12 MB a 4K frame)."""
    return max(2, min(4, (os.cpu_count() or 2) // 2))
