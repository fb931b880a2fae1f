"""HDR (PQ, HLG) sources to an SDR BT.709 look, with a 3D LUT that libavfilter applies.

The FFmpeg in the PyAV wheel has no zscale or libplacebo, and its
``colorspace`` filter knows no PQ or HLG. So the whole conversion, from the
BT.2020 R'G'B' signal to BT.709 R'G'B' for an SDR display, is computed once
with numpy from the published formulas and written as a ``.cube`` file that
the ``lut3d`` filter interpolates (tetrahedral) per pixel, at proxy size:

1. signal -> display light in nits: the PQ EOTF (SMPTE ST 2084); for HLG the
   inverse OETF and the OOTF of a display of ``peak`` nits (ARIB STD-B67,
   BT.2100: system gamma 1.2 at 1000 nits).
2. BT.2390's EETF on the largest of R, G, B (in the PQ domain), from the
   source's peak down to SDR white, every channel scaled by the same factor:
   hue and the ratios between channels are kept, and only the highlights
   above the knee are compressed (nothing below the peak clips).
3. SDR white is HDR reference white, 203 nits (BT.2408); BT.2020 -> BT.709 in
   linear light; a colour outside BT.709 is desaturated toward its own
   luminance until it fits (hue kept, no channel clipped on its own).
4. BT.1886 display encoding (gamma 2.4) for the SDR proxy.

The source's peak is its content light level (MaxCLL), else its mastering
display's peak, else 1000 nits (PQ) or the HLG reference display's 1000 nits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .probe import SourceInfo

#: HDR reference white (BT.2408): where SDR white goes.
SDR_WHITE_NITS = 203.0
#: The peak assumed when the source's metadata gives none.
DEFAULT_PEAK_NITS = 1000.0
#: Grid points per axis of the LUT. Measured against the exact formulas on
#: random signals: 99% of pixels within 5.8 8-bit codes at 65 (13.9 at 33;
#: the worst are bright colours far outside BT.709, where gamut mapping bends
#: sharply). Costs 5.9 ms against 4.7 a 1080p frame, written once (1.7 s) and
#: parsed by each graph (0.2 s).
LUT_SIZE = 65
#: Transfers this module tone-maps, as probe names them.
HDR_TRANSFERS = {"smpte2084": "pq", "arib-std-b67": "hlg"}
_LUT_VERSION = 1  # part of the LUT's file name: bump when the maths change

# SMPTE ST 2084 constants.
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# ARIB STD-B67 constants.
_HLG_A = 0.17883277
_HLG_B = 1 - 4 * _HLG_A
_HLG_C = 0.5 - _HLG_A * np.log(4 * _HLG_A)
#: Luminance weights of BT.2020 and BT.709 primaries.
BT2020_LUMA = np.array([0.2627, 0.6780, 0.0593])
BT709_LUMA = np.array([0.2126, 0.7152, 0.0722])
#: Linear BT.2020 RGB -> linear BT.709 RGB (BT.2087).
BT2020_TO_BT709 = np.array(
    [
        [1.6605, -0.5876, -0.0728],
        [-0.1246, 1.1329, -0.0083],
        [-0.0182, -0.1006, 1.1187],
    ]
)


def pq_to_nits(signal: np.ndarray) -> np.ndarray:
    """PQ EOTF: signal in [0, 1] -> display light in nits (cd/m^2)."""
    e = np.power(np.clip(signal, 0.0, 1.0), 1 / _M2)
    return 10000.0 * np.power(np.maximum(e - _C1, 0.0) / (_C2 - _C3 * e), 1 / _M1)


def nits_to_pq(nits: np.ndarray) -> np.ndarray:
    """Inverse PQ EOTF: nits -> signal in [0, 1]."""
    y = np.power(np.clip(np.asarray(nits, np.float64) / 10000.0, 0.0, 1.0), _M1)
    return np.power((_C1 + _C2 * y) / (1 + _C3 * y), _M2)


def hlg_gamma(peak: float) -> float:
    """HLG system gamma for a display of ``peak`` nits (BT.2100)."""
    return 1.2 + 0.42 * np.log10(peak / 1000.0)


def hlg_to_nits(rgb_signal: np.ndarray, peak: float = DEFAULT_PEAK_NITS) -> np.ndarray:
    """HLG R'G'B' (last axis) -> display light in nits on a ``peak``-nit display (inverse OETF, then OOTF)."""
    e = np.clip(rgb_signal, 0.0, 1.0)
    scene = np.where(e <= 0.5, e * e / 3.0, (np.exp((e - _HLG_C) / _HLG_A) + _HLG_B) / 12.0)
    ys = scene @ BT2020_LUMA
    return peak * np.power(np.maximum(ys, 1e-12), hlg_gamma(peak) - 1)[..., None] * scene


