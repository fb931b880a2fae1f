"""``SourceInfo``: what a source segment holds, read without decoding it whole.

Header facts (streams, codec, size, rate as declared) are kept apart from what
a scan of the packet timestamps measured (frame count, variable rate): a
header says 30 fps for an OBS recording that dropped a third of its frames.
"""

from __future__ import annotations

import dataclasses
import fractions
import logging
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import av

from .errors import BadInputError, NotARecordingError, SourceUnreadableError

log = logging.getLogger(__name__)

#: Colour matrices as FFmpeg numbers them (AVColorSpace) -> names people know.
MATRIX_NAMES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
RANGE_NAMES = {0: "unspecified", 1: "limited", 2: "full"}
#: Transfer characteristics (AVColorTransferCharacteristic) -> names.
TRANSFER_NAMES = {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
#: Colour primaries (AVColorPrimaries) -> names.
PRIMARIES_NAMES = {1: "bt709", 2: "unspecified", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020", 11: "smpte431", 12: "smpte432"}
#: AVFieldOrder -> how the fields of a frame are laid out.
FIELD_ORDERS = {1: "progressive", 2: "tff", 3: "bff", 4: "tff", 5: "bff"}

#: What :func:`classify` says a file is. Only ``video`` and ``animation`` (a
#: GIF, an animated WebP or PNG) are recordings; every other kind is refused
#: with :class:`NotARecordingError` and this reason.
RECORDING_KINDS = frozenset({"video", "animation"})
REFUSED_KINDS = {
    "text": "text, not a recording (FFmpeg would only draw its characters)",
    "image": "a still image (one frame), not a recording",
    "subtitles": "subtitles only: no video stream",
    "audio": "audio only: no video stream",
    "cover-art": "audio only; its picture is cover art (no video stream)",
    "data": "data streams only: no video stream",
    "empty": "no streams at all",
}
#: Demuxers that read text files (FFmpeg renders them as a terminal would).
TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
#: Demuxers of animated picture formats: several frames make an animation, one a still.
ANIMATION_DEMUXERS = frozenset({"gif", "apng", "webp_pipe"})


@dataclass(frozen=True)
class StreamSummary:
    """One stream of the container, as its header describes it."""

    index: int
    type: str
    codec: str
    detail: str


@dataclass(frozen=True)
class VideoInfo:
    """The chosen video stream.

    ``width``/``height`` are the coded size; ``display_width``/``display_height``
    the upright, square-pixel size a player shows (sample aspect and rotation
    applied). ``start_pts`` is the container's start in this stream's time base:
    source times are measured from it. ``frame_count`` and ``variable_rate``
    come from scanning the packet timestamps. ``mastering_peak`` and
    ``content_light`` (MaxCLL) are HDR metadata in nits, None where absent.
    ``field_order`` is ``progressive``, ``tff`` or ``bff`` (as flagged, or as
    ``idet`` finds it in the first frames of an unflagged broadcast-sized source).
    """

    index: int
    video_number: int
    codec: str
    width: int
    height: int
    sample_aspect: fractions.Fraction
    rotation: int
    display_width: int
    display_height: int
    pix_fmt: str
    bit_depth: int
    matrix: str
    color_range: str
    time_base: fractions.Fraction
    average_rate: fractions.Fraction | None
    start_pts: int
    frame_count: int
    variable_rate: bool
    transfer: str = "unspecified"
    primaries: str = "unspecified"
    mastering_peak: float | None = None
    content_light: float | None = None
    dolby_vision: bool = False
    field_order: str = "progressive"


@dataclass(frozen=True)
class SourceInfo:
    """A probed source segment. ``truncated`` says why the file's structure
    shows it was cut short (a recording interrupted mid-write), else None.
    ``kind`` is what :func:`classify` calls it: ``video`` or ``animation``."""

    path: Path
    size: int
    format_name: str
    duration: float | None
    streams: tuple[StreamSummary, ...]
    video: VideoInfo
    truncated: str | None = None
    kind: str = "video"


def check_source_path(path: str | Path) -> Path:
    """The absolute path of an existing regular file, else :class:`BadInputError`."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise BadInputError(p, "no such file")
    if p.is_dir():
        raise BadInputError(p, "is a folder, not a video file")
    if not p.is_file():
        raise BadInputError(p, "is not a regular file")
    return p


def iso_boxes(path: Path, limit: int | None = None) -> Iterator[tuple[bytes, int, int | None]]:
    """The top-level boxes of an ISO-BMFF file (MP4, MOV), as (type, position,
    size); size None for a last box that runs to the end of the file. Seeks
    only; stops at a box header that makes no sense."""
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        pos, count = 0, 0
        while pos + 8 <= file_size and (limit is None or count < limit):
            f.seek(pos)
            header = f.read(16)
            box_size: int | None = int.from_bytes(header[:4], "big")
            if box_size == 1 and len(header) >= 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = None
            if box_size is not None and box_size < 8:
                return
            yield header[4:8], pos, box_size
            if box_size is None:
                return
            pos += box_size
            count += 1


def _ebml_vint(data: bytes, pos: int, max_length: int) -> tuple[int, int]:
    """Length (1 to ``max_length``) of the EBML variable-length integer at ``pos``, and its first byte."""
    first = data[pos]
    length = 1
    while length <= max_length and not first & (0x80 >> (length - 1)):
        length += 1
    if length > max_length or pos + length > len(data):
        raise ValueError("bad EBML variable-length integer")
    return length, first


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int]:
    """Read an EBML element size at ``pos``: (value or None for "unknown", next pos)."""
    length, first = _ebml_vint(data, pos, 8)
    value = first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    unknown = value == (1 << (7 * length)) - 1
    return (None if unknown else value), pos + length


def truncation_reason(path: Path) -> str | None:
    """Why the file's own structure says it was cut short, or None.

    ISO-BMFF (MP4, fragmented MP4): a top-level box that runs past the end of
    the file. Matroska: a segment whose declared size runs past the end; or,
    when the segment's size is still "unknown" (FFmpeg writes it only when the
    file is closed, so every recording a crash interrupted has it), an element
    in it (a cluster, a block) that does.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
        if head[4:8] in (b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"free"):
            for kind, pos, box_size in iso_boxes(path):
                if box_size is not None and pos + box_size > size:
                    return f"its '{kind.decode('latin1')}' box ends {pos + box_size - size} bytes past the end of the file"
            return None
        if head[:4] == b"\x1a\x45\xdf\xa3":
            try:
                header_size, pos = _ebml_size(head, 4)
                pos += header_size or 0
                f.seek(pos)
                seg = f.read(12)
                if seg[:4] != b"\x18\x53\x80\x67":
                    return None
                seg_size, data_start = _ebml_size(seg, 4)
            except (ValueError, IndexError):
                return None
            if seg_size is not None and pos + data_start + seg_size > size:
                return f"its Matroska segment ends {pos + data_start + seg_size - size} bytes past the end of the file"
            if seg_size is None:
                return _matroska_cut(f, pos + data_start, size)
    return None


def _matroska_cut(f: BinaryIO, pos: int, size: int) -> str | None:
    """Walk the elements of a Matroska segment of unknown size from ``pos``:
    the first that runs past the end of the file is the cut. An element of
    unknown size (a live-written cluster) is walked into: its children follow."""
    while pos < size:
        f.seek(pos)
        head = f.read(12)
        try:
            _, after_id = _ebml_id(head, 0)
            element_size, after_size = _ebml_size(head, after_id)
        except (ValueError, IndexError):
            return f"it ends inside a Matroska element header at byte {pos}"
        if element_size is not None:
            if pos + after_size + element_size > size:
                return f"a Matroska element ends {pos + after_size + element_size - size} bytes past the end of the file"
            pos += element_size
        pos += after_size
    return None


def _ebml_id(data: bytes, pos: int) -> tuple[int, int]:
    """Read an EBML element id at ``pos`` (1 to 4 bytes, marker bits kept): (id, next pos)."""
    length, _ = _ebml_vint(data, pos, 4)
    return int.from_bytes(data[pos : pos + length], "big"), pos + length


def open_container(path: Path) -> av.container.InputContainer:
    """Open a source with PyAV, turning FFmpeg's refusals into plain reasons."""
    import av

    if path.stat().st_size == 0:
        raise SourceUnreadableError(path, "file is empty")
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.error.PermissionError as exc:
        raise SourceUnreadableError(path, "permission denied") from exc
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        reason = _missing_index_reason(path)
        raise SourceUnreadableError(path, reason or "not a video file FFmpeg can read (unrecognised or damaged data)") from exc


def _missing_index_reason(path: Path) -> str | None:
    """For an MP4 without its index (moov): cut off (its last box runs to or
    past the end of the file: a recording interrupted before it was closed)
    or damaged (its boxes break off into garbage before the end). None when the
    file is not an MP4 or has a moov."""
    boxes = list(iso_boxes(path))
    kinds = [kind for kind, _, _ in boxes]
    if b"ftyp" not in kinds[:2] or b"moov" in kinds:
        return None
    size = path.stat().st_size
    for kind, pos, _ in boxes:
        if not (kind.isascii() and kind.decode("ascii").isprintable()):
            return f"MP4 file is damaged at byte {pos} and its index (moov) is not found"
    _, pos, box_size = boxes[-1]
    end = size if box_size is None else pos + box_size
    if end < size:
        return f"MP4 file is damaged at byte {end} and its index (moov) is not found"
    return "MP4 index (moov) missing: the recording was probably interrupted before it was closed"


def choose_video_stream(container: av.container.InputContainer, path: Path, number: int | None) -> av.video.stream.VideoStream:
    """The video stream a player shows by default (ffmpeg's rule: the largest
    picture, default disposition first), or the ``number``-th video stream."""
    import av

    videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not videos:
        kinds = sorted({s.type for s in container.streams})
        what = f"no video stream (only {', '.join(kinds)})" if kinds else "no streams at all"
        raise SourceUnreadableError(path, what)
    if number is not None:
        if number >= len(videos):
            raise BadInputError(path, f"has {len(videos)} video stream(s); stream {number} does not exist")
        chosen = videos[number]
        if chosen.codec_context is None:
            raise SourceUnreadableError(path, f"video stream {number} has an unknown codec (damaged header?)")
        return chosen
    # A damaged header can leave a stream with no known codec: nothing to decode there.
    videos = [s for s in videos if s.codec_context is not None]
    if not videos:
        raise SourceUnreadableError(path, "video stream has an unknown codec (damaged header?)")

    def score(s: av.video.stream.VideoStream) -> tuple[int, int, int]:
        cc = s.codec_context
        default = 1 if s.disposition & av.stream.Disposition.default else 0
        return (default, (cc.width or 0) * (cc.height or 0), -s.index)

    return max(videos, key=score)


def _describe(stream: av.stream.Stream) -> StreamSummary:
    cc = stream.codec_context
    if cc is None:
        return StreamSummary(stream.index, stream.type, "?", "")
    if stream.type == "video":
        rate = stream.average_rate or stream.guessed_rate
        detail = f"{cc.width}x{cc.height} {cc.pix_fmt or '?'}" + (f" {float(rate):.3f} fps" if rate else "")
    elif stream.type == "audio":
        detail = f"{cc.sample_rate} Hz {getattr(cc.layout, 'name', '')}".strip()
    else:
        detail = ""
    return StreamSummary(stream.index, stream.type, cc.name, detail)


@dataclass(frozen=True)
class PacketScan:
    """What a demux-only pass over a stream's packets measured: every packet's
    presentation timestamp and the keyframes' own ones (each sorted), so that
    one pass serves both the frame count and seeking."""

    stamps: list[int]
    keyframes: list[int]


def scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> PacketScan:
    """Demux ``stream`` once, decoding nothing: its packets' timestamps.

    Packets without a pts are counted with a guessed one so that the count stays
    right; a damaged tail simply ends the scan.
    """
    import av

    stamps: list[int] = []
    keyframes: list[int] = []
    last = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                pts = (last + 1) if last is not None else 0
            stamps.append(pts)
            if packet.is_keyframe and packet.pts is not None:  # a seek needs a real one
                keyframes.append(pts)
            last = pts
    except (av.error.InvalidDataError, av.error.EOFError, OSError) as exc:
        log.warning("%s: packet scan stopped early: %s", container.name, exc)
    stamps.sort()
    keyframes.sort()
    return PacketScan(stamps, keyframes)


def is_variable_rate(stamps: list[int], time_base: fractions.Fraction) -> bool:
    """True when frame durations vary beyond timestamp rounding (drops included)."""
    if len(stamps) < 3:
        return False
    deltas = [b - a for a, b in zip(stamps, stamps[1:])]
    typical = statistics.median(deltas)
    tolerance = max(0.25 * typical, 1.5)
    return any(abs(d - typical) > tolerance for d in deltas)


def _normalise_rotation(degrees: float | int | None) -> int:
    """Display rotation in whole quarter turns, counter-clockwise: 0, 90, 180 or 270."""
    return (round((degrees or 0) / 90) * 90) % 360


def read_first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path) -> av.VideoFrame:
    """Decode the first frame of ``stream`` (the header alone lacks rotation and colour)."""
    import av

    try:
        for frame in container.decode(stream):
            return frame
    except (av.error.InvalidDataError, av.error.EOFError, OSError) as exc:
        raise SourceUnreadableError(path, f"video stream does not decode: {exc}") from exc
    raise SourceUnreadableError(path, "video stream holds no decodable frame")


