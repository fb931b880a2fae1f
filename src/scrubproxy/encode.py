"""Transcode one source segment into one all-intra MJPEG proxy plus its frame map.

``encode_proxy`` is a plain function of (source, output base path, settings)
that runs in any process: it writes two unpublished files next to the output
base and returns them; publishing (rename, manifest) is the cache's job.

The pipeline: decoding runs on a thread of its own (``decode``, with FFmpeg's
frame threads), scaling and compression on a pool of threads, a frame each
(``convert``), and the calling thread muxes the JPEGs in order (``mux``), so
every core stays busy. A hardware decoder that fails is dropped and the whole
encode runs again on the next decoder.

One proxy frame per decoded source frame, in order: the proxy's frame k is the
source's k-th frame in presentation order. The frame map records, for each k,
the source pts, the proxy pts and where the JPEG lies in the proxy file.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .convert import ConversionPool, filter_chain, jpeg_quality, proxy_geometry
from .decode import SourceDecoder, decoder_plan, open_decoder
from .deinterlace import deinterlaced
from .errors import BadInputError, EncodeError, HardwareDecodeError, SourceUnreadableError
from .hwchoice import auto_plan, choose_decoder, time_decode
from .mux import PROXY_CONTAINER, ProxyWriter
from .probe import UNDETECTED, FieldOrderDetector, SourceInfo, probe
from .settings import ProxySettings, resolve_cache_root

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

#: ``progress(frames_done, frames_expected, frames_per_second)``
ProgressCallback = Callable[[int, "int | None", float], None]

_PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks


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


@dataclass(frozen=True)
class _Decoded:
    """What one run of the pipeline wrote: both files, complete; ``info`` with
    the field order its own frames showed where the probe left it open."""

    info: SourceInfo
    frames: int
    warnings: tuple[str, ...]
    partial: bool


def _run_pipeline(
    info: SourceInfo, decoder: str, proxy_path: Path, frame_map_path: Path, build_id: bytes, settings: ProxySettings, progress: ProgressCallback | None
) -> _Decoded:
    """Run the decode -> convert -> write pipeline once with ``decoder``; on any
    error both files are gone."""
    geometry = proxy_geometry(info, settings)
    source = SourceDecoder(info, decoder)
    converter = ConversionPool(filter_chain(info, geometry), jpeg_quality(settings.quality))
    count = 0
    pending: deque[tuple[Future[bytes], int]] = deque()
    started = last_report = time.monotonic()
    output: ProxyWriter | None = None

    def write_ready(keep: int) -> None:
        """Write converted frames in order until at most ``keep`` are pending and the oldest is still running."""
        while len(pending) > keep or (pending and pending[0][0].done()):
            jpeg, pts = pending.popleft()
            output.add(pts, jpeg.result())

    try:
        output = ProxyWriter(proxy_path, frame_map_path, info, geometry, build_id)
        frames = source.frames()
        watching = info.video.field_order == UNDETECTED
        if watching:
            frames = _progressive_or_raise(info, frames)
        for pts, frame in deinterlaced(info, frames):
            pending.append((converter.submit(frame), pts))
            count += 1
            # Keep every worker busy: one frame in hand each, and two queued.
            write_ready(converter.workers + 2)
            now = time.monotonic()
            if progress is not None and now - last_report >= _PROGRESS_INTERVAL:
                last_report = now
                progress(count - len(pending), info.video.frame_count or None, count / max(now - started, 1e-6))
        write_ready(0)
        if not count:
            raise SourceUnreadableError(info.path, "video stream holds no decodable frame")
        output.finish()
    except BaseException:
        if output is not None:
            output.abort()
        raise
    finally:
        converter.close()
        source.close()
    warnings = []
    partial = source.partial or info.truncated is not None
    if source.partial:
        warnings.append(f"source ends in damaged data after frame {count} ({source.tail_error}); the proxy holds the frames before it")
    elif info.truncated is not None:
        # The demuxer just stops at a cut: only the file's structure tells.
        warnings.append(f"source is cut off ({info.truncated}): the recording was probably interrupted; the proxy holds the {count} frames that decode")
    if source.corrupt_frames:
        warnings.append(f"{source.corrupt_frames} frame(s) decoded from damaged data (shown as the decoder concealed them)")
    if source.bad_packets:
        warnings.append(f"skipped {source.bad_packets} damaged packet(s); the proxy holds the {count} frames that decoded")
    if progress is not None:
        elapsed = max(time.monotonic() - started, 1e-6)
        progress(count, count, count / elapsed)
    return _Decoded(_with_field_order(info, "progressive") if watching else info, count, tuple(warnings), partial)


class _Interlaced(Exception):
    """The first frames the encoder decoded are interlaced, which the probe left
    open: the encode starts again with the deinterlacer."""

    def __init__(self, order: str) -> None:
        super().__init__(order)
        self.order = order


def _progressive_or_raise(info: SourceInfo, frames: Iterator[tuple[int, av.VideoFrame]]) -> Iterator[tuple[int, av.VideoFrame]]:
    """``frames`` passed on while ``idet`` watches the first of them, so that they
    are decoded once, not once more by the probe, and none is held back (bounded
    memory). Raises :class:`_Interlaced` when they turn out interlaced; the
    encode then starts again with the field order, the rare case that pays twice."""
    detector: FieldOrderDetector | None = FieldOrderDetector(info.video.time_base)
    for pts, frame in frames:
        if detector is not None:
            detector.push(frame)
            if detector.done:
                order, detector = detector.order(), None
                if order != "progressive":
                    raise _Interlaced(order)
        yield pts, frame
    if detector is not None and (order := detector.order()) != "progressive":
        raise _Interlaced(order)


def _with_field_order(info: SourceInfo, order: str) -> SourceInfo:
    return dataclasses.replace(info, video=dataclasses.replace(info.video, field_order=order))


def encode_proxy(
    source: str | Path | SourceInfo,
    output_base: str | Path,
    settings: ProxySettings | None = None,
    progress: ProgressCallback | None = None,
    memory_root: str | Path | None = None,
) -> EncodeResult:
    """Encode ``source`` into ``<output_base>.mkv`` and ``<output_base>.frames``.

    ``hwaccel="auto"`` decodes with what measured fastest for this kind of
    source on this machine (:mod:`scrubproxy.hwchoice`, remembered in the cache
    root ``memory_root``, default the user's). Tries the decoders of the plan in turn; a hardware decoder that
    fails at any point (at open or after many frames) is dropped and the whole
    encode runs again on the CPU. On any failure both output files are removed.
    Raises :class:`SourceUnreadableError` when no frame decodes and
    :class:`EncodeError` when writing fails (disk full, unwritable folder).
    """
    settings = settings or ProxySettings()
    # The probe leaves idet to the pipeline, which sees those frames anyway.
    info = source if isinstance(source, SourceInfo) else probe(source, settings.stream, detect_interlace=False)
    base = Path(output_base)
    proxy_path = base.parent / f"{base.name}.{PROXY_CONTAINER}"
    frame_map_path = base.parent / f"{base.name}.frames"
    started = time.monotonic()
    build_id = secrets.token_bytes(16)
    plan = decoder_plan(settings.hwaccel)
    if settings.hwaccel == "auto" and len(plan) > 1:
        root = Path(memory_root) if memory_root is not None else resolve_cache_root()
        plan = auto_plan(choose_decoder(info, plan, root, lambda decoder: time_decode(info, decoder, open_decoder)))
    last_error: Exception | None = None
    for decoder in plan:
        try:
            try:
                decoded = _run_pipeline(info, decoder, proxy_path, frame_map_path, build_id, settings, progress)
            except _Interlaced as found:
                _remove(proxy_path, frame_map_path)
                info = _with_field_order(info, found.order)
                decoded = _run_pipeline(info, decoder, proxy_path, frame_map_path, build_id, settings, progress)
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
    geometry = proxy_geometry(info, settings)
    for warning in decoded.warnings:
        log.warning("%s: %s", info.path, warning)
    return EncodeResult(
        source=decoded.info,
        proxy_path=proxy_path,
        frame_map_path=frame_map_path,
        container=PROXY_CONTAINER,
        frames=decoded.frames,
        width=geometry.width,
        height=geometry.height,
        decoder=decoder,
        partial=decoded.partial,
        build_id=build_id.hex(),
        seconds=time.monotonic() - started,
        warnings=decoded.warnings,
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


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
