"""Exact frames from the original source, by pts: what verify and full-quality views need.

A plain seek is not enough: it lands on a keyframe at or before the target,
and on open-GOP HEVC (x265's default) the decoder's first output after a seek
to the keyframe just before the target can already be *past* the target (the
leading pictures are dropped). So: seek, decode forward to the wanted pts, and
when the first frame out is already past it, seek further back and try again.
"""

from __future__ import annotations

import bisect
import fractions
from collections.abc import Sequence
from pathlib import Path

import av

from .errors import SourceUnreadableError
from .probe import check_source_path, choose_video_stream, open_container

_MAX_BACKOFF_STEPS = 8


class SourceFrames:
    """Decode source frames by their pts, exactly. Not thread-safe: one per thread.

    ``keyframes`` (sorted pts of the stream's keyframes, from a demux scan) lets
    ascending reads decode forward whenever the target lies in the current or
    the next GOP (at most one GOP more than a seek would decode) and seek
    otherwise, which only skips frames: reading frames in pts order then never
    decodes more than reading them all (an open-GOP back-off aside).
    ``frames_decoded`` counts the decoder's output.
    """

    def __init__(self, path: str | Path, stream_number: int | None = None, keyframes: Sequence[int] | None = None) -> None:
        self.path = check_source_path(path)
        self.container = open_container(self.path)
        try:
            self.stream = choose_video_stream(self.container, self.path, stream_number)
        except BaseException:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"
        self.time_base = self.stream.time_base or fractions.Fraction(1, 90000)
        #: Width of a pixel over its height (the container's, else the codec's): 1 for square pixels.
        self.sample_aspect = fractions.Fraction(self.stream.sample_aspect_ratio or self.stream.codec_context.sample_aspect_ratio or 1)
        rate = self.stream.average_rate or self.stream.guessed_rate or fractions.Fraction(30)
        # Two frame durations of pts: how far ahead sequential reads go on without a
        # seek when the keyframes are not known, and the first step back when a seek
        # lands past the target.
        self._ahead = max(1, round(2 / (fractions.Fraction(rate) * self.time_base)))
        self._keyframes = keyframes
        self._iter = None
        self._last_pts: int | None = None
        self.frames_decoded = 0

    def _frames(self):
        for packet in self.container.demux(self.stream):
            try:
                yield from self.stream.decode(packet)
            except av.error.InvalidDataError:
                continue

    def _seek(self, pts: int) -> None:
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self.stream.codec_context.flush_buffers()
        self._iter = self._frames()
        self._last_pts = None

    def frame_at_pts(self, pts: int) -> av.VideoFrame:
        """The decoded source frame whose pts is ``pts`` (raises if the source has none)."""
        # Sequential access (the next frame or a little ahead) needs no seek.
        if self._iter is not None and self._last_pts is not None and self._last_pts < pts and self._near(pts):
            frame = self._forward_to(pts)
            if frame is not None:
                return frame
        step = self._ahead
        target = pts
        for _ in range(_MAX_BACKOFF_STEPS):
            self._seek(target)
            first = self._next_frame()
            if first is None:
                break
            if first.pts is not None and first.pts > pts:
                # Landed past the target (open GOP, or a seek index that rounds up): go further back.
                target -= step
                step *= 2
                continue
            if first.pts == pts:
                return first
            frame = self._forward_to(pts)
            if frame is not None:
                return frame
            break
        raise SourceUnreadableError(self.path, f"no frame with pts {pts} in the source (changed since its proxy was made?)")

    def _near(self, pts: int) -> bool:
        """Whether decoding forward from the last frame to ``pts`` beats a seek."""
        if self._keyframes is None:
            return pts <= self._last_pts + self._ahead
        gop = bisect.bisect_right(self._keyframes, pts)
        return gop <= bisect.bisect_right(self._keyframes, self._last_pts) + 1

    def _next_frame(self) -> av.VideoFrame | None:
        try:
            frame = next(self._iter)
        except StopIteration:
            return None
        self.frames_decoded += 1
        self._last_pts = frame.pts
        return frame

    def _forward_to(self, pts: int) -> av.VideoFrame | None:
        while True:
            frame = self._next_frame()
            if frame is None or frame.pts is None:
                return None
            if frame.pts == pts:
                return frame
            if frame.pts > pts:
                return None

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "SourceFrames":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_exact(path: str | Path, pts: int, stream_number: int | None = None) -> av.VideoFrame:
    """The frame of ``path`` whose pts is ``pts``, decoded exactly (opens, seeks, decodes a GOP)."""
    with SourceFrames(path, stream_number) as frames:
        return frames.frame_at_pts(pts)