def is_animated_webp(path: Path) -> bool:
    """True for a WebP whose extended header says it is animated (RIFF, VP8X, animation flag)."""
    with open(path, "rb") as f:
        head = f.read(21)
    return len(head) == 21 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 0x02)


def stream_kind(container: av.container.InputContainer) -> str | None:
    """The refused kind (``REFUSED_KINDS``) that the streams alone show, or
    None when a video stream may hold a recording (its frame count decides)."""
    import av

    if set(container.format.name.split(",")) & TEXT_DEMUXERS:
        return "text"
    videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if any(s.codec_context is not None and s.codec_context.name == "ansi" for s in videos):
        return "text"
    if videos:
        return None
    types = {s.type for s in container.streams}
    if "audio" in types:
        return "cover-art" if "video" in types else "audio"
    if "video" in types:
        return "image"  # an attached picture and nothing else
    if "subtitle" in types:
        return "subtitles"
    return "data" if types else "empty"


def frames_kind(format_name: str, frames: int) -> str:
    """``image`` for one frame (or none), ``animation`` for an animated picture format, else ``video``."""
    if frames < 2:
        return "image"
    return "animation" if set(format_name.split(",")) & ANIMATION_DEMUXERS else "video"


def classify(path: str | Path) -> str:
    """What the file is: a recording (``RECORDING_KINDS``) or a refused kind
    (``REFUSED_KINDS``: text, image, audio, cover-art, subtitles, data, empty).

    Cheap: the header and at most two packets. Raises :class:`BadInputError`
    for a missing path and :class:`SourceUnreadableError` for a file FFmpeg
    cannot open (damaged, cut off before its index, empty). For the watcher
    and the CLI, which ignore or explain what is not a recording.
    """
    import av

    p = check_source_path(path)
    if p.stat().st_size and is_animated_webp(p):
        return "animation"
    with open_container(p) as container:
        kind = stream_kind(container)
        if kind is not None:
            return kind
        stream = choose_video_stream(container, p, None)
        frames = 0
        try:
            for packet in container.demux(stream):
                frames += packet.size > 0
                if frames >= 2:
                    break
        except (av.error.InvalidDataError, av.error.EOFError, OSError):
            pass
        return frames_kind(container.format.name, frames)


