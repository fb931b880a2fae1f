"""Shared fixtures: real recordings made with PyAV whose frames carry their own index."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from scrubproxy import ProxyCache
from scrubproxy.samples import RecordingSpec, make_recording, vfr_times


@pytest.fixture(autouse=True)
def _isolated_cache_env(tmp_path_factory, monkeypatch):
    """No test may touch the real user cache: the default root points into tmp."""
    monkeypatch.setenv("SCRUBPROXY_CACHE_DIR", str(tmp_path_factory.mktemp("default-cache")))


@pytest.fixture
def cache(tmp_path) -> ProxyCache:
    return ProxyCache(tmp_path / "cache")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


_SPECS: dict[Path, str] = {}


def _make(media_dir: Path, name: str, **kw) -> Path:
    """The recording ``name`` made with ``kw``, once per test session. Two tests
    that ask for one name with different specs get two files (the second name
    carries a hash of its spec), never each other's."""
    path = media_dir / name
    spec = repr(sorted(kw.items()))
    if _SPECS.setdefault(path, spec) != spec:
        digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
        path = path.with_name(f"{path.stem}-{digest}{path.suffix}")
    if not path.exists():
        make_recording(RecordingSpec(path=path, **kw))
    return path


@pytest.fixture(scope="session")
def cfr_source(media_dir) -> Path:
    """2 s of 320x240 H.264 at 30 fps, long GOP with B-frames."""
    return _make(media_dir, "cfr.mp4", frames=60, gop=60, bframes=2)


@pytest.fixture(scope="session")
def vfr_source(media_dir) -> Path:
    """Variable-rate Matroska: stretches at 60, 30 and 20 fps with random drops."""
    times = vfr_times()
    return _make(media_dir, "vfr.mkv", frames=len(times), times=times)


@pytest.fixture(scope="session")
def session_sources(media_dir) -> list[Path]:
    """Three consecutive segments of one recording (30 fps), 20 frames each."""
    return [_make(media_dir, f"seg-{i:03d}.mp4", frames=20, gop=10, bframes=1) for i in range(3)]


@pytest.fixture(scope="session")
def make_media(media_dir):
    """Factory: ``make_media("name.mp4", frames=..., ...)`` -> Path (cached per session)."""
    return lambda name, **kw: _make(media_dir, name, **kw)


@pytest.fixture
def run_cli(tmp_path):
    """Run the real ``scrubproxy`` command in a child process."""
    import subprocess

    def run(*args: str, cache_dir: Path | None = None, timeout: float = 300, env: dict | None = None):
        full_env = {**os.environ, **(env or {})}
        full_env["SCRUBPROXY_CACHE_DIR"] = str(cache_dir or tmp_path / "cache")
        return subprocess.run(
            [sys.executable, "-m", "scrubproxy", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )

    return run
