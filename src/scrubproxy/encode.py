"""Transcode one source segment into one all-intra MJPEG proxy plus its frame map.

``encode_proxy`` is a plain function of (source, output base path, settings)
that runs in any process: it writes two unpublished files next to the output
base and returns them; publishing (rename, manifest) is the cache's job.

The data path per frame: decode (hardware if it works, else CPU with frame
threads and the H.264/HEVC loop filter skipped) -> one libavfilter chain
(area-average scaling to the proxy size with square pixels: the closest
to the source in PSNR, 2 dB above bilinear on 1080p -> 360p and cheaper
than it; BT.601 full-range output from
whatever matrix and range the source has, display rotation applied) -> JPEG
(libjpeg-turbo) -> MJPEG in AVI or Matroska. Decoding runs on a thread of its
own (with FFmpeg's frame threads), scaling and compression on a pool of
threads, a frame each, and the calling thread muxes the JPEGs in order, so
every core stays busy.

One proxy frame per decoded source frame, in order: the proxy's frame k is the
source's k-th frame in presentation order. The frame map records, for each k,
the source pts, the proxy pts and where the JPEG lies in the proxy file.
"""

from __future__ import annotations

import fractions
import logging
import mmap
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.filter
import numpy as np
import simplejpeg

from .deinterlace import deinterlaced
from .errors import BadInputError, EncodeError, HardwareDecodeError, SourceUnreadableError
from .framemap import FrameMapHeader, write_frame_map
from .probe import SourceInfo, open_container, probe
from .settings import ProxySettings
from .tonemap import hdr_filters

log = logging.getLogger(__name__)

#: ``progress(frames_done, frames_expected, frames_per_second)``
ProgressCallback = Callable[[int, "int | None", float], None]

#: Hardware decoders tried by ``hwaccel="auto"``, in order.
HWACCEL_CANDIDATES = ("cuda", "vaapi", "qsv", "videotoolbox", "d3d11va")

#: Matroska's default timestamp unit; the proxy's own pts are in it.
MKV_TIME_BASE = fractions.Fraction(1, 1000)

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

_PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks


@dataclass(frozen=True)
class ProxyGeometry:
    """Proxy picture size: ``scaled`` is what the source is scaled to before
    rotation, ``width``/``height`` the upright proxy size."""

    width: int
    height: int
    scaled_width: int
    scaled_height: int


@dataclass(frozen=True)
class EncodeResult:
    """An encoded, not yet published proxy."""

    source: SourceInfo
    proxy_path: Path
    frame_map_path: Path
    container: str
    frames: int
    width: int
    height: int
    decoder: str
    partial: bool
    build_id: str
    seconds: float
    warnings: tuple[str, ...] = field(default=())


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


def choose_container(info: SourceInfo, settings: ProxySettings) -> str:
    """``avi`` for constant-rate sources, ``mkv`` for variable-rate ones (auto)."""
    if settings.container != "auto":
        return settings.container
    return "mkv" if info.video.variable_rate else "avi"


def source_matrix(info: SourceInfo) -> tuple[str, str]:
    """(matrix as probe names it, range ``tv``/``pc``) of the source, guessing as
    players do when the file does not say: BT.709 from 720 lines up, limited range."""
    v = info.video
    matrix = v.matrix if v.matrix in _MATRIX_NAMES else ("bt709" if v.height >= 720 else "smpte170m")
    full = v.color_range == "full" or v.pix_fmt.startswith("yuvj")
    return matrix, "pc" if full else "tv"


def filter_chain(info: SourceInfo, geometry: ProxyGeometry) -> list[tuple[str, str]]:
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
        # 4:2:0 without the deprecated "J" formats, which the colorspace filter refuses.
        ("format", "yuv420p|yuv420p10le"),
        # Primaries and transfer stay as they are (fast=1): only matrix and range change.
        ("colorspace", f"ispace={space_name}:irange={rng}:iprimaries=bt709:itrc=bt709:space=bt470bg:range=pc:primaries=bt709:trc=bt709:fast=1:format=yuv420p"),
    ]
    chain.append(("setsar", "1"))
    rotation = info.video.rotation
    if rotation == 90:
        chain.append(("transpose", "cclock"))
    elif rotation == 270:
        chain.append(("transpose", "clock"))
    elif rotation == 180:
        chain += [("hflip", ""), ("vflip", "")]
    return chain