def refuse_unless_recording(path: Path, kind: str) -> None:
    """Raise :class:`NotARecordingError` for a refused ``kind``."""
    if kind in REFUSED_KINDS:
        raise NotARecordingError(path, kind, REFUSED_KINDS[kind])


def hdr_metadata(frame: av.VideoFrame) -> tuple[float | None, float | None, bool]:
    """(mastering display peak, MaxCLL, Dolby Vision present) from a frame's side data.

    AVMasteringDisplayMetadata: 8 rationals of primaries and white point, then
    min and max luminance (rationals) and two has_* ints; AVContentLightMetadata:
    MaxCLL, MaxFALL (unsigned ints). Zero or absent values are None.
    """
    mastering = light = None
    dolby = False
    for side in frame.side_data:
        name = side.type.name
        data = bytes(side)
        if name == "MASTERING_DISPLAY_METADATA" and len(data) >= 88:
            num, den = int.from_bytes(data[72:76], "little", signed=True), int.from_bytes(data[76:80], "little", signed=True)
            has_luminance = int.from_bytes(data[84:88], "little")
            if has_luminance and den > 0 and num > 0:
                mastering = num / den
        elif name == "CONTENT_LIGHT_LEVEL" and len(data) >= 4:
            light = float(int.from_bytes(data[:4], "little")) or None
        elif name in ("DOVI_RPU_BUFFER", "DOVI_METADATA"):
            dolby = True
    return mastering, light, dolby


