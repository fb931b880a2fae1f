"""hwaccel "auto" chooses by measurement: the decision on injected timings, the
memory in the cache root, and one real encode on this machine's decoders."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from scrubproxy import ProxyCache, ProxySettings, probe
from scrubproxy.hwchoice import MEMORY_NAME, PROBE_FRAMES, auto_plan, choose_decoder, decide, remembered_choice, time_decode


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ({"cuda": 294.0, "cpu": 561.0}, "cpu"),  # the 16-core H200: downloads frame by frame lose to the CPU
        ({"cuda": 420.0, "cpu": 150.0}, "cuda"),  # few cores: NVDEC pays
        ({"cuda": None, "vaapi": 200.0, "cpu": 180.0}, "vaapi"),  # a device that does not open is no candidate
        ({"cuda": 300.0, "cpu": 300.0}, "cpu"),  # a tie keeps the CPU
        ({"cuda": None, "cpu": None}, "cpu"),  # nothing measured: the CPU, the path that always exists
    ],
)
def test_the_fastest_decoder_wins(rates, expected):
    assert decide(rates) == expected


class Timer:
    """An injected measurement: fixed rates, and a count of the calls."""

    def __init__(self, rates):
        self.rates, self.calls = rates, []

    def __call__(self, decoder):
        self.calls.append(decoder)
        return self.rates[decoder]


def test_a_choice_is_measured_once_per_codec_size_and_machine_and_remembered_atomically(cfr_source, tmp_path, caplog):
    info = probe(cfr_source)
    timer = Timer({"cuda": 294.0, "qsv": None, "cpu": 561.0})
    with caplog.at_level(logging.DEBUG, logger="scrubproxy"):
        choice = choose_decoder(info, ["cuda", "qsv", "cpu"], tmp_path, timer, machine="h200")
    assert choice.decoder == "cpu" and choice.measured and timer.calls == ["cuda", "qsv", "cpu"]
    assert auto_plan(choice) == ["cpu"]
    assert "cuda 294 fps, qsv failed, cpu 561 fps" in caplog.text  # the figures are in --debug logs
    assert sorted(p.name for p in tmp_path.iterdir()) == [MEMORY_NAME]  # no temporary file left
    stored = json.loads((tmp_path / MEMORY_NAME).read_text())["choices"]
    assert [v["decoder"] for v in stored.values()] == ["cpu"] and next(iter(stored.values()))["frames"] == PROBE_FRAMES
    # remembered: no second measurement, same answer
    again = choose_decoder(info, ["cuda", "qsv", "cpu"], tmp_path, Timer({}), machine="h200")
    assert again.decoder == "cpu" and not again.measured and again.rates == choice.rates
    assert remembered_choice(tmp_path, info, machine="h200") == again
    # another machine or another picture size is measured on its own, next to the first
    laptop = choose_decoder(info, ["cuda", "cpu"], tmp_path, Timer({"cuda": 420.0, "cpu": 150.0}), machine="2-core")
    assert laptop.decoder == "cuda" and auto_plan(laptop) == ["cuda", "cpu"]
    bigger = dataclasses.replace(info, video=dataclasses.replace(info.video, width=1920, height=1080))
    timer = Timer({"cuda": 300.0, "cpu": 100.0})
    assert choose_decoder(bigger, ["cuda", "cpu"], tmp_path, timer, machine="h200").decoder == "cuda" and timer.calls
    assert len(json.loads((tmp_path / MEMORY_NAME).read_text())["choices"]) == 3
    assert remembered_choice(tmp_path, info, machine="h200").decoder == "cpu"


def test_a_damaged_memory_file_is_measured_again_and_replaced(cfr_source, tmp_path):
    info = probe(cfr_source)
    (tmp_path / MEMORY_NAME).write_text("{not json")
    assert remembered_choice(tmp_path, info) is None
    assert choose_decoder(info, ["cuda", "cpu"], tmp_path, Timer({"cuda": None, "cpu": 500.0})).measured
    assert remembered_choice(tmp_path, info).decoder == "cpu"


def test_auto_measures_this_machines_decoders_at_the_first_encode_and_cleanup_accepts_the_file(cfr_source, tmp_path, run_cli):
    cache = ProxyCache(tmp_path / "cache")
    proxy = cache.ensure(cfr_source, settings=ProxySettings(hwaccel="auto"))
    choice = remembered_choice(cache.root, probe(cfr_source))
    assert choice is not None and choice.rates["cpu"] > 0
    assert json.loads(proxy.with_suffix(".json").read_text())["decoder"] == choice.decoder
    info = run_cli("info", cfr_source, "--json", cache_dir=cache.root)
    assert json.loads(info.stdout)["hwaccel_auto"]["decoder"] == choice.decoder
    assert cache.cleanup(stale_only=True) == 0  # the memory file is scrubproxy's own: not a reason to refuse
    assert remembered_choice(cache.root, probe(cfr_source)) == choice
    assert cache.cleanup() == 1 and not (cache.root / MEMORY_NAME).exists()  # a full cleanup forgets it too


def test_time_decode_times_the_steady_frames_and_reports_a_decoder_that_does_not_open(cfr_source):
    import av

    info = probe(cfr_source)

    def open_cpu(info, decoder):
        if decoder != "cpu":
            raise RuntimeError("no such device here")
        container = av.open(str(info.path))
        return container, container.streams.video[0]

    assert time_decode(info, "cpu", open_cpu, frames=30) > 0
    assert time_decode(info, "cuda", open_cpu) is None