class _FrameFilter:
    """A configured libavfilter graph: push one decoded frame, pull one proxy frame."""

    def __init__(self, template: av.VideoFrame, chain: list[tuple[str, str]], threads: int = 0) -> None:
        self.graph = av.filter.Graph()
        self.graph.threads = threads  # 0: FFmpeg's choice (slice threads, one per core)
        tb = template.time_base or fractions.Fraction(1, 1000)
        node = self.graph.add_buffer(
            width=template.width,
            height=template.height,
            format=template.format.name,
            time_base=tb,
        )
        for name, args in chain:
            nxt = self.graph.add(name, args) if args else self.graph.add(name)
            node.link_to(nxt)
            node = nxt
        sink = self.graph.add("buffersink")
        node.link_to(sink)
        self.graph.configure()
        self.size = (template.width, template.height, template.format.name)

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.graph.push(frame)
        return self.graph.pull()


def _available_hwaccels() -> list[str]:
    try:
        from av.codec.hwaccel import hwdevices_available

        return list(hwdevices_available())
    except Exception:  # pragma: no cover - PyAV without hwaccel support
        return []


def _decoder_plan(setting: str) -> list[str]:
    """Decoders to try in order; ``"cpu"`` is always the last resort except for
    an explicitly named device, which must work or fail clearly."""
    available = _available_hwaccels()
    if setting == "none":
        return ["cpu"]
    if setting == "auto":
        return [d for d in HWACCEL_CANDIDATES if d in available] + ["cpu"]
    if setting not in available:
        listed = ", ".join(available) or "none"
        raise BadInputError(None, f"hwaccel {setting!r} is not available in this FFmpeg build (available: {listed}; or use 'auto' or 'none')")
    return [setting]


def _open_decoder(info: SourceInfo, decoder: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if decoder == "cpu":
        container = open_container(info.path)
        stream = container.streams[info.video.index]
        stream.thread_type = "AUTO"
        # The loop filter is a quarter of H.264 decoding; a 1/3-scale proxy
        # cannot show what it smooths (PSNR is measured in bench/generate.py).
        stream.codec_context.options = {"skip_loop_filter": "all"}
        return container, stream
    from av.codec.hwaccel import HWAccel

    try:
        container = av.open(str(info.path), hwaccel=HWAccel(decoder, allow_software_fallback=False))
    except Exception as exc:
        raise HardwareDecodeError(info.path, f"{decoder} decoder did not open: {exc}") from exc
    return container, container.streams[info.video.index]


def _frame_pts(frame: av.VideoFrame, previous: int | None, nominal: int) -> int:
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is None:
        return previous + nominal if previous is not None else 0
    return pts


def _nominal_ticks(info: SourceInfo) -> int:
    rate = info.video.average_rate or fractions.Fraction(30)
    return max(1, round(1 / (rate * info.video.time_base)))


#: libjpeg quality for each MJPEG quantiser (``-q:v``, 2 to 31): the quality
#: whose luma PSNR equals FFmpeg's MJPEG encoder at that ``-q:v`` on 360p frames
#: of the 1080p60 bench source, plus 4, which makes ``-q:v 5`` as close to the
#: full-resolution source as FFmpeg's encoder (bench/generate.py). Interpolated between.
_QSCALE_TO_JPEG_QUALITY = ((2, 96), (3, 92), (4, 86), (5, 82), (6, 76), (8, 60), (10, 48), (12, 38), (16, 28), (20, 22), (25, 20), (31, 14))


def jpeg_quality(qscale: int) -> int:
    """libjpeg quality (1-100) equivalent to the MJPEG quantiser ``qscale`` (``-q:v``)."""
    return round(float(np.interp(qscale, *zip(*_QSCALE_TO_JPEG_QUALITY))))


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """One plane of a yuv420p frame as a contiguous (rows, columns) array."""
    plane = frame.planes[index]
    rows, cols = (frame.height, frame.width) if index == 0 else (frame.height // 2, frame.width // 2)
    return np.ascontiguousarray(np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols])


class _Converter:
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

    def __init__(self, chain: list[tuple[str, str]], quality: int, workers: int) -> None:
        self.chain = chain
        self.quality = quality
        self.workers = workers
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="scrubproxy-convert")

    def _filter_for(self, frame: av.VideoFrame) -> _FrameFilter:
        frame_filter: _FrameFilter | None = getattr(self._local, "filter", None)
        if frame_filter is None or frame_filter.size != (frame.width, frame.height, frame.format.name):
            frame_filter = self._local.filter = _FrameFilter(frame, self.chain, threads=1)
        return frame_filter

    def _convert(self, frame: av.VideoFrame) -> bytes:
        out = self._filter_for(frame)(frame)
        return simplejpeg.encode_jpeg_yuv_planes(_plane(out, 0), _plane(out, 1), _plane(out, 2), quality=self.quality)

    def submit(self, frame: av.VideoFrame) -> Future:
        return self._pool.submit(self._convert, frame)

    def close(self) -> None:
        """Wait for running conversions (their graphs must not be freed under them) and drop queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _convert_workers() -> int:
    """Enough conversion threads to keep up with the decoder: converting a
    1080p frame takes about 2 ms of one core (two thirds of decoding it), so
    four threads (about 1,900 frames/s) outrun what FFmpeg's frame threads
    decode even on 16 cores (560 frames/s measured). Each holds one source
    frame: more would only cost memory (12 MB a 4K frame)."""
    return max(2, min(4, (os.cpu_count() or 2) // 2))


class _Output:
    """The proxy container being written: JPEG frames muxed as MJPEG, pts policy per container."""

    def __init__(self, path: Path, container: str, info: SourceInfo, geometry: ProxyGeometry, settings: ProxySettings) -> None:
        self.container = container
        self.info = info
        self.out = av.open(str(path), "w", format="avi" if container == "avi" else "matroska")
        if container == "avi":
            rate = info.video.average_rate or fractions.Fraction(30)
            rate = rate.limit_denominator(100_000)
            self.time_base = 1 / rate
        else:
            rate = None
            self.time_base = MKV_TIME_BASE
        stream = self.out.add_stream("mjpeg", rate=rate) if rate else self.out.add_stream("mjpeg")
        stream.width, stream.height = geometry.width, geometry.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        cc = stream.codec_context
        cc.time_base = self.time_base
        cc.color_range = 2  # full (JPEG)
        cc.colorspace = 5  # BT.601, as every JPEG decoder reads it
        self.stream = stream
        self.last_pts: int | None = None
        self.tb_ratio = info.video.time_base / self.time_base

    def proxy_pts(self, index: int, source_pts: int) -> int:
        """AVI: frame k at k/rate, one chunk per frame. MKV: source time from the
        source's start in ms, kept strictly increasing so that no frame merges."""
        if self.container == "avi":
            return index
        pts = round((source_pts - self.info.video.start_pts) * self.tb_ratio)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        return pts

    def write(self, jpeg: bytes, pts: int) -> None:
        """Mux one compressed proxy frame at ``pts``."""
        packet = av.Packet(jpeg)
        packet.pts = packet.dts = pts
        packet.time_base = self.time_base
        packet.is_keyframe = True
        packet.stream = self.stream
        self.out.mux(packet)

    def close(self) -> None:
        self.out.close()


