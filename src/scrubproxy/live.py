"""Follow a segment while it is recorded: a proxy that grows with the recording.

Frames are decoded as their bytes reach the file (:mod:`.growing`), turned
into JPEGs by the same conversion chain as any proxy, and appended to a proxy
and frame map that live under their final names from the start: every batch
(at most ``BATCH`` seconds of wall time) is one Matroska cluster written in
one go, then its frame-map records, then the published count. A frame is
visible only once all three are in the files, and never changes after.

The decoder holds frames back: B-frame reordering keeps the last reference
frame of a group until the next packet arrives, and frame threads keep a few
more. At the end of the bytes (the recorder between two bursts) those frames
would wait for the next burst, seconds away. So when the follower has waited
there for ``EDGE_WAIT`` seconds, a second decoder replays the packets since
the last keyframe (skipping frames already shown that no other frame refers
to), and drains: what it returns past the last frame shown are the held
frames, decoded exactly as the main decoder will decode them. Only the run of
them that leaves no gap for a frame still to come (spacing within 1.5 x the
smallest recent spacing) is published early; the main decoder's own copies
are skipped when they arrive. A frame that arrives out of that order means
the guess was wrong: the live proxy is abandoned (:class:`LiveOrderError`) and
the segment is proxied when complete, never served with a frame out of place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from .convert import ConversionPool, filter_chain, jpeg_quality, proxy_geometry
from .decode import decoder_options, frame_pts, nominal_ticks
from .errors import ScrubProxyError, SourceUnreadableError
from .growing import FollowStopped, GrowingFile, SourceChangedError
from .encode import EncodeResult
from .mux import PROXY_CONTAINER, ProxyWriter
from .probe import SourceInfo, choose_video_stream, describe, is_variable_rate, open_container, scan_packets, truncation_reason
from .settings import ProxySettings

log = logging.getLogger(__name__)

#: Seconds the follower waits at the end of the bytes before working out the held frames.
EDGE_WAIT = 0.2
#: At most this many seconds between publishes while frames arrive.
BATCH = 0.5
#: Demuxer probing while following: FFmpeg's defaults (5 MB, 5 s) would hold
#: back the first frame of a recording for seconds.
OPEN_OPTIONS = {"probesize": "1000000", "analyzeduration": "1000000"}

#: ``on_publish(frames_published)``
PublishCallback = Callable[[int], None]


class LiveOrderError(ScrubProxyError):
    """A frame arrived before one already published: the live proxy cannot be kept."""

    exit_code = 4


@dataclass(frozen=True)
class FollowResult:
    """A followed segment, every frame published; not yet finished (see :meth:`ProxyWriter.finish`)."""

    info: SourceInfo
    source_pts: np.ndarray
    width: int
    height: int
    build_id: str
    ended_early: str | None = None  # why decoding stopped before the end of the file (damaged or cut tail)
    warnings: tuple[str, ...] = field(default=())


class _LiveDecoder:
    """Decoded frames of a growing source in presentation order, each final
    (see the module docstring). ``frames()`` yields ``None`` while it waits, so
    that the caller can publish what it has."""

    _END = object()

    def __init__(self, growing: GrowingFile, stream_number: int | None) -> None:
        self.growing = growing
        try:
            self.container = av.open(growing, metadata_errors="replace", options=OPEN_OPTIONS)
        except FollowStopped:
            raise
        except (av.error.FFmpegError, ValueError) as exc:
            raise SourceUnreadableError(growing.path, f"not a video FFmpeg can read while it is written: {exc}") from exc
        self.stream = choose_video_stream(self.container, growing.path, stream_number)
        self.stream.thread_type = "AUTO"
        self.options = decoder_options(self.stream.codec_context.name)  # as the encoder: the pixels match it
        self.stream.codec_context.options = dict(self.options)
        self.ended_early: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._demux, name="scrubproxy-follow-demux", daemon=True)
        self._thread.start()
        self._gop: list[av.Packet] = []
        self._fed = 0
        self._out = 0
        self._last: int | None = None
        self._early: set[int] = set()  # published ahead of the main decoder
        self._deltas: deque[int] = deque(maxlen=32)
        self._nominal = nominal_ticks(self.stream.time_base, self.stream.average_rate)
        self._first: av.VideoFrame | None = None
        self._decoded = self._frames()
        self.info = self._describe_first()

    def _demux(self) -> None:
        try:
            for packet in self.container.demux(self.stream):
                if self._stop.is_set():
                    return
                if packet.size:
                    self._put(packet)
        except (FollowStopped, SourceChangedError) as exc:  # both end the follow, neither is the end of the recording
            self._error = exc
        except av.error.FFmpegError as exc:  # a cut or damaged tail ends the stream
            self.ended_early = str(exc)
        except BaseException as exc:
            self._error = exc
        finally:
            self._put(self._END)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return

    def _describe_first(self) -> SourceInfo:
        for item in self._decoded:
            if item is not None:
                self._first = item
                return describe(self.growing.path, self.container, self.stream, item)
        if self._error is not None:
            raise self._error
        raise SourceUnreadableError(self.growing.path, "video stream holds no decodable frame")

    def frames(self) -> Iterator[av.VideoFrame | None]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._decoded
        if self._error is not None:
            raise self._error

    def _frames(self) -> Iterator[av.VideoFrame | None]:
        edge_done = False
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                waiting = self.growing.waiting_since
                if not edge_done and waiting is not None and time.monotonic() - waiting >= EDGE_WAIT:
                    edge_done = True
                    yield from self._held_frames()
                yield None
                continue
            if item is self._END:
                break
            edge_done = False
            packet: av.Packet = item
            if packet.is_keyframe:
                self._gop = [packet]
            else:
                self._gop.append(packet)
            self._fed += 1
            try:
                decoded = self.stream.decode(packet)
            except av.error.InvalidDataError as exc:
                log.debug("%s: skipped a damaged packet: %s", self.growing.path, exc)
                continue
            yield from self._accept(decoded)
        with contextlib.suppress(av.error.FFmpegError):
            yield from self._accept(self.stream.decode(None))

    def _accept(self, decoded: list[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        for frame in decoded:
            self._out += 1
            pts = frame_pts(frame, self._last, self._nominal)
            frame.pts = pts
            if self._last is not None and pts <= self._last:
                if pts in self._early:
                    self._early.discard(pts)
                    continue
                raise LiveOrderError(self.growing.path, f"frame at pts {pts} arrived after pts {self._last} was published")
            yield from self._show(frame)

    def _show(self, frame: av.VideoFrame) -> Iterator[av.VideoFrame]:
        if self._last is not None:
            self._deltas.append(frame.pts - self._last)
        self._last = frame.pts
        yield frame

    def _held_frames(self) -> Iterator[av.VideoFrame]:
        """The frames the main decoder holds back, from a second decoder (see the module docstring)."""
        held = self._fed - self._out - len(self._early)
        if held <= 0 or not self._gop or not self._gop[0].is_keyframe:
            return
        side = av.CodecContext.create(self.stream.codec_context.name, "r")
        side.extradata = self.stream.codec_context.extradata
        side.options = dict(self.options)
        frames: list[av.VideoFrame] = []
        try:
            for packet in self._gop:
                # Frames already shown are needed only as references.
                shown = self._last is not None and packet.pts is not None and packet.pts <= self._last
                side.skip_frame = "NONREF" if shown else "DEFAULT"
                frames += side.decode(packet)
            frames += side.decode(None)
        except av.error.FFmpegError as exc:
            log.debug("%s: could not work out the held frames: %s", self.growing.path, exc)
            return
        later = sorted((f for f in frames if f.pts is not None and (self._last is None or f.pts > self._last)), key=lambda f: f.pts)
        spacing = min(self._deltas) if self._deltas else self._nominal
        for frame in later:
            if self._last is not None and frame.pts - self._last > 1.5 * spacing:
                break  # a frame may still come between: keep the rest for the main decoder
            self._early.add(frame.pts)
            yield from self._show(frame)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(5.0)
        self.container.close()


def follow_proxy(
    source: Path,
    proxy_path: Path,
    frames_path: Path,
    settings: ProxySettings,
    build_id: bytes,
    is_done: Callable[[], bool],
    stop: threading.Event | None = None,
    on_start: Callable[[ProxyWriter], None] | None = None,
    on_publish: PublishCallback | None = None,
) -> tuple[ProxyWriter, FollowResult]:
    """Follow ``source`` until ``is_done()``, publishing frames into the live
    proxy at ``proxy_path``/``frames_path`` as they arrive.

    ``on_start`` runs once the files exist (before the first frame is
    published: the caller writes its live manifest there). Returns the files,
    every frame published but not finished, and what was followed. On any error
    the files are deleted and the error raised (:class:`SourceChangedError`
    when the file was truncated, replaced or deleted, :class:`LiveOrderError`,
    ``FollowStopped`` when ``stop`` was set).
    """
    growing = GrowingFile(source, is_done, stop)
    files: ProxyWriter | None = None
    decoder: _LiveDecoder | None = None
    converter: ConversionPool | None = None
    try:
        decoder = _LiveDecoder(growing, settings.stream)
        info = decoder.info
        geometry = proxy_geometry(info, settings)
        converter = ConversionPool(filter_chain(info, geometry), jpeg_quality(settings.quality))
        files = ProxyWriter(proxy_path, frames_path, info, geometry, build_id)
        if on_start is not None:
            on_start(files)
        pending: deque[tuple[Future, int]] = deque()
        followed: list[int] = []
        last_publish = time.monotonic()

        def collect(wait: bool) -> None:
            while pending and (wait or pending[0][0].done()):
                future, pts = pending.popleft()
                files.add(pts, future.result())
                followed.append(pts)

        def publish() -> None:
            nonlocal last_publish
            collect(wait=True)
            count = files.publish()
            last_publish = time.monotonic()
            if on_publish is not None:
                on_publish(count)

        for frame in decoder.frames():
            if frame is not None:
                pending.append((converter.submit(frame), frame.pts))
                collect(wait=len(pending) > converter.workers + 2)
                if time.monotonic() - last_publish >= BATCH:
                    publish()
            elif pending or files.pending:
                publish()  # the recorder is between bursts: show what there is now
        publish()
        warnings = []
        if decoder.ended_early:
            warnings.append(f"source ends in damaged or cut-off data after frame {files.published} ({decoder.ended_early})")
        result = FollowResult(
            info=info,
            source_pts=np.asarray(followed, np.int64),
            width=geometry.width,
            height=geometry.height,
            build_id=build_id.hex(),
            ended_early=decoder.ended_early,
            warnings=tuple(warnings),
        )
        return files, result
    except BaseException:
        if files is not None:
            files.abort()
        raise
    finally:
        if converter is not None:
            converter.close()
        if decoder is not None:
            decoder.close()
        growing.close()


def confirm_followed(source: Path, followed: FollowResult, writer: ProxyWriter, seconds: float) -> EncodeResult | None:
    """Check the finished recording against what was followed (a demux-only
    scan: the same frames at the same times); if they match, finish the live
    proxy (its index written, its frames untouched) and return it as an encode
    result, else None (the caller encodes the file again)."""
    with open_container(source) as container:
        stamps = scan_packets(container, container.streams[followed.info.video.index]).stamps
    if not np.array_equal(np.asarray(stamps, np.int64), np.sort(followed.source_pts)) or not np.all(np.diff(followed.source_pts) > 0):
        return None
    writer.finish()
    video = dataclasses.replace(followed.info.video, frame_count=len(stamps), variable_rate=is_variable_rate(stamps, followed.info.video.time_base))
    truncated = truncation_reason(source)
    info = dataclasses.replace(followed.info, video=video, truncated=truncated, size=os.stat(source).st_size)
    warnings = list(followed.warnings)
    if truncated is not None and followed.ended_early is None:
        warnings.append(f"source is cut off ({truncated}): the recording was probably interrupted; the proxy holds the {len(stamps)} frames that decode")
    return EncodeResult(
        source=info,
        proxy_path=writer.proxy_path,
        frame_map_path=writer.frames_path,
        container=PROXY_CONTAINER,
        frames=len(stamps),
        width=followed.width,
        height=followed.height,
        decoder="cpu (followed while recorded)",
        partial=truncated is not None or followed.ended_early is not None,
        build_id=followed.build_id,
        seconds=seconds,
        warnings=tuple(warnings),
    )
