"""One source frame, decoded exactly from the original file at full resolution.

The proxy is for scrubbing; when a reviewer wants the real pixels of frame k
we decode them from the source: seek to the keyframe before the frame's pts
(taken from the frame map, so variable rate and B-frames cannot shift it),
then decode forward until that pts comes out. On open-GOP streams (HEVC CRA,
some H.264) the frames right after a seek point cannot be decoded, so a plain
seek can land past the target; then we seek further back and try again.
Slow by design (a GOP of decoding), exact by construction.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import simplejpeg

from .errors import SourceUnreadableError
from .probe import choose_video_stream, open_container

#: How far back the retries reach, in seconds, before giving up (doubling from 1 s).
_MAX_BACKOFF = 64.0


def decode_exact(source: Path, pts: int, stream_number: int | None = None) -> av.VideoFrame:
    """The decoded frame of ``source`` whose pts is ``pts`` (reads the file).

    Raises ``SourceUnreadableError`` when no frame has that pts (the source
    changed since its proxy was made, or is damaged there).
    """
    with open_container(source) as container:
        stream = choose_video_stream(container, source, stream_number)
        stream.thread_type = "AUTO"
        tb = stream.time_base or fractions.Fraction(1, 90000)
        back = 0.0
        while True:
            target = pts - round(back / tb)
            container.seek(target, stream=stream, backward=True, any_frame=False)
            frame = _decode_until(container, stream, pts)
            if frame is not None:
                return frame
            if back >= _MAX_BACKOFF or target <= (stream.start_time or 0):
                raise SourceUnreadableError(source, f"no frame with pts {pts} (changed since its proxy was made?)")
            back = max(1.0, back * 2)


def _decode_until(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int) -> av.VideoFrame | None:
    """Decode forward to the frame with ``pts``; ``None`` when the first frame out is already past it."""
    first = True
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if frame.pts == pts:
                return frame
            if frame.pts > pts:
                if first:
                    return None
                break
            first = False
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise SourceUnreadableError(Path(container.name), f"decoding stopped before pts {pts}: {exc}") from exc
    raise SourceUnreadableError(Path(container.name), f"no frame with pts {pts} (changed since its proxy was made?)")


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as an RGB array (H, W, 3), turned as its display rotation says."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = (round((frame.rotation or 0) / 90)) % 4  # counter-clockwise, as players turn it
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def encode_still(rgb: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """``rgb`` as a JPEG (libjpeg-turbo) or a lossless PNG (FFmpeg's encoder)."""
    if fmt == "jpg":
        return simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB")
    if fmt != "png":
        raise ValueError(f"unknown still format {fmt!r}")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)