class _Decoder:
    """Decodes the source in a thread of its own and hands frames over a short
    queue, so that decoding overlaps scaling, encoding and muxing.

    Damaged packets are skipped (counted in ``bad_packets``; frames the
    decoder concealed damage in are counted in ``corrupt_frames``); a damaged or
    cut-off tail ends the stream early and sets ``partial``. Any other error,
    and every error of a hardware decoder, is raised from :meth:`frames`.
    """

    _END = object()

    def __init__(self, info: SourceInfo, decoder: str) -> None:
        self.info, self.decoder = info, decoder
        self.container, self.stream = _open_decoder(info, decoder)
        self.partial = False
        self.bad_packets = 0
        self.corrupt_frames = 0
        self.tail_error = ""
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scrubproxy-decode", daemon=True)

    def _decode_packets(self) -> None:
        packets = self.container.demux(self.stream)
        while not self._stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                self.partial = True
                self.tail_error = str(exc)
                return
            try:
                frames = self.stream.decode(packet)
            except av.error.InvalidDataError as exc:
                if self.decoder != "cpu":
                    raise HardwareDecodeError(self.info.path, f"{self.decoder} decoder failed: {exc}") from exc
                self.bad_packets += 1
                log.debug("%s: skipped a damaged packet (pts %s): %s", self.info.path, packet.pts, exc)
                continue
            for frame in frames:
                if frame.is_corrupt:
                    self.corrupt_frames += 1
                self._put(frame)

    def _run(self) -> None:
        try:
            self._decode_packets()
        except BaseException as exc:  # handed to the consumer thread
            if self.decoder != "cpu" and not isinstance(exc, HardwareDecodeError):
                exc = HardwareDecodeError(self.info.path, f"{self.decoder} decoder failed: {exc}")
            self._error = exc
        finally:
            self._put(self._END)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def frames(self) -> Iterator[av.VideoFrame]:
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is self._END:
                break
            yield item
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the decode thread (it checks between packets) before freeing the container under it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.container.close()