def nits_to_hlg(rgb_nits: np.ndarray, peak: float = DEFAULT_PEAK_NITS) -> np.ndarray:
    """Display light in nits (last axis RGB) -> HLG R'G'B' (inverse OOTF, then OETF); for making test media."""
    gamma = hlg_gamma(peak)
    fd = np.asarray(rgb_nits, np.float64) / peak
    yd = fd @ BT2020_LUMA
    scene = np.power(np.maximum(yd, 1e-12), (1 - gamma) / gamma)[..., None] * fd
    scene = np.clip(scene, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        high = _HLG_A * np.log(np.maximum(12 * scene - _HLG_B, 1e-12)) + _HLG_C
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), high)


def eetf(nits: np.ndarray, peak: float, target: float = SDR_WHITE_NITS) -> np.ndarray:
    """BT.2390 EETF: luminance in nits from a ``peak``-nit master to a ``target``-nit display.

    Identity below the knee; a Hermite spline from the knee to the peak that
    lands on ``target``; above the peak, ``target``.
    """
    top = float(nits_to_pq(peak))
    e1 = np.clip(nits_to_pq(nits) / top, 0.0, 1.0)
    max_lum = min(1.0, float(nits_to_pq(target)) / top)
    knee = 1.5 * max_lum - 0.5
    if knee >= 1.0:
        return np.minimum(nits, target)
    t = (e1 - knee) / (1 - knee)
    spline = (2 * t**3 - 3 * t**2 + 1) * knee + (t**3 - 2 * t**2 + t) * (1 - knee) + (-2 * t**3 + 3 * t**2) * max_lum
    e2 = np.where(e1 < knee, e1, spline)
    return pq_to_nits(e2 * top)


def to_sdr(rgb_nits: np.ndarray, peak: float) -> np.ndarray:
    """BT.2020 display light in nits (last axis RGB) -> BT.709 R'G'B' in [0, 1] for an SDR display."""
    rgb = np.maximum(np.asarray(rgb_nits, np.float64), 0.0)
    largest = rgb.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(largest > 0, eetf(largest, peak) / largest, 0.0)
    linear = (rgb * gain / SDR_WHITE_NITS) @ BT2020_TO_BT709.T
    luma = np.clip(linear @ BT709_LUMA, 0.0, 1.0)[..., None]
    low, high = linear.min(axis=-1, keepdims=True), linear.max(axis=-1, keepdims=True)
    # Desaturate toward the colour's own luminance just enough to fit in [0, 1].
    with np.errstate(divide="ignore", invalid="ignore"):
        keep_low = np.where(low < 0, luma / (luma - low), 1.0)
        keep_high = np.where(high > 1, (1 - luma) / (high - luma), 1.0)
    keep = np.clip(np.minimum(keep_low, keep_high), 0.0, 1.0)
    fitted = np.clip(luma + keep * (linear - luma), 0.0, 1.0)
    return np.power(fitted, 1 / 2.4)


def signal_to_sdr(rgb_signal: np.ndarray, transfer: str, peak: float) -> np.ndarray:
    """HDR R'G'B' signal (``transfer`` ``pq`` or ``hlg``) -> SDR BT.709 R'G'B': what the LUT holds."""
    nits = pq_to_nits(rgb_signal) if transfer == "pq" else hlg_to_nits(rgb_signal, peak)
    return to_sdr(nits, peak)


