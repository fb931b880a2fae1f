"""``hwaccel="auto"``: hardware decoding only where it pays, decided by measurement.

A hardware decoder is not always faster: on a 16-core H200 machine NVDEC ran
294-359 frames/s against 561 on the CPU path (docs/benchmarks.md), because
each frame is downloaded to system memory before it is scaled. So the first
time a (codec, size, machine) is seen, the first :data:`PROBE_FRAMES` frames
are decoded, timed, on the CPU and on every hardware decoder FFmpeg offers;
the fastest wins (the CPU on a tie or when no device works), and the choice
and its figures are remembered in the cache root (:data:`MEMORY_NAME`, JSON,
replaced atomically), so that later encodes go straight to the winner.

The timing covers decoding and the download (what the encoder consumes),
with the CPU decoder using every core. A rate counts the frames after the
first quarter over the time after it came out: the opening of a device does
not count, nor the burst of frames that frame threads hold ready at the start.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .probe import SourceInfo

log = logging.getLogger(__name__)

#: The file in the cache root that remembers each choice.
MEMORY_NAME = "decoders.json"
#: That file and its temporary copies (which the cache's cleanup must accept as its own).
MEMORY_FILE_RE = re.compile(r"\.?decoders\.json(?:\.[0-9a-f]{16}\.tmp)?")
#: Frames decoded on each candidate.
PROBE_FRAMES = 60
MEMORY_KIND = "scrubproxy-decoder-choices"

#: ``measure(decoder) -> frames/s``, or None when that decoder does not work.
Measure = Callable[[str], "float | None"]


@dataclass(frozen=True)
class DecoderChoice:
    """What ``auto`` decodes a kind of source with, and the figures it chose by.

    ``rates`` holds frames/s per candidate (None: it did not open or decode);
    ``measured`` is False when the choice was read back from the cache root.
    """

    decoder: str
    rates: dict[str, float | None]
    frames: int
    key: str
    measured_at: float
    measured: bool

    def describe(self) -> str:
        figures = ", ".join(f"{d} {'failed' if r is None else f'{r:.0f} fps'}" for d, r in self.rates.items())
        return f"{self.decoder} ({figures}; {'measured now' if self.measured else 'remembered'})"

    def as_json(self) -> dict[str, Any]:
        return {"decoder": self.decoder, "rates": self.rates, "frames": self.frames, "measured_at": self.measured_at}


def machine_id() -> str:
    """This machine as far as decoding speed goes: host, cores, CPU type, FFmpeg's devices."""
    try:
        from av.codec.hwaccel import hwdevices_available

        devices = ",".join(sorted(hwdevices_available()))
    except Exception:  # pragma: no cover - PyAV without hwaccel support
        devices = ""
    return f"{platform.node()}/{os.cpu_count()}cpu/{platform.machine()}/{devices}"


def choice_key(info: SourceInfo, machine: str | None = None) -> str:
    """What a choice is remembered under: codec, coded size and machine."""
    v = info.video
    return f"{v.codec} {v.width}x{v.height} {machine or machine_id()}"


def decide(rates: Mapping[str, float | None]) -> str:
    """The fastest decoder that worked; the CPU on a tie, or when none did."""
    best, best_rate = "cpu", rates.get("cpu") or 0.0
    for decoder, rate in rates.items():
        if rate is not None and rate > best_rate:
            best, best_rate = decoder, rate
    return best


def time_decode(info: SourceInfo, decoder: str, open_decoder: Callable[[SourceInfo, str], Any], frames: int = PROBE_FRAMES) -> float | None:
    """Frames/s of ``decoder`` over the first ``frames`` frames of ``info``'s video (see the module docstring);
    None when it does not open or fails. ``open_decoder(info, decoder)`` returns
    (container, stream) set up as the encoder sets them up."""
    try:
        container, stream = open_decoder(info, decoder)
    except Exception as exc:
        log.debug("%s: %s decoder does not open: %s", info.path, decoder, exc)
        return None
    try:
        warmup = max(1, frames // 4)
        count, first = 0, 0.0
        for _ in container.decode(stream):
            count += 1
            if count == warmup:
                first = time.perf_counter()
            if count >= frames:
                break
        elapsed = time.perf_counter() - first
        return (count - warmup) / elapsed if count > warmup and elapsed > 0 else None
    except Exception as exc:
        log.debug("%s: %s decoder failed while timed: %s", info.path, decoder, exc)
        return None
    finally:
        container.close()


def _read_memory(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("kind") != MEMORY_KIND or not isinstance(data.get("choices"), dict):
        return {}
    return data["choices"]


def _write_memory(path: Path, choices: dict[str, Any]) -> None:
    """Replace the memory file atomically; a failure only costs a measurement next time."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps({"kind": MEMORY_KIND, "version": 1, "choices": choices}, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        log.warning("%s: cannot remember the decoder choice: %s", path, exc.strerror or exc)
        temp.unlink(missing_ok=True)


def remembered_choice(root: Path, info: SourceInfo, machine: str | None = None) -> DecoderChoice | None:
    """The choice remembered in cache root ``root`` for ``info``'s kind of video on this machine, if any."""
    key = choice_key(info, machine)
    entry = _read_memory(Path(root) / MEMORY_NAME).get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("decoder"), str) or not isinstance(entry.get("rates"), dict):
        return None
    return DecoderChoice(entry["decoder"], dict(entry["rates"]), int(entry.get("frames", 0)), key, float(entry.get("measured_at", 0)), False)


def choose_decoder(info: SourceInfo, candidates: list[str], root: Path, measure: Measure, machine: str | None = None) -> DecoderChoice:
    """The decoder ``auto`` uses for ``info``: remembered in ``root``, or measured
    now on each of ``candidates`` (the CPU included) and remembered there."""
    choice = remembered_choice(root, info, machine)
    if choice is not None and choice.decoder in candidates:
        log.debug("%s: hwaccel auto: %s", info.path, choice.describe())
        return choice
    rates = {decoder: measure(decoder) for decoder in candidates}
    key = choice_key(info, machine)
    choice = DecoderChoice(decide(rates), rates, PROBE_FRAMES, key, time.time(), True)
    path = Path(root) / MEMORY_NAME
    choices = _read_memory(path)
    choices[key] = choice.as_json()
    _write_memory(path, choices)
    log.debug("%s: hwaccel auto for %s: %s", info.path, key, choice.describe())
    return choice


def forget_choices(root: Path) -> None:
    """Drop every remembered choice in cache root ``root`` (a full cleanup: measured again at the next encode)."""
    (Path(root) / MEMORY_NAME).unlink(missing_ok=True)


def auto_plan(choice: DecoderChoice) -> list[str]:
    """Decoders to try for ``auto``: the chosen one, then the CPU if that fails."""
    return [choice.decoder] if choice.decoder == "cpu" else [choice.decoder, "cpu"]
