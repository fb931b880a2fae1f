"""Original frames as pictures: upright RGB and still-image bytes.

The exact decode itself (by the frame map's pts, open-GOP safe) is
``sourceframes``; this module turns its frame into what a viewer gets: square
pixels at the display aspect, turned as the display rotation says, encoded as
JPEG or PNG.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import simplejpeg

from .sourceframes import SourceFrames


def upright_rgb(frame: av.VideoFrame, sample_aspect: fractions.Fraction = fractions.Fraction(1)) -> np.ndarray:
    """The frame as an RGB array (H, W, 3) with square pixels (an anamorphic
    frame's width scaled by its ``sample_aspect``), turned as its display rotation says."""
    if sample_aspect != 1:
        width = max(2, round(frame.width * sample_aspect))
        rgb = frame.to_ndarray(format="rgb24", width=width, height=frame.height, interpolation="AREA" if width < frame.width else "BICUBIC")
    else:
        rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = (round((frame.rotation or 0) / 90)) % 4  # counter-clockwise, as players turn it
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def original_rgb(path: str | Path, pts: int, stream_number: int | None = None) -> np.ndarray:
    """Source frame ``pts`` of ``path``, decoded exactly, as a viewer sees it: upright, at its display aspect."""
    with SourceFrames(path, stream_number) as frames:
        frame = frames.frame_at_pts(pts)
        return upright_rgb(frame, frames.sample_aspect)


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