#: Interlaced video is broadcast video: these heights at up to 30 frames a second.
_BROADCAST_HEIGHTS = frozenset({480, 486, 576, 1080})
#: Frames ``idet`` looks at.
IDET_FRAMES = 24
#: ``field_order`` of a probe told not to run ``idet`` where it would have: the
#: encoder watches the first frames it decodes anyway (encode.py).
UNDETECTED = "undetected"


def field_order_of(first: av.VideoFrame, stream: av.video.stream.VideoStream) -> str | None:
    """``tff``/``bff`` when the stream or its first frame flags interlacing, else
    None: a "progressive" flag only says how the pictures were coded, and an
    interlaced picture coded as a frame carries it too."""
    flagged = FIELD_ORDERS.get(stream.codec_context.field_order)
    if flagged in ("tff", "bff"):
        return flagged
    return "tff" if first.interlaced_frame else None


def worth_idet(height: int, rate: fractions.Fraction | None, flagged: str | None) -> bool:
    """Run ``idet`` only where unflagged interlacing is plausible: a broadcast height at a broadcast rate."""
    return flagged is None and height in _BROADCAST_HEIGHTS and (rate is None or rate <= 31)


class FieldOrderDetector:
    """libavfilter's ``idet`` over the first ``IDET_FRAMES`` frames pushed:
    :meth:`push` frames until :attr:`done` (or the stream ends), then :meth:`order`."""

    def __init__(self, time_base: fractions.Fraction | None) -> None:
        self.time_base = time_base or fractions.Fraction(1, 90000)
        self.graph: av.filter.Graph | None = None
        self.last: av.VideoFrame | None = None
        self.seen = 0

    @property
    def done(self) -> bool:
        return self.seen >= IDET_FRAMES

    def _drain(self) -> None:
        import av

        while True:
            try:
                self.last = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    def push(self, frame: av.VideoFrame) -> None:
        import av.filter

        if self.graph is None:
            self.graph = av.filter.Graph()
            src = self.graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=self.time_base)
            idet, sink = self.graph.add("idet"), self.graph.add("buffersink")
            src.link_to(idet)
            idet.link_to(sink)
            self.graph.configure()
        self.graph.push(frame)
        self._drain()
        self.seen += 1

    def order(self) -> str:
        """``tff``/``bff`` when most of the frames pushed are interlaced, else ``progressive``."""
        if self.graph is None:
            return "progressive"
        self.graph.push(None)
        self._drain()
        if self.last is None:
            return "progressive"
        meta = self.last.metadata
        counts = {k: float(meta.get(f"lavfi.idet.multiple.{k}", 0)) for k in ("tff", "bff", "progressive")}
        if counts["tff"] + counts["bff"] > 2 * counts["progressive"]:
            return "tff" if counts["tff"] >= counts["bff"] else "bff"
        return "progressive"


