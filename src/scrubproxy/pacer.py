"""A stand-in recorder for tests and benchmarks: copies a pre-encoded recording
into a new file at the pace it was recorded, through FFmpeg's own muxers.

Recorders such as OBS write through libavformat, so a file written here grows
the way theirs do: in the muxer's own bursts (a Matroska cluster at a time, an
MPEG-TS buffer at a time), with the header rewritten at close. Run as
``python -m scrubproxy.pacer SRC DST [--speed X] [--format matroska|mpegts|mp4]
[--pause-at N --pause S] [--log FILE]``; ``--log`` records, per packet, the
time it was handed to the muxer and the file's size after it (a benchmark
reads when each frame's bytes reached the file from that and the finished
file's packet positions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import av


def record(
    source: Path,
    target: Path,
    speed: float = 1.0,
    container_format: str | None = None,
    pause_at: int | None = None,
    pause: float = 0.0,
    log: Path | None = None,
    options: dict[str, str] | None = None,
) -> int:
    """Copy ``source``'s video packets into ``target`` at ``speed`` x real time; returns packets written."""
    entries = []
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        # A few hundred kB of test video would sit in FFmpeg's 32 KiB I/O buffer
        # until close; at recorders' bitrates that buffer fills within each
        # cluster or fragment, so flushing per packet makes a small file grow
        # the way a real recording does.
        with av.open(str(target), "w", format=container_format, options={"flush_packets": "1", **(options or {})}) as out:
            ostream = out.add_stream_from_template(stream)
            started = time.monotonic()
            first = None
            written = 0
            for packet in src.demux(stream):
                if packet.size == 0:
                    continue
                stamp = packet.dts if packet.dts is not None else packet.pts
                t = float((stamp or 0) * stream.time_base)
                first = t if first is None else first
                if pause_at is not None and written == pause_at and pause > 0:
                    time.sleep(pause)
                    started += pause
                delay = started + (t - first) / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                packet.stream = ostream
                out.mux(packet)
                written += 1
                if log is not None:
                    entries.append((time.time(), os.stat(target).st_size))
    if log is not None:
        log.write_text(json.dumps(entries))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--format", dest="container_format")
    parser.add_argument("--pause-at", type=int)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--option", action="append", default=[], help="muxer option KEY=VALUE")
    args = parser.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)
    record(args.source, args.target, args.speed, args.container_format, args.pause_at, args.pause, args.log, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
