"""The scrubber page in headless Chromium against ``scrubproxy serve``: input to picture, today's page against the old one.

Both pages are served by the same ``scrubproxy serve`` code (the old page's
web files from git, ``--baseline-rev``, dropped into a copy of the package),
on the same recording, in the same run. Measured in the page: from the input
event's timestamp to the animation frame callback after the picture changed
(a MutationObserver on ``#frame``'s ``data-frame``):

- key steps (right arrow, 80 presses, 60 ms apart),
- random jumps (clicks at random places on the timeline; the exact frame, and
  for the new page the thumbnail it shows first),
- a drag at 60 pointer events/s: the share of refreshes after a pointer event
  that show a new picture,
- playback at 1x (new page only): frames on time (within a refresh of their
  source time, counted from the first), late, missing, wrong (index read from
  the pixels, tests/pagewatch.js),
- thumbnail sheets of one hour of 1080p30 proxy (640x360 MJPEG, synthesised
  from 30 distinct frames repeated: cutting reads each tile's JPEG, so the
  cost is the same as for a real one).

    python bench/page.py [--seconds 20] [--baseline-rev 3dd1397]
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, RESULTS, cached_recording

sys.path.insert(0, str(BENCH.parent / "tests"))
from servehelp import serving  # noqa: E402

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from scrubproxy.framemap import FrameMapHeader, write_frame_map  # noqa: E402
from scrubproxy.reader import ProxyReader  # noqa: E402
from scrubproxy.samples import PatternPainter  # noqa: E402
from scrubproxy.thumbs import ThumbSpec, make_thumbs  # noqa: E402

WATCH = (BENCH.parent / "tests" / "pagewatch.js").read_text()
LATENCY_JS = """
window.__lat = []; window.__input = null;
for (const t of ['keydown', 'pointerdown']) document.addEventListener(t, e => { window.__input = e.timeStamp; }, true);
new MutationObserver(() => { const from = window.__input; const kind = document.getElementById('frame').dataset.kind || 'frame';
  if (from === null) return; requestAnimationFrame(() => window.__lat.push({ms: performance.now() - from, kind})); })
  .observe(document.getElementById('frame'), {attributes: true, attributeFilter: ['data-frame']});