def detect_field_order(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> str:
    """:class:`FieldOrderDetector`'s answer on the first frames of ``stream``; a damaged start ends the look."""
    import av

    # FFmpeg's frame threads: the same pixels, in less wall time for the
    # probe's costliest step on a 1080p30 source.
    stream.thread_type = "AUTO"

    def decoded() -> Iterator[av.VideoFrame]:
        try:
            yield from container.decode(stream)
        except (av.error.InvalidDataError, av.error.EOFError, OSError):
            return

    detector = FieldOrderDetector(stream.time_base)
    for frame in decoded():
        detector.push(frame)
        if detector.done:
            break
    return detector.order()


def probe(path: str | Path, stream_number: int | None = None, detect_interlace: bool = True) -> SourceInfo:
    """Probe a source (reads it): header facts, the first decoded frame (for
    rotation, colour and pixel format) and a demux-only timestamp scan.
    ``detect_interlace=False`` leaves an unflagged broadcast-format source's
    field order ``UNDETECTED`` instead of decoding its first frames for ``idet``."""
    import av

    p = check_source_path(path)
    if p.stat().st_size and is_animated_webp(p):
        raise SourceUnreadableError(p, f"an animated WebP: the FFmpeg in PyAV ({av.ffmpeg_version_info}) cannot decode its frames")
    with open_container(p) as container:
        refuse_unless_recording(p, stream_kind(container) or "video")
        stream = choose_video_stream(container, p, stream_number)
        first = read_first_frame(container, stream, p)
        info = describe(p, container, stream, first)
    # A fresh container for the scan: seeking back is not reliable on every format.
    with open_container(p) as container:
        stamps = scan_packets(container, container.streams[info.video.index]).stamps
    kind = frames_kind(info.format_name, len(stamps))
    refuse_unless_recording(p, kind)
    video = info.video
    field_order = video.field_order
    if worth_idet(first.height, video.average_rate, None if field_order == "progressive" else field_order):
        if detect_interlace:
            with open_container(p) as container:
                field_order = detect_field_order(container, container.streams[video.index]) or "progressive"
        else:
            field_order = UNDETECTED
    video = dataclasses.replace(video, frame_count=len(stamps), variable_rate=is_variable_rate(stamps, video.time_base), field_order=field_order)
    return dataclasses.replace(info, video=video, kind=kind, truncated=truncation_reason(p))


def describe(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream, first: av.VideoFrame) -> SourceInfo:
    """What the header and the first decoded frame of ``stream`` say, without a
    scan: ``frame_count`` is 0, ``variable_rate`` False and the field order only
    what the stream flags, until :func:`probe` scans. Also used for sources still
    being written, which cannot be scanned."""
    time_base = stream.time_base or fractions.Fraction(1, 90000)
    if container.start_time is not None:  # microseconds
        start_pts = round(fractions.Fraction(container.start_time, 1_000_000) / time_base)
    else:
        start_pts = stream.start_time or 0
    rate = stream.average_rate or stream.guessed_rate
    sar = fractions.Fraction(stream.sample_aspect_ratio or 1)
    if sar == 1:  # the codec's own aspect (H.264 VUI) where the container has none
        sar = fractions.Fraction(stream.codec_context.sample_aspect_ratio or 1)
    mastering_peak, content_light, dolby_vision = hdr_metadata(first)
    rotation = _normalise_rotation(first.rotation)
    width, height = first.width, first.height
    square_width = round(width * sar)
    display_w, display_h = (square_width, height) if rotation in (0, 180) else (height, square_width)
    fmt = first.format
    bit_depth = max((c.bits for c in fmt.components), default=8)
    return SourceInfo(
        path=path,
        size=path.stat().st_size,
        kind="video",
        format_name=container.format.name,
        duration=container.duration / 1_000_000 if container.duration else None,
        streams=tuple(_describe(s) for s in container.streams),
        video=VideoInfo(
            index=stream.index,
            video_number=[s.index for s in container.streams.video].index(stream.index),
            codec=stream.codec_context.name,
            width=width,
            height=height,
            sample_aspect=sar,
            rotation=rotation,
            display_width=display_w,
            display_height=display_h,
            pix_fmt=fmt.name,
            bit_depth=bit_depth,
            matrix=MATRIX_NAMES.get(first.colorspace, str(first.colorspace)),
            color_range=RANGE_NAMES.get(first.color_range, str(first.color_range)),
            time_base=time_base,
            average_rate=fractions.Fraction(rate) if rate else None,
            start_pts=start_pts,
            frame_count=0,
            variable_rate=False,
            transfer=TRANSFER_NAMES.get(first.color_trc, str(first.color_trc)),
            primaries=PRIMARIES_NAMES.get(first.color_primaries, str(first.color_primaries)),
            mastering_peak=mastering_peak,
            content_light=content_light,
            dolby_vision=dolby_vision,
            field_order=field_order_of(first, stream) or "progressive",
        ),
    )
