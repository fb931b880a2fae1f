"""``scrubproxy serve --session S`` while the session is recorded: the timeline grows, exactly, in the server and the page.

Real processes throughout: a recorder (``scrubproxy.pacer``) writes segments
into a folder, a follower (``ProxyCache.follow`` in its own process) makes
their live proxies, and ``scrubproxy serve --session`` is started before the
first frame exists. The page runs in headless Chromium and is judged by the
frame index painted in its picture.
"""

from __future__ import annotations

import base64
import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from servehelp import serving
from test_live import FRAMES, follow, record, wait_for
from test_page import CHROMIUM_ARGS
from test_server import Client

from scrubproxy import ProxyCache
from scrubproxy.samples import read_index

SESSION = "rec"


@pytest.fixture(scope="module")
def recording(make_media) -> Path:
    """What the recorder writes (the same recording as test_live's): 150 frames, 30 fps, B-frames."""
    return make_media("live-source.mkv", frames=FRAMES, gop=30, bframes=2, width=320, height=240)


def painted(jpeg: bytes) -> int:
    return read_index(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")))


def frame(client: Client, k: int, version: str) -> tuple[int, bytes]:
    status, _, body = client.get(f"/frames/{k}.jpg?v={version}")
    return status, body


def finish(*procs) -> None:
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err


def test_the_timeline_grows_exactly_while_recorded_and_keeps_its_numbers(tmp_path, recording):
    folder, root = tmp_path / "rec", tmp_path / "cache"
    folder.mkdir()
    with serving("--session", SESSION, cache_dir=root) as base:
        client = Client(base)
        empty = client.json("/api/timeline")
        assert (empty["frames"], empty["segments"], empty["live"]) == (0, [], False)  # waiting for the recording

        first = folder / "seg-1.mkv"
        recorder = record(recording, first, speed=1.5)
        wait_for(first.exists, "the recorder to start")
        follower = follow(root, first, SESSION)
        counts, lives, versions, checked = [], [], set(), 0
        v1 = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            t = client.json("/api/timeline")
            if t["frames"]:
                (seg,) = t["segments"]
                counts.append(t["frames"])
                lives.append(seg["live"])
                versions.add(t["version"])
                v1 = v1 or t["version"]
                assert seg["frames"] == t["frames"] and seg["last_frame"] == t["frames"] - 1 and t["live"] == seg["live"]
                # Every frame served while it grows is exact, under the version the page first loaded too.
                for k in range(checked, t["frames"]):
                    status, body = frame(client, k, v1)
                    assert status == 200 and painted(body) == k
                checked = t["frames"]
                assert frame(client, 0, v1)[0] == 200
                if not seg["live"] and t["frames"] == FRAMES:
                    break
            time.sleep(0.15)
        finish(recorder, follower)
        assert counts[-1] == FRAMES and len(set(counts)) >= 3, counts  # it grew over several polls
        assert counts == sorted(counts) and lives[0] and not lives[-1], (counts, lives)
        assert versions == {v1}  # growing at its end keeps the version

        # A second segment appended: earlier frames keep their numbers, and the old version still serves them.
        second = folder / "seg-2.mkv"
        recorder = record(recording, second, speed=4)
        wait_for(second.exists, "the second recording to start")
        follower = follow(root, second, SESSION)
        t = wait_for(lambda: (t := client.json("/api/timeline"))["frames"] > FRAMES and t, "the second segment", timeout=30, poll=0.1)
        v2 = t["version"]
        assert v2 != v1 and [s["first_frame"] for s in t["segments"]] == [0, FRAMES] and t["segments"][1]["live"] in (True, False)
        for k in (0, 77, FRAMES - 1):
            status, body = frame(client, k, v1)
            assert status == 200 and painted(body) == k
        status, body = frame(client, FRAMES, v2)
        assert status == 200 and painted(body) == 0
        finish(recorder, follower)
        ended = lambda: (t := client.json("/api/timeline"))["frames"] == 2 * FRAMES and not t["live"]  # noqa: E731
        wait_for(ended, "the second segment's end", timeout=30, poll=0.1)

        # A segment that arrives in the middle renumbers what follows it: URLs of versions that held it get 409.
        middle = folder / "seg-1b.mkv"
        shutil.copyfile(recording, middle)
        ProxyCache(root).ensure(middle, SESSION)
        t = wait_for(lambda: len((t := client.json("/api/timeline"))["segments"]) == 3 and t, "the middle segment", timeout=10, poll=0.1)
        assert [s["name"] for s in t["segments"]] == ["seg-1.mkv", "seg-1b.mkv", "seg-2.mkv"]
        assert frame(client, FRAMES, v2)[0] == 409
        status, body = frame(client, 5, v1)  # seg-1 alone is still a prefix
        assert status == 200 and painted(body) == 5
        status, body = frame(client, FRAMES + 3, t["version"])
        assert status == 200 and painted(body) == 3


def test_the_page_follows_the_newest_frame_with_live_and_stays_put_without(tmp_path, recording):
    from playwright.sync_api import sync_playwright

    folder, root = tmp_path / "rec", tmp_path / "cache"
    folder.mkdir()
    target = folder / "seg-1.mkv"
    with serving("--session", SESSION, cache_dir=root) as base, sync_playwright() as p:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(base)
            page.wait_for_function("document.getElementById('status').textContent.includes('waiting for the recording')", timeout=15000)
            recorder = record(recording, target, speed=1.0)
            wait_for(target.exists, "the recorder to start")
            follower = follow(root, target, SESSION)

            def picture() -> dict:
                # The picture and the numbers read in one go: with LIVE on the page moves on between two reads.
                png, number, count = page.evaluate(
                    "() => [document.getElementById('frame').toDataURL('image/png'),"
                    " document.getElementById('frame-number').textContent, document.getElementById('frame-count').textContent]"
                )
                pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1]))).convert("RGB"))
                return {"frame": int(number), "count": int(count), "pixels": read_index(pixels)}

            # LIVE (on by default for a recording being made): the newest frame, as it grows.
            page.wait_for_function("Number(document.getElementById('timeline').dataset.frames) > 20", timeout=20000)
            assert page.get_attribute("#live", "aria-pressed") == "true"
            newest = []
            for _ in range(3):
                before = int(page.get_attribute("#timeline", "data-frames"))
                page.wait_for_function(
                    f"Number(document.getElementById('timeline').dataset.frames) > {before} && document.body.dataset.state === 'idle'"
                    " && document.getElementById('frame').dataset.frame ==="
                    " String(Number(document.getElementById('timeline').dataset.frames) - 1)",
                    timeout=15000,
                )
                seen = picture()
                assert seen["pixels"] == seen["frame"], seen
                newest.append(seen["frame"])
            assert newest == sorted(newest) and newest[0] < newest[-1], newest

            # Without LIVE (a step back turns it off) the picture stays put while the bar grows.
            page.keyboard.press("ArrowLeft")
            page.wait_for_function("document.body.dataset.state === 'idle'", timeout=15000)
            assert page.get_attribute("#live", "aria-pressed") == "false"
            here = picture()
            assert here["pixels"] == here["frame"]
            page.wait_for_function(f"Number(document.getElementById('timeline').dataset.frames) > {here['count'] + 15}", timeout=15000)
            later = picture()
            assert (later["frame"], later["pixels"]) == (here["frame"], here["frame"]) and later["count"] > here["count"]

            # End: LIVE again, on the newest frame.
            page.keyboard.press("End")
            page.wait_for_function(
                "document.body.dataset.state === 'idle' && document.getElementById('frame').dataset.frame === "
                "String(Number(document.getElementById('timeline').dataset.frames) - 1)",
                timeout=15000,
            )
            end = picture()
            assert end["pixels"] == end["frame"] and end["frame"] > here["frame"]
            finish(recorder, follower)
            page.wait_for_function(f"document.getElementById('frame').dataset.frame === '{FRAMES - 1}'", timeout=15000)
            assert picture()["pixels"] == FRAMES - 1
        finally:
            browser.close()


def test_watch_serve_proxies_and_serves_in_one_process_and_sigterm_stops_both(tmp_path, recording):
    folder, root = tmp_path / "rec", tmp_path / "cache"
    folder.mkdir()
    stopped: list[int] = []
    with serving(folder, "--session", SESSION, "--serve", "--settle", "0.5", cache_dir=root, command="watch", stopped=stopped) as base:
        client = Client(base)
        assert client.json("/api/timeline")["frames"] == 0
        shutil.copyfile(recording, folder / "seg-1.mkv")
        t = wait_for(lambda: (t := client.json("/api/timeline"))["frames"] == FRAMES and t, "the watcher's proxy", timeout=40, poll=0.2)
        assert [s["name"] for s in t["segments"]] == ["seg-1.mkv"] and not t["live"]
        for k in (0, 61, FRAMES - 1):
            status, body = frame(client, k, t["version"])
            assert status == 200 and painted(body) == k
    # serving() sent SIGTERM: the watcher and the server both stopped (the process ended by itself), the port is closed.
    assert stopped == [0]
    with pytest.raises(OSError):
        client.get("/api/timeline")
