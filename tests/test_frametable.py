"""Frame tables for other tools: each format read back and checked against the
frame map and against PyAV's own demux (and decode) of the source."""

from __future__ import annotations

import csv
import io
import json

import av
import numpy as np
import pytest

from scrubproxy import BadInputError
from scrubproxy.frametable import FORMATS, format_frame_table, frame_table
from scrubproxy.reader import ProxyReader


def demuxed(source):
    """(pts sorted, key flag by pts, stream time base) from PyAV's demux of the source's video."""
    with av.open(str(source)) as c:
        stream = c.streams.video[0]
        packets = [(p.pts, bool(p.is_keyframe)) for p in c.demux(stream) if p.size]
        return sorted(p for p, _ in packets), dict(packets), stream.time_base


def decoded_key_frames(source) -> list[int]:
    with av.open(str(source)) as c:
        return [k for k, f in enumerate(c.decode(video=0)) if f.key_frame]


def parse(text: str, fmt: str) -> tuple[list[int], list[int], list[int]]:
    """(pts, duration, key_frame) read back from ``text``."""
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    else:
        rows = json.loads(text)["frames"]
    if fmt == "torchcodec":  # exactly what torchcodec's reader takes: these three keys, integers
        assert all(set(r) == {"pts", "duration", "key_frame"} for r in rows)
        assert all(isinstance(r[k], int) for r in rows for k in r)
    return [int(r["pts"]) for r in rows], [int(r["duration"]) for r in rows], [int(r["key_frame"]) for r in rows]


@pytest.fixture(scope="module")
def short_gop_source(make_media):
    """H.264 with B-frames and a key frame every 12 frames: many key frames to check."""
    return make_media("gop12.mp4", frames=50, gop=12, bframes=3)


@pytest.mark.parametrize("name", ["cfr_source", "vfr_source", "short_gop_source"])
def test_every_format_reads_back_as_the_frame_map_and_the_sources_own_demux(name, request, cache):
    source = request.getfixturevalue(name)
    pts, key_by_pts, time_base = demuxed(source)
    with ProxyReader(cache.ensure(source)) as reader:
        table = frame_table(reader)
        fm_pts = reader.frame_map.source_pts.tolist()
        fm_times = reader.frame_map.times.copy()
    assert table.time_base == time_base and table.stream_index == 0
    assert table.pts.tolist() == fm_pts == pts  # frame k of the table is frame k of the proxy and of the source
    assert np.allclose(table.times, fm_times)
    assert table.key_frame.tolist() == [key_by_pts[p] for p in pts]
    assert np.flatnonzero(table.key_frame).tolist() == decoded_key_frames(source)  # what a decoder calls key frames too
    assert table.key_frame[0] and (name == "cfr_source" or table.key_frame.sum() > 1)
    # durations tile the stream: each frame lasts until the next one starts
    assert (table.duration[:-1] == np.diff(pts)).all() and table.duration[-1] > 0
    for fmt in FORMATS:
        got_pts, got_duration, got_key = parse(format_frame_table(table, fmt), fmt)
        assert got_pts == pts and got_duration == table.duration.tolist() and got_key == table.key_frame.astype(int).tolist(), fmt
    if name == "vfr_source":
        assert len(set(np.diff(pts).tolist())) > 2  # really variable rate


def test_frames_command_writes_each_format_and_refuses_an_unknown_one(run_cli, vfr_source, tmp_path):
    pts, key_by_pts, _ = demuxed(vfr_source)
    for fmt in FORMATS:
        out = tmp_path / f"table.{fmt}"
        result = run_cli("frames", vfr_source, "--format", fmt, "-o", out)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(out)
        got_pts, _, got_key = parse(out.read_text(), fmt)
        assert got_pts == pts and got_key == [int(key_by_pts[p]) for p in pts]
    stdout = run_cli("frames", vfr_source)  # torchcodec's JSON on stdout by default
    assert parse(stdout.stdout, "torchcodec")[0] == pts
    bad = run_cli("frames", vfr_source, "--format", "xml")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "torchcodec" in bad.stderr


def test_an_unknown_format_is_a_bad_input_error(cfr_source, cache):
    with ProxyReader(cache.ensure(cfr_source)) as reader:
        with pytest.raises(BadInputError, match="one of"):
            format_frame_table(frame_table(reader), "xml")
