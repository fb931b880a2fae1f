"""Frame-exact access: every proxy frame k is source frame k, times are the source's own."""

from __future__ import annotations

import fractions
import io

import av
import numpy as np
import pytest
from PIL import Image

from scrubproxy import ProxyCache, ProxySettings
from scrubproxy.reader import ProxyReader, complete_jpeg
from scrubproxy.samples import read_index


def source_times(path) -> list[float]:
    """Presentation times of every decoded source frame, from the container's start (PyAV, independently)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = fractions.Fraction(c.start_time or 0, 1_000_000)
        return [float(f.pts * s.time_base - start) for f in c.decode(s)]


MEDIA = {
    "30fps": dict(frames=45, rate=30, gop=30, bframes=2),
    "60fps": dict(frames=90, rate=60, gop=60, bframes=0),
    "24000_1001_bframes": dict(frames=72, rate=fractions.Fraction(24000, 1001), gop=48, bframes=3),
    "mpegts_start_not_zero": dict(frames=40, rate=25, gop=25, bframes=2, start_time=7.5),
    "cut_mid_gop": dict(frames=47, rate=30, gop=20, bframes=1),
}
SUFFIX = {"mpegts_start_not_zero": ".ts"}


@pytest.fixture(params=[*MEDIA, "vfr_mkv"])
def source(request, make_media, vfr_source):
    if request.param == "vfr_mkv":
        return vfr_source
    return make_media(request.param + SUFFIX.get(request.param, ".mp4"), **MEDIA[request.param])


def test_every_frame_time_and_jpeg_is_exact(cache: ProxyCache, source):
    expected_times = source_times(source)
    with cache.open(source) as r:
        assert len(r) == len(expected_times)
        for k in range(len(r)):
            assert read_index(r[k]) == k
            assert abs(r.time_of(k) - expected_times[k]) < 1e-6
            assert r.index_at(r.time_of(k)) == k
            with Image.open(io.BytesIO(r.jpeg(k))) as im:  # a standalone JPEG, decoded by another library
                assert read_index(np.asarray(im.convert("RGB"))) == k


def test_variable_rate_source_gets_matroska_with_source_timestamps(cache, vfr_source):
    path = cache.ensure(vfr_source)
    assert path.suffix == ".mkv"
    with ProxyReader(path) as r:
        assert r.metadata.variable_rate
        proxy_ms = [p * 1000 * r.frame_map.header.proxy_time_base for p in r.frame_map.proxy_pts]
        assert [round(float(x)) for x in proxy_ms] == [round(t * 1000) for t in source_times(vfr_source)]


def test_constant_rate_source_gets_one_mkv_block_per_frame_at_its_source_time(cache, cfr_source):
    path = cache.ensure(cfr_source)
    assert path.suffix == ".mkv"
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    assert len(packets) == 60 and [p.pts for p in packets] == [round(t * 1000) for t in source_times(cfr_source)]


def test_variable_rate_proxy_keeps_frame_k(cache, vfr_source):
    with cache.open(vfr_source) as r:
        assert r.path.suffix == ".mkv"
        assert [read_index(r[k]) for k in range(0, len(r), 7)] == list(range(0, len(r), 7))
        assert abs(r.time_of(len(r) - 1) - source_times(vfr_source)[-1]) < 1e-6


def test_index_at_returns_the_frame_on_screen(cache, vfr_source):
    with cache.open(vfr_source) as r:
        for k in range(len(r) - 1):
            mid = (r.time_of(k) + r.time_of(k + 1)) / 2
            assert r.index_at(mid) == k
            assert r.index_at(r.time_of(k + 1) - 1e-4) == k
        assert r.index_at(-5.0) == 0
        assert r.index_at(1e9) == len(r) - 1


def test_indexing_negative_slices_lists_and_errors(cache, cfr_source):
    with cache.open(cfr_source) as r:
        n = len(r)
        assert read_index(r[-1]) == n - 1
        batch = r[10:16:2]
        assert batch.shape[0] == 3 and [read_index(f) for f in batch] == [10, 12, 14]
        assert [read_index(f) for f in r[[5, 0, -2]]] == [5, 0, n - 2]
        assert r[-1].dtype == np.uint8 and r[0].shape == (r.metadata.height, r.metadata.width, 3)
        for bad in (n, -n - 1, 10**12):
            with pytest.raises(IndexError):
                r[bad]
            with pytest.raises(IndexError):
                r.jpeg(bad)
            with pytest.raises(IndexError):
                r.time_of(bad)
        with pytest.raises(TypeError):
            r["3"]


def test_metadata_describes_the_proxy(cache, cfr_source):
    with cache.open(cfr_source) as r:
        m = r.metadata
        assert (m.width, m.height, m.frame_count) == (320, 240, 60)
        assert abs(m.average_rate - 30) < 1e-6 and abs(m.duration - 2.0) < 1e-6
        assert m.source_path == cfr_source.resolve() and m.settings["height"] == 360 and not m.variable_rate
        assert "60 frames" in repr(m)


def test_reader_is_safe_from_several_threads(cache, make_media):
    from concurrent.futures import ThreadPoolExecutor

    src = make_media("threads.mp4", frames=120, gop=60, bframes=2)
    with cache.open(src) as r:
        def work(seed: int) -> list[str]:
            errors: list[str] = []
            rng = np.random.default_rng(seed)
            for k in rng.integers(0, len(r), 60):
                if read_index(r[int(k)]) != k:
                    errors.append(f"frame {k}")
            batch = r.get_frames_at(rng.integers(0, len(r), 16))
            errors += [f"batch frame {k}" for k, f in zip(batch.indices, batch.data) if read_index(f) != k]
            return errors

        with ThreadPoolExecutor(4) as pool:
            # .result() raises a worker's exception here: a failing thread fails the test
            results = [f.result() for f in [pool.submit(work, i) for i in range(4)]]
    errors = [e for found in results for e in found]
    assert errors == []


def _jpeg_with_standard_tables(rgb: np.ndarray) -> bytes:
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = rgb.shape[1], rgb.shape[0], "yuvj420p"
    cc.time_base = fractions.Fraction(1, 25)
    cc.options = {"huffman": "default"}
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
    frame.pts = 0
    return bytes((cc.encode(frame) + cc.encode(None))[0])


def test_jpeg_without_huffman_tables_gets_the_standard_ones(cache, cfr_source):
    with cache.open(cfr_source) as r:
        assert complete_jpeg(r.jpeg(3)) == r.jpeg(3)  # ours carry their tables: left as they are
        original = _jpeg_with_standard_tables(r[3])
    start = original.find(b"\xff\xc4")
    length = int.from_bytes(original[start + 2 : start + 4], "big")
    stripped = original[:start] + original[start + 2 + length :]  # as AVI1-style MJPEG streams store frames
    assert b"\xff\xc4" not in stripped
    completed = complete_jpeg(stripped)
    assert completed.startswith(b"\xff\xd8\xff\xc4") and len(completed) == len(original)
    with Image.open(io.BytesIO(completed)) as a, Image.open(io.BytesIO(original)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert read_index(np.asarray(a.convert("RGB"))) == 3


def test_truncated_recording_keeps_every_decodable_frame(cache, make_media, tmp_path):
    whole = make_media("whole.mkv", frames=60, gop=15, bframes=0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    expected = source_times(cut)
    assert 10 < len(expected) < 60
    with cache.open(cut) as r:
        assert len(r) == len(expected)
        assert [read_index(r[k]) for k in range(len(r))] == list(range(len(r)))


def test_original_is_the_exact_source_frame_at_full_resolution(cache, make_media, tmp_path):
    import shutil

    from scrubproxy.errors import SourceUnreadableError

    src = shutil.copyfile(make_media("orig.mp4", frames=40, width=480, height=270, gop=20, bframes=2), tmp_path / "orig.mp4")
    with cache.open(src, settings=ProxySettings(height=90)) as r:
        for k in (0, 7, 39, 21, 3, 3, -1, 20, 19):
            frame = r.original(k)
            assert frame.shape == (270, 480, 3) and frame.dtype == np.uint8
            assert read_index(frame) == k % len(r)
        for bad in (40, -41):
            with pytest.raises(IndexError):
                r.original(bad)
        src.unlink()
        with pytest.raises(SourceUnreadableError):
            r.original(5)


@pytest.mark.parametrize("name", ["vfr_mkv", "24000_1001_bframes", "mpegts_start_not_zero"])
def test_batches_are_exact_in_any_order_with_repeats(cache, make_media, vfr_source, name):
    src = vfr_source if name == "vfr_mkv" else make_media(name + SUFFIX.get(name, ".mp4"), **MEDIA[name])
    times = source_times(src)
    with cache.open(src) as r:
        n = len(r)
        rng = np.random.default_rng(1)
        for indices in (list(range(n)), [n - 1, 3, 3, 0, -1, -n, 7, 3], rng.integers(0, n, 32), []):
            batch = r.get_frames_at(indices)
            expected = [k % n for k in indices]
            assert batch.data.shape == (len(expected), r.metadata.height, r.metadata.width, 3) and batch.data.dtype == np.uint8
            assert [read_index(f) for f in batch.data] == expected and list(batch.indices) == expected
            assert batch.pts_seconds.dtype == batch.duration_seconds.dtype == np.float64
            assert np.allclose(batch.pts_seconds, [times[k] for k in expected], atol=1e-6)
            nominal = 1 / r.metadata.average_rate
            durations = [(times[k + 1] if k + 1 < n else times[k] + nominal) - times[k] for k in expected]
            assert np.allclose(batch.duration_seconds, durations, atol=1e-6)
        assert np.array_equal(r[[5, 2, 5]], r.get_frames_at([5, 2, 5]).data)
        for bad in ([n], [0, -n - 1]):
            with pytest.raises(IndexError):
                r.get_frames_at(bad)
        with pytest.raises(TypeError):
            r.get_frames_at([1.5])


def test_frames_played_at_and_vectorised_index_at(cache, vfr_source):
    with cache.open(vfr_source) as r:
        n, m = len(r), r.metadata
        starts = np.array([r.time_of(k) for k in range(n)])
        mids = (starts[:-1] + starts[1:]) / 2
        assert isinstance(r.index_at(float(mids[3])), int) and r.index_at(float(mids[3])) == 3
        found = r.index_at(mids)
        assert isinstance(found, np.ndarray) and list(found) == list(range(n - 1))
        assert list(r.index_at(np.array([-5.0, 1e9]))) == [0, n - 1]
        order = [9, 2, 2, 0, n - 2]
        batch = r.get_frames_played_at(mids[order])
        assert [read_index(f) for f in batch.data] == order and list(batch.indices) == order
        last = r.get_frames_played_at([m.end_seconds - 1e-3, m.begin_seconds])
        assert list(last.indices) == [n - 1, 0]
        for outside in ([m.end_seconds], [m.begin_seconds - 0.01], [0.1, 1e9]):
            with pytest.raises(IndexError):
                r.get_frames_played_at(outside)


def test_metadata_gives_times_and_source_facts(cache, make_media, cfr_source):
    with cache.open(cfr_source) as r:
        m = r.metadata
        assert m.begin_seconds == 0.0 and abs(m.end_seconds - 2.0) < 1e-6 and m.end_seconds == m.duration
        assert abs(m.frame_duration - 1 / 30) < 1e-9
        assert (m.source_codec, m.source_width, m.source_height, m.rotation) == ("h264", 320, 240, 0)
    turned = make_media("turned.mp4", frames=10, width=320, height=240, rotation=90)
    with cache.open(turned) as r:
        assert r.metadata.rotation in (90, -90, 270) and (r.metadata.source_width, r.metadata.source_height) == (320, 240)


def test_opening_a_reader_records_no_use_the_cache_open_does(cache, cfr_source):
    import os

    proxy = cache.ensure(cfr_source)
    manifest = proxy.with_suffix(".json")
    os.utime(manifest, (1_000_000, manifest.stat().st_mtime))
    with ProxyReader(proxy):
        pass
    assert manifest.stat().st_atime == 1_000_000
    with cache.open(cfr_source):
        pass
    assert manifest.stat().st_atime > 1_000_000

