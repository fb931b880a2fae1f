"""verify: proves proxy frame k == source frame k, and catches a real corrupted copy."""

from __future__ import annotations


import av
import numpy as np
from PIL import Image

from scrubproxy.mux import index_proxy
from scrubproxy.framemap import FrameMap, FrameMapHeader, write_frame_map
from scrubproxy.samples import read_index
from scrubproxy.verify import verify_proxy


def swapped_copy(proxy, frames_path, dest, j):
    """Remux the proxy with frames j and j+1 swapped (timestamps unchanged) and
    write a frame map that still claims source frame k at position k."""
    with av.open(str(proxy)) as src, av.open(str(dest), "w", format="avi") as out:
        in_stream = src.streams.video[0]
        stream = out.add_stream_from_template(in_stream)
        packets = [p for p in src.demux(in_stream) if p.size]
        payloads = [bytes(p) for p in packets]
        payloads[j], payloads[j + 1] = payloads[j + 1], payloads[j]
        for p, data in zip(packets, payloads):
            q = av.Packet(data)
            q.pts = q.dts = p.pts
            q.time_base = p.time_base
            q.is_keyframe = True
            q.stream = stream
            out.mux(q)
    with FrameMap(frames_path) as fm:
        pts, offsets, sizes, tb = index_proxy(dest)
        header = FrameMapHeader(len(fm), fm.header.source_time_base, fm.header.source_start_pts, tb, dest.stat().st_size, fm.header.build_id)
        write_frame_map(dest.with_suffix(".frames"), header, np.array(fm.source_pts), pts, offsets, sizes)


def test_verify_passes_on_good_proxies(cache, cfr_source, vfr_source):
    for src in (cfr_source, vfr_source):
        report = verify_proxy(src, cache.ensure(src), samples=None)
        assert report.ok, report.mismatches
        assert report.checked == list(range(report.frames))


def test_verify_catches_two_swapped_frames(cache, cfr_source, tmp_path):
    proxy = cache.ensure(cfr_source)
    bad = tmp_path / "bad.avi"
    swapped_copy(proxy, proxy.with_suffix(".frames"), bad, 20)
    report = verify_proxy(cfr_source, bad, samples=None)
    assert not report.ok
    assert sorted({m.frame for m in report.mismatches}) == [20, 21]


def test_verify_cli_exit_codes(run_cli, cfr_source, tmp_path):
    ok = run_cli("verify", cfr_source, "--samples", "10")
    assert ok.returncode == 0, ok.stderr
    assert "10 of 60 frames checked, ok" in ok.stderr


def test_frame_cli_writes_the_exact_frame(run_cli, vfr_source, tmp_path):
    png = tmp_path / "f.png"
    done = run_cli("frame", vfr_source, "17", "-o", png)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(png)
    assert read_index(np.asarray(Image.open(png).convert("RGB"))) == 17
    jpg = tmp_path / "t.jpg"
    at = run_cli("frame", vfr_source, "--time", "0.5", "-o", jpg)
    assert at.returncode == 0, at.stderr
    shown = read_index(np.asarray(Image.open(jpg).convert("RGB")))
    assert f"frame {shown} at" in at.stderr
    bad = run_cli("frame", vfr_source, "100000")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "out of range" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_sampled_verify_decodes_no_more_than_checking_every_frame(cache, make_media):
    """Samples are visited in decode order, decoding forward through a GOP instead
    of seeking to each (a seek per sample decoded ten times the frames of --all)."""
    src = make_media("long-gop.mp4", frames=240, gop=120, bframes=2)
    proxy = cache.ensure(src)
    every = verify_proxy(src, proxy, samples=None)
    steps = []
    sampled = verify_proxy(src, proxy, samples=40, seed=3, progress=lambda done, total: steps.append((done, total)))
    assert every.ok and sampled.ok, (every.mismatches, sampled.mismatches)
    assert every.decoded == 240
    assert sampled.decoded <= every.decoded
    assert steps == [(i, len(sampled.checked)) for i in range(1, len(sampled.checked) + 1)]  # one step per checked frame


def test_sparse_samples_seek_over_the_gops_between_them(cache, make_media):
    src = make_media("short-gop.mp4", frames=240, gop=20)
    report = verify_proxy(src, cache.ensure(src), samples=4, seed=1)
    assert report.ok, report.mismatches
    assert len(report.checked) == 4 and report.decoded < 120