def _decode_all(
    info: SourceInfo,
    decoder: str,
    output_path: Path,
    container_kind: str,
    settings: ProxySettings,
    progress: ProgressCallback | None,
) -> tuple[list[int], list[int], list[str], bool]:
    """Run the decode -> filter -> encode loop once. Returns (source pts,
    proxy pts, warnings, partial)."""
    geometry = proxy_geometry(info, settings)
    source = _Decoder(info, decoder)
    converter = _Converter(filter_chain(info, geometry), jpeg_quality(settings.quality), _convert_workers())
    source_pts: list[int] = []
    proxy_pts: list[int] = []
    pending: deque[tuple[Future, int]] = deque()
    nominal = _nominal_ticks(info)
    started = last_report = time.monotonic()
    output: _Output | None = None

    def mux_ready(keep: int) -> None:
        """Mux converted frames in order until at most ``keep`` are pending and the oldest is still running."""
        while len(pending) > keep or (pending and pending[0][0].done()):
            jpeg, at = pending.popleft()
            output.write(jpeg.result(), at)

    try:
        output = _Output(output_path, container_kind, info, geometry, settings)
        for frame in deinterlaced(info, source.frames()):
            pts = _frame_pts(frame, source_pts[-1] if source_pts else None, nominal)
            out_pts = output.proxy_pts(len(source_pts), pts)
            pending.append((converter.submit(frame), out_pts))
            source_pts.append(pts)
            proxy_pts.append(out_pts)
            # Keep every worker busy: one frame in hand each, and two queued.
            mux_ready(converter.workers + 2)
            now = time.monotonic()
            if progress is not None and now - last_report >= _PROGRESS_INTERVAL:
                last_report = now
                progress(len(source_pts) - len(pending), info.video.frame_count or None, len(source_pts) / max(now - started, 1e-6))
        mux_ready(0)
        output.close()
    except BaseException:
        if output is not None:
            _close_quietly(output.out)
        raise
    finally:
        converter.close()
        source.close()
    warnings = []
    partial = source.partial or info.truncated is not None
    if source.partial:
        warnings.append(f"source ends in damaged data after frame {len(source_pts)} ({source.tail_error}); the proxy holds the frames before it")
    elif info.truncated is not None:
        # The demuxer just stops at a cut: only the file's structure tells.
        warnings.append(f"source is cut off ({info.truncated}): the recording was probably interrupted; the proxy holds the {len(source_pts)} frames that decode")
    if source.corrupt_frames:
        warnings.append(f"{source.corrupt_frames} frame(s) decoded from damaged data (shown as the decoder concealed them)")
    if source.bad_packets:
        warnings.append(f"skipped {source.bad_packets} damaged packet(s); the proxy holds the {len(source_pts)} frames that decoded")
    if progress is not None:
        elapsed = max(time.monotonic() - started, 1e-6)
        progress(len(source_pts), len(source_pts), len(source_pts) / elapsed)
    return source_pts, proxy_pts, warnings, partial


def _close_quietly(container: av.container.OutputContainer) -> None:
    try:
        container.close()
    except Exception:  # the original error is the one worth reporting
        pass


