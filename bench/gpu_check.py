"""Hardware decoding check, for a machine with an NVIDIA GPU: proves the cuda path and its speed.

Makes a 1080p60 H.264 source (and an HEVC one), encodes each proxy with
``hwaccel="none"``, ``"cuda"`` and ``"auto"`` in the same run, and reports wall
time, frames/s, which decoder ran, and whether every proxy frame shows its own
index. For ``auto`` it also reports the decision (``scrubproxy.hwchoice``): the
timed decode rate of each candidate and the one chosen, measured afresh (its
cache root starts empty) and read back from the memory file. Writes JSON to
``$OUT`` (or bench/results/).

    python bench/gpu_check.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import fractions
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av

from scrubproxy import ProxyCache, ProxySettings, probe
from scrubproxy.hwchoice import remembered_choice
from scrubproxy.reader import ProxyReader
from scrubproxy.samples import RecordingSpec, make_recording, read_index


def check(source: Path, hwaccel: str, root: Path) -> dict:
    cache = ProxyCache(root)
    started = time.perf_counter()
    cpu0 = time.process_time()
    path = cache.ensure(source, settings=ProxySettings(hwaccel=hwaccel), force=True)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    manifest = json.loads(path.with_suffix(".json").read_text())
    with ProxyReader(path) as r:
        wrong = [k for k in range(len(r)) if read_index(r[k]) != k]
        n = len(r)
    row = {"hwaccel": hwaccel, "decoder": manifest["decoder"], "frames": n, "wall_s": wall, "fps": n / wall, "process_cpu_s": cpu, "wrong_frames": wrong[:10], "exact": not wrong}
    if hwaccel == "auto":  # the measurement that made the choice (wall_s includes it: a first encode)
        choice = remembered_choice(cache.root, probe(source))
        row["choice"] = choice.as_json() if choice else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scrubproxy-gpu-"))
    report: dict = {"av": av.__version__, "hwdevices": list(av.codec.hwaccel.hwdevices_available()), "cpus": os.cpu_count()}
    try:
        report["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError as exc:
        report["nvidia_smi"] = str(exc)
    frames = 60 * args.seconds
    sources = {
        "h264_1080p60": RecordingSpec(path=work / "h264.mp4", frames=frames, width=1920, height=1080, rate=fractions.Fraction(60), gop=250, bframes=3, colorspace="ITU709", grain=4),
        "hevc_1080p60": RecordingSpec(path=work / "hevc.mp4", codec="libx265", frames=frames, width=1920, height=1080, rate=fractions.Fraction(60), gop=250, bframes=3, colorspace="ITU709", grain=4),
    }
    results = {}
    for name, spec in sources.items():
        t = time.perf_counter()
        make_recording(spec)
        print(f"made {name} in {time.perf_counter() - t:.1f} s", flush=True)
        results[name] = []
        for hw in ("none", "cuda", "auto"):
            try:
                results[name].append(check(spec.path, hw, work / f"cache-{name}-{hw}"))
            except Exception as exc:  # report, keep going: the other paths still tell something
                results[name].append({"hwaccel": hw, "error": f"{type(exc).__name__}: {exc}"})
        for row in results[name]:
            print(name, json.dumps(row), flush=True)
        auto = next((r for r in results[name] if r.get("hwaccel") == "auto" and r.get("choice")), None)
        if auto:
            rates = ", ".join(f"{d} {'failed' if r is None else f'{r:.0f}'}" for d, r in auto["choice"]["rates"].items())
            full = {r["hwaccel"]: round(r["fps"]) for r in results[name] if "fps" in r}
            print(f"{name}: auto chose {auto['choice']['decoder']} (timed decode frames/s: {rates}); full encode frames/s: {full}", flush=True)
    report["results"] = results
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