def source_peak(info: SourceInfo) -> float:
    """The peak the tone curve maps to SDR white's top: MaxCLL, mastering peak, or 1000 nits."""
    v = info.video
    peak = v.content_light or v.mastering_peak or DEFAULT_PEAK_NITS
    return float(min(max(peak, SDR_WHITE_NITS), 10000.0))


def hdr_transfer(info: SourceInfo) -> str | None:
    """``"pq"`` or ``"hlg"`` when the source is HDR this module tone-maps, else None.

    By the transfer characteristic alone: a Dolby Vision profile 8 stream
    carries it on its HDR10 (8.1) or HLG (8.4) base layer.
    """
    return HDR_TRANSFERS.get(info.video.transfer)


def lut_folder() -> Path:
    """A folder of this user's for LUT files (regenerable: the system's temporary folder)."""
    folder = Path(tempfile.gettempdir()) / f"scrubproxy-luts-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():
        # Someone else's folder of that name: never read LUTs another user could write.
        folder = Path(tempfile.mkdtemp(prefix="scrubproxy-luts-"))
    return folder


def write_cube(path: Path, transfer: str, peak: float, size: int = LUT_SIZE) -> None:
    """Write the 3D LUT (Adobe .cube, red fastest) for ``transfer`` and ``peak``, atomically."""
    axis = np.linspace(0.0, 1.0, size)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = np.stack([r, g, b], axis=-1).reshape(-1, 3)
    table = signal_to_sdr(grid, transfer, peak)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"TITLE \"scrubproxy {transfer} {peak:g} nits to SDR BT.709\"\nLUT_3D_SIZE {size}\n")
        np.savetxt(f, table, fmt="%.6f")
    os.replace(tmp, path)


def lut_path(transfer: str, peak: float) -> Path:
    """The .cube file for (``transfer``, ``peak``), written on first use."""
    path = lut_folder() / f"{transfer}-{round(peak)}nits-{LUT_SIZE}-v{_LUT_VERSION}.cube"
    if not path.exists():
        write_cube(path, transfer, round(peak))
    return path


def _filter_path(path: Path) -> str:
    """A path as a libavfilter option value (``:`` and ``\\`` escaped)."""
    return str(path).replace("\\", "/").replace(":", "\\:")


def hdr_filters(info: SourceInfo, width: int, height: int) -> list[tuple[str, str]]:
    """The chain from a decoded HDR frame to a ``width`` x ``height`` BT.601
    full-range yuv420p SDR frame; empty for a source that is not HDR.

    Scaling first (in the signal domain, BT.2020 matrix to 16-bit planar RGB)
    puts the LUT at proxy size. Measured per 1080p frame on one thread
    (quiet machine): 5.9 ms, against 46 ms with the LUT at source size,
    15.6 ms in packed rgb48, 9.6 ms in float and 13.7 ms with trilinear
    interpolation; the SDR chain is 1.3-1.6 ms.
    """
    transfer = hdr_transfer(info)
    if transfer is None:
        return []
    rng = "pc" if info.video.color_range == "full" else "tv"
    return [
        ("scale", f"{width}:{height}:flags=area:in_color_matrix=bt2020:in_range={rng}"),
        ("format", "gbrp16le"),
        ("lut3d", f"file={_filter_path(lut_path(transfer, source_peak(info)))}:interp=tetrahedral"),
        ("scale", "out_color_matrix=bt601:out_range=pc"),
        ("format", "yuv420p"),
    ]


def describe(info: SourceInfo) -> str | None:
    """What the proxy does with the source's HDR, in a few words (for ``info``); None for SDR."""
    transfer = hdr_transfer(info)
    v = info.video
    dv = "Dolby Vision, " if v.dolby_vision else ""
    if transfer is None:
        return f"{dv}transfer {v.transfer}: not tone-mapped" if v.dolby_vision else None
    name = {"pq": "PQ (SMPTE ST 2084)", "hlg": "HLG (ARIB STD-B67)"}[transfer]
    base = "its base layer " if v.dolby_vision else ""
    source = "MaxCLL" if v.content_light else "mastering display" if v.mastering_peak else "default"
    return f"{dv}{base}{name}, {v.primaries} primaries: tone-mapped to SDR BT.709 from a {source_peak(info):g}-nit peak ({source})"
