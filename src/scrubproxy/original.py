"""Original frames as pictures: upright RGB and still-image bytes.

The exact decode itself (by the frame map's pts, open-GOP safe) is
``sourceframes.decode_exact``; this module turns its frame into what a viewer
gets: turned as the display rotation says, encoded as JPEG or PNG.
"""

from __future__ import annotations

import av
import numpy as np
import simplejpeg


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