"""
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def baseline_package(rev: str, into: Path) -> Path:
    """A copy of src/ whose page is the one at ``rev``."""
    src = BENCH.parent / "src"
    shutil.copytree(src, into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    web = into / "src" / "scrubproxy" / "server" / "web"
    for name in ("index.html", "app.js", "app.css"):
        (web / name).write_bytes(subprocess.run(["git", "show", f"{rev}:src/scrubproxy/server/web/{name}"], cwd=BENCH.parent, check=True, capture_output=True).stdout)
    return into / "src"


def idle(page) -> None:
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=30000)


def measure(page, base: str, frames: int, new: bool) -> dict:
    page.goto(base)
    idle(page)
    page.evaluate(LATENCY_JS)
    out: dict = {}
    for _ in range(80):
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(60)
    idle(page)
    steps = [x["ms"] for x in page.evaluate("window.__lat")]
    out["step_p50"], out["step_p99"], out["steps"] = pct(steps, 50), pct(steps, 99), len(steps)
    box = page.locator("#timeline").bounding_box()
    rng = random.Random(7)
    exact, first = [], []
    for _ in range(40):
        page.evaluate("window.__lat = []")
        page.mouse.click(box["x"] + rng.random() * box["width"], box["y"] + box["height"] / 2)
        idle(page)
        page.wait_for_timeout(30)
        lat = page.evaluate("window.__lat")
        if lat:
            first.append(lat[0]["ms"])
            exact += [x["ms"] for x in lat if x["kind"] == "frame"][-1:]
        page.wait_for_timeout(100)
    out["jump_p50"], out["jump_p99"] = pct(exact, 50), pct(exact, 99)
    out["jump_first_picture_p99"] = pct(first, 99)
    # drag: 60 pointer events a second for 3 s, sweeping a third of the timeline
    page.evaluate("document.getElementById('timeline').addEventListener('pointerdown', e => { window.pointer = e.pointerId; })")
    x0, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2
    page.mouse.move(x0, y)
    page.mouse.down()
    idle(page)
    drag = page.evaluate(
        """([x0, y, w]) => new Promise(done => {
          const el = document.getElementById('timeline'); const pic = document.getElementById('frame');
          let moved = false, changed = false, withInput = 0, withPicture = 0, i = 0;
          new MutationObserver(() => { changed = true; }).observe(pic, {attributes: true, attributeFilter: ['data-frame']});
          const timer = setInterval(() => { el.dispatchEvent(new PointerEvent('pointermove', {pointerId: window.pointer, clientX: x0 + (i++ / 180) * w, clientY: y, bubbles: true})); moved = true; }, 1000 / 60);
          function refresh() { if (moved) { withInput++; if (changed) withPicture++; } moved = false; changed = false;
            if (i < 180) requestAnimationFrame(refresh); else { clearInterval(timer); done([withPicture, withInput]); } }
          requestAnimationFrame(refresh); })""",
        [x0, y, box["width"] / 3],
    )
    page.mouse.up()
    out["drag_new_picture"] = drag[0] / max(drag[1], 1)
    if new:
        page.keyboard.press("Home")
        idle(page)
        page.evaluate(WATCH)
        page.keyboard.press(" ")
        page.wait_for_function("document.body.dataset.state === 'playing'")
        idle(page)
        shown = page.evaluate("window.__shown")
        played = [s for s in shown if s["kind"] == "frame"]
        wrong = sum(s["pixels"] != s["frame"] for s in shown)
        # lateness against the playback clock, whose start is the median offset (the start-up wait is no frame's)
        offsets = [s["refresh"] - (s["frame"] - played[0]["frame"]) / 30 * 1000 for s in played]
        start = float(np.median(offsets))
        on_time = sum(o - start <= 1000 / 60 + 2 for o in offsets)
        late = len(offsets) - on_time
        out.update(play_expected=frames - 1, play_shown=len(played), play_on_time=on_time, play_late=late, play_wrong=wrong)
    return out


def hour_of_proxy(folder: Path) -> Path:
    """A 640x360 MJPEG 'proxy' of 108,000 frames (1 h at 30 fps) with its frame map: 30 frames repeated."""
    painter = PatternPainter(640, 360)
    jpegs = [simplejpeg.encode_jpeg(painter.paint(k), quality=85, colorsubsampling="420") for k in range(30)]
    n = 108_000
    sizes = np.array([len(jpegs[k % 30]) for k in range(n)], np.uint32)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.uint64)[:-1]]).astype(np.uint64)
    proxy = folder / "hour-0123abcd.avi"
    with open(proxy, "wb") as f:
        for rep in range(n // 30):
            f.write(b"".join(jpegs))
    header = FrameMapHeader(n, fractions.Fraction(1, 30), 0, fractions.Fraction(1, 30), proxy.stat().st_size, os.urandom(16))
    pts = np.arange(n, dtype=np.int64)
    write_frame_map(proxy.with_suffix(".frames"), header, pts, pts, offsets, sizes)
    return proxy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--baseline-rev", default="3dd1397")
    args = ap.parse_args()
    frames = 30 * args.seconds
    source = cached_recording(f"page-640x360-{args.seconds}s.mp4", frames=frames, width=640, height=360, gop=60, bframes=2)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        tmp = Path(tmp)
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
        old_src = baseline_package(args.baseline_rev, tmp / "old")
        for name, pythonpath in (("today", str(BENCH.parent / "src")), ("baseline", str(old_src))):
            env_before = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = pythonpath
            try:
                with serving(source, cache_dir=tmp / "cache") as base:
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    results[name] = measure(page, base, frames, new=name == "today")
                    page.close()
            finally:
                if env_before is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = env_before
        browser.close()
        proxy = hour_of_proxy(tmp)
        with ProxyReader(proxy) as reader:
            started = time.perf_counter()
            make_thumbs(reader, ThumbSpec())
            results["thumbs_1h_1080p30_s"] = time.perf_counter() - started
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "page.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
