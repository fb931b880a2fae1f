"""Start-up cost: the commands that do little (``--version``, ``--help``, ``path``,
a cache hit of ``proxy``) load no media engine. PyAV, NumPy and libjpeg are a
few hundred milliseconds of imports; they are loaded where a frame is touched.
Timings live in bench/generate.py; this checks what is imported, which does not
depend on how busy the machine is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scrubproxy import ProxyCache, ProxySettings
from scrubproxy.cli.main import COMMANDS, named_command

HEAVY = ("av", "numpy", "simplejpeg", "PIL")
#: Modules of other commands, which a run of ``proxy`` or ``path`` must not load.
OTHER_COMMANDS = ("scrubproxy.server", "scrubproxy.watch", "scrubproxy.player", "scrubproxy.cli.serve", "scrubproxy.cli.watch", "scrubproxy.cli.demo", "watchdog", "starlette")
#: What a quiet cache hit does without: it takes no lock and draws no bar (0.04 s of imports).
NOT_FOR_A_HIT = ("filelock", "rich.progress")

#: Runs the CLI in this process, then prints which heavy modules it loaded.
_PROBE = """
import json, sys
sys.argv = ["scrubproxy", *json.loads(sys.argv[1])]
code = 0
try:
    from scrubproxy.cli import run
    run()
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY + OTHER_COMMANDS + NOT_FOR_A_HIT,)


def _cli_imports(*args: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(list(args))], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_version_and_help_load_no_media_engine():
    assert _cli_imports("--version") == {"code": 0, "loaded": []}
    # The whole list needs every command's module, none of the media engine.
    assert [m for m in _cli_imports("--help")["loaded"] if m in HEAVY] == []
    assert _cli_imports("proxy", "--help") == {"code": 0, "loaded": []}


def test_a_run_registers_only_the_command_it_names():
    assert named_command(["proxy", "a.mp4"]) == "proxy"
    assert named_command(["--cache-dir", "/c", "--debug", "path", "a.mp4"]) == "path"
    assert named_command(["--cache-dir=/c", "ls"]) == "ls"
    assert named_command(["--cache-dir", "proxy", "serve"]) == "serve"  # a folder called "proxy"
    for args in ([], ["--help"], ["--version"], ["prxy", "a.mp4"], ["--debug"]):
        assert named_command(args) is None, args
    # ... and each command still answers its own help, and a misspelt one is named with the fix.
    for name in COMMANDS:
        done = subprocess.run([sys.executable, "-m", "scrubproxy", name, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and f"scrubproxy {name}" in done.stdout, (name, done.stderr)
    done = subprocess.run([sys.executable, "-m", "scrubproxy", "prxy", "a.mp4"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "No such command 'prxy'" in done.stderr and "proxy" in done.stderr


def test_path_and_a_cache_hit_of_proxy_load_no_media_engine(tmp_path: Path, make_media):
    src = make_media("startup.mp4", frames=6)
    cache_dir = tmp_path / "cache"
    proxy = ProxyCache(cache_dir).ensure(src, settings=ProxySettings(hwaccel="none"))
    for args in (["path", str(src)], ["proxy", str(src), "--quiet"]):
        result = _cli_imports("--cache-dir", str(cache_dir), *args, "--hwaccel", "none")
        assert result == {"code": 0, "loaded": []}, args
    # ... and the proxy it answered with is the one made.
    done = subprocess.run([sys.executable, "-m", "scrubproxy", "--cache-dir", str(cache_dir), "proxy", str(src), "--hwaccel", "none", "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(proxy)


def test_importing_the_package_loads_no_media_engine_until_a_frame_name_is_used():
    code = "import sys, scrubproxy; before = [m for m in %r if m in sys.modules]; scrubproxy.ProxyReader; print(before, 'numpy' in sys.modules)" % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["[]", "True"]