def index_proxy(proxy_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, fractions.Fraction]:
    """Demux a finished proxy (no decode) and locate each JPEG in the file.

    Returns (proxy pts, byte offsets, sizes, proxy time base). The demuxer
    reports where each packet's element starts; the JPEG itself starts a few
    header bytes later (an AVI chunk header, a Matroska block header), found by
    matching the packet's bytes, so the offsets are right for any container,
    OpenDML AVI over 1 GiB included.
    """
    pts_list: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    with open(proxy_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        with av.open(str(proxy_path)) as container:
            stream = container.streams.video[0]
            time_base = stream.time_base
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                body = bytes(packet)
                start = packet.pos if packet.pos is not None and packet.pos >= 0 else (offsets[-1] + sizes[-1] if offsets else 0)
                offset = data.find(body[:64], start, start + 64 + len(body[:64]) + 64)
                if offset < 0 or data[offset : offset + len(body)] != body:
                    raise EncodeError(proxy_path, f"cannot locate frame {len(offsets)} in the proxy file")
                pts_list.append(packet.pts if packet.pts is not None else len(pts_list))
                offsets.append(offset)
                sizes.append(len(body))
    return (
        np.asarray(pts_list, np.int64),
        np.asarray(offsets, np.uint64),
        np.asarray(sizes, np.uint32),
        time_base,
    )


def encode_proxy(
    source: str | Path | SourceInfo,
    output_base: str | Path,
    settings: ProxySettings | None = None,
    progress: ProgressCallback | None = None,
) -> EncodeResult:
    """Encode ``source`` into ``<output_base>.avi|.mkv`` and ``<output_base>.frames``.

    Tries the decoders of ``settings.hwaccel`` in turn; a hardware decoder that
    fails at any point (at open or after many frames) is dropped and the whole
    encode runs again on the CPU. On any failure both output files are removed.
    Raises :class:`SourceUnreadableError` when no frame decodes and
    :class:`EncodeError` when writing fails (disk full, unwritable folder).
    """
    settings = settings or ProxySettings()
    info = source if isinstance(source, SourceInfo) else probe(source, settings.stream)
    base = Path(output_base)
    kind = choose_container(info, settings)
    proxy_path = base.parent / f"{base.name}.{kind}"
    frame_map_path = base.parent / f"{base.name}.frames"
    started = time.monotonic()
    plan = _decoder_plan(settings.hwaccel)
    last_error: Exception | None = None
    for decoder in plan:
        try:
            source_pts, proxy_pts, warnings, partial = _decode_all(info, decoder, proxy_path, kind, settings, progress)
        except HardwareDecodeError as exc:
            _remove(proxy_path, frame_map_path)
            last_error = exc
            if settings.hwaccel not in ("auto", "none"):
                raise BadInputError(info.path, f"hwaccel {decoder} failed: {exc.reason}") from exc
            # A device that does not open is normal for "auto"; one that fails mid-way is news.
            level = logging.INFO if "did not open" in exc.reason else logging.WARNING
            log.log(level, "%s: %s; trying the next decoder", info.path, exc.reason)
            continue
        except BaseException as exc:
            _remove(proxy_path, frame_map_path)
            raise _as_encode_error(exc, info, proxy_path) from exc
        break
    else:  # pragma: no cover - "cpu" ends every auto plan
        raise EncodeError(info.path, f"no decoder worked: {last_error}")
    log.info("%s: decoded on %s", info.path, decoder)
    try:
        if not source_pts:
            raise SourceUnreadableError(info.path, "video stream holds no decodable frame")
        build_id = secrets.token_bytes(16)
        pts, offsets, sizes, proxy_tb = index_proxy(proxy_path)
        if len(offsets) != len(source_pts) or not np.array_equal(pts, np.asarray(proxy_pts, np.int64)):
            raise EncodeError(proxy_path, f"proxy holds {len(offsets)} frames for {len(source_pts)} decoded source frames")
        header = FrameMapHeader(
            count=len(source_pts),
            source_time_base=info.video.time_base,
            source_start_pts=info.video.start_pts,
            proxy_time_base=proxy_tb,
            proxy_size=proxy_path.stat().st_size,
            build_id=build_id,
        )
        write_frame_map(frame_map_path, header, np.asarray(source_pts, np.int64), pts, offsets, sizes)
        _fsync_file(proxy_path)
    except BaseException as exc:
        _remove(proxy_path, frame_map_path)
        raise _as_encode_error(exc, info, proxy_path) from exc
    geometry = proxy_geometry(info, settings)
    for warning in warnings:
        log.warning("%s: %s", info.path, warning)
    return EncodeResult(
        source=info,
        proxy_path=proxy_path,
        frame_map_path=frame_map_path,
        container=kind,
        frames=len(source_pts),
        width=geometry.width,
        height=geometry.height,
        decoder=decoder,
        partial=partial,
        build_id=build_id.hex(),
        seconds=time.monotonic() - started,
        warnings=tuple(warnings),
    )


def _as_encode_error(exc: BaseException, info: SourceInfo, proxy_path: Path) -> BaseException:
    """Keep our own errors and interrupts; say plainly what an OS error means.
    OS errors name the output folder: the temporary file is gone by the time
    anyone reads the message."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) or isinstance(exc, (BadInputError, SourceUnreadableError, EncodeError)):
        return exc
    if isinstance(exc, OSError):
        errno_ = getattr(exc, "errno", None)
        folder = proxy_path.parent
        if errno_ in (28, 27, 122):  # ENOSPC, EFBIG, EDQUOT
            return EncodeError(folder, "disk full (or file size limit reached) while writing the proxy")
        if errno_ in (13, 1, 30):  # EACCES, EPERM, EROFS
            return EncodeError(folder, "cannot write the proxy here (permission denied or read-only)")
        return EncodeError(folder, f"writing the proxy failed: {exc.strerror or exc}")
    return EncodeError(info.path, f"encode failed: {exc}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
