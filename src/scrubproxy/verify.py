"""Prove that proxy frame k is source frame k.

Three checks: the frame count and the pts sequence of the frame map equal the
source's (a demux-only scan); and for every checked frame, the proxy frame
matches the source frame (decoded exactly and scaled like the proxy) better
than its neighbours k-1 and k+1 do. Luma is compared: both sides are BT.601
full-range after the encoder's own filter chain, so a right frame differs only
by JPEG loss while a neighbour differs by motion.

Checked frames are visited in pts order, decoding forward through the current
and the next GOP instead of seeking (``SourceFrames`` with the keyframes of a
demux scan): a sample of a long-GOP source decodes no more than checking all.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg

from .convert import FrameFilter, filter_chain, frame_size, luma, proxy_geometry
from .probe import SourceInfo, open_container, probe, scan_packets
from .reader import ProxyReader
from .settings import ProxySettings
from .sourceframes import SourceFrames

#: A neighbour must beat the frame's own error by this much (mean squared
#: luma error) to count as a mismatch: static scenes make neighbours equal.
MARGIN = 0.5


@dataclass(frozen=True)
class Mismatch:
    """One failed check. ``frame`` is the proxy frame number (or -1 for counts)."""

    frame: int
    reason: str


@dataclass
class VerifyReport:
    source: Path
    proxy: Path
    frames: int
    checked: list[int] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    decoded: int = 0  # source frames decoded to check them (the cost of the check)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _luma_of_jpeg(data: bytes) -> np.ndarray:
    return simplejpeg.decode_jpeg(data, colorspace="GRAY")[..., 0].astype(np.float32)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def verify_proxy(
    source: str | Path,
    proxy: str | Path,
    samples: int | None = 50,
    seed: int = 0,
    settings: ProxySettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check ``proxy`` against ``source``; ``samples=None`` checks every frame.

    Sampled frames always include the first and last frame.
    """
    settings = settings or ProxySettings()
    info: SourceInfo = probe(source, settings.stream)
    with ProxyReader(proxy) as reader:
        report = VerifyReport(info.path, Path(proxy), len(reader))
        with open_container(info.path) as container:
            scan = scan_packets(container, container.streams[info.video.index])
        _check_timestamps(np.asarray(scan.stamps, np.int64), reader, report)
        n = len(reader)
        if samples is None or samples >= n:
            wanted = list(range(n))
        else:
            rng = random.Random(seed)
            wanted = sorted({0, n - 1, *rng.sample(range(n), max(0, samples - 2))})
        report.checked = wanted
        chain = filter_chain(info, proxy_geometry(info, settings))
        filters: dict[tuple[int, int, str], FrameFilter] = {}
        with SourceFrames(info.path, settings.stream, keyframes=scan.keyframes) as frames:
            # The frame map's source pts ascend with k: this is decode order.
            for i, k in enumerate(wanted):
                raw = frames.frame_at_pts(int(reader.frame_map.source_pts[k]))
                key = frame_size(raw)
                if key not in filters:
                    filters[key] = FrameFilter(raw, chain)
                _compare(reader, k, luma(filters[key](raw)), report)
                if progress is not None:
                    progress(i + 1, len(wanted))
            report.decoded = frames.frames_decoded
    return report


def _check_timestamps(source_pts: np.ndarray, reader: ProxyReader, report: VerifyReport) -> None:
    mapped = np.asarray(reader.frame_map.source_pts)
    if len(source_pts) != len(mapped):
        report.mismatches.append(Mismatch(-1, f"proxy has {len(mapped)} frames, source has {len(source_pts)}"))
        return
    differ = np.flatnonzero(source_pts != mapped)
    for k in differ[:20]:
        report.mismatches.append(Mismatch(int(k), f"pts {int(mapped[k])} in the frame map, {int(source_pts[k])} in the source"))


def _compare(reader: ProxyReader, k: int, expected: np.ndarray, report: VerifyReport) -> None:
    own = _luma_of_jpeg(reader.jpeg(k))
    if own.shape != expected.shape:
        report.mismatches.append(Mismatch(k, f"proxy frame is {own.shape[1]}x{own.shape[0]}, expected {expected.shape[1]}x{expected.shape[0]}"))
        return
    own_err = _mse(own, expected)
    for j in (k - 1, k + 1):
        if 0 <= j < len(reader):
            other_err = _mse(_luma_of_jpeg(reader.jpeg(j)), expected)
            if other_err + MARGIN < own_err:
                report.mismatches.append(Mismatch(k, f"proxy frame {j} matches source frame {k} better than proxy frame {k} does (error {other_err:.1f} < {own_err:.1f})"))
                return
