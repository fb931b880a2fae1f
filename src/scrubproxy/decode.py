"""Decoding a source for the encoder: which decoders to try, and a decode thread.

Hardware decoders are tried first when ``hwaccel`` allows; the encoder drops
one that fails (at open or mid-way) and starts again on the next. CPU decoding
uses FFmpeg's frame threads and skips the H.264 loop filter in the frames
nothing is predicted from (:func:`decoder_options`).
"""

from __future__ import annotations

import fractions
import logging
import queue
import threading
from collections.abc import Iterator

import av

from .errors import BadInputError, HardwareDecodeError
from .probe import SourceInfo, open_container

log = logging.getLogger(__name__)

#: Hardware decoders tried by ``hwaccel="auto"``, in order.
HWACCEL_CANDIDATES = ("cuda", "vaapi", "qsv", "videotoolbox", "d3d11va")


def _available_hwaccels() -> list[str]:
    try:
        from av.codec.hwaccel import hwdevices_available

        return list(hwdevices_available())
    except Exception:  # pragma: no cover - PyAV without hwaccel support
        return []


def decoder_plan(setting: str) -> list[str]:
    """Decoders to try in order for the ``hwaccel`` setting; ``"cpu"`` is always
    the last resort except for an explicitly named device, which must work or
    fail clearly."""
    available = _available_hwaccels()
    if setting == "none":
        return ["cpu"]
    if setting == "auto":
        return [d for d in HWACCEL_CANDIDATES if d in available] + ["cpu"]
    if setting not in available:
        listed = ", ".join(available) or "none"
        raise BadInputError(None, f"hwaccel {setting!r} is not available in this FFmpeg build (available: {listed}; or use 'auto' or 'none')")
    return [setting]


#: Decoders told to skip their in-loop filter, and in which frames. H.264's
#: deblocking is a sixth of its decoding time, and a 1/3-scale proxy cannot show
#: what it smooths in one frame; but frames predicted from unfiltered pictures
#: drift from the true ones, GOP on GOP (360p luma of a 1080p30 source against
#: its full decode: 55.9 dB over the first 20 frames after a keyframe, 47.8 dB by
#: frame 60, about 40 dB from frame 200 on, a proxy 1 dB below the reference
#: command's over a GOP of 600; 46 dB over a GOP of 60 at 720p). So it is skipped
#: only in frames no other frame is predicted from (``noref``), which nothing
#: inherits. Not HEVC: ``noref`` saved it nothing measurable.
_SKIP_LOOP_FILTER = {"h264": "noref"}


def decoder_options(codec: str) -> dict[str, str]:
    """The CPU decoder's options for ``codec`` (an FFmpeg decoder name), shared by
    the encoder and the live follower, whose pixels match it."""
    skip = _SKIP_LOOP_FILTER.get(codec)
    return {"skip_loop_filter": skip} if skip else {}


def open_decoder(info: SourceInfo, decoder: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if decoder == "cpu":
        container = open_container(info.path)
        stream = container.streams[info.video.index]
        stream.thread_type = "AUTO"
        stream.codec_context.options = decoder_options(stream.codec_context.name)
        return container, stream
    from av.codec.hwaccel import HWAccel

    try:
        container = av.open(str(info.path), hwaccel=HWAccel(decoder, allow_software_fallback=False))
    except Exception as exc:
        raise HardwareDecodeError(info.path, f"{decoder} decoder did not open: {exc}") from exc
    return container, container.streams[info.video.index]


def nominal_ticks(time_base: fractions.Fraction, rate: fractions.Fraction | None) -> int:
    """One frame's duration in ``time_base`` ticks at ``rate`` (30 fps when unknown)."""
    return max(1, round(1 / ((rate or fractions.Fraction(30)) * time_base)))


def frame_pts(frame: av.VideoFrame, previous: int | None, nominal: int) -> int:
    """A decoded frame's pts: its own, else its dts, else the previous pts plus
    one nominal frame duration (0 for a first frame that says nothing)."""
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is None:
        pts = previous + nominal if previous is not None else 0
    return pts


class SourceDecoder:
    """Decodes the source in a thread of its own and hands frames over a short
    queue, so that decoding overlaps scaling, encoding and muxing.

    Damaged packets are skipped (counted in ``bad_packets``; frames the
    decoder concealed damage in are counted in ``corrupt_frames``); a damaged or
    cut-off tail ends the stream early and sets ``partial``. Any other error,
    and every error of a hardware decoder, is raised from :meth:`frames`.
    Raises :class:`HardwareDecodeError` at construction when a hardware
    decoder does not open.
    """

    _END = object()

    def __init__(self, info: SourceInfo, decoder: str) -> None:
        self.info, self.decoder = info, decoder
        self.container, self.stream = open_decoder(info, decoder)
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

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """(source pts, frame) in presentation order. A frame without pts gets
        its dts, or the previous pts plus one nominal frame duration."""
        self._thread.start()
        nominal = nominal_ticks(self.info.video.time_base, self.info.video.average_rate)
        previous: int | None = None
        while True:
            item = self._queue.get()
            if item is self._END:
                break
            previous = frame_pts(item, previous, nominal)
            yield previous, item
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the decode thread (it checks between packets) before freeing the container under it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.container.close()
