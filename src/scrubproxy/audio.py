"""A segment's sound for a browser: its source's audio cut to the segment, as Opus in WebM, kept beside the proxy.

The sound of segment time ``t`` is the source's audio at the source's own
``start + t`` (``start`` is where the frame map's times count from), so a
page that sets ``currentTime`` to the source time of the frame on screen hears
that frame's sound. The file starts at segment time 0 and lasts exactly the
segment's duration: audio that starts late or ends early is padded with
silence, priming before the start is cut off.

Decoded and encoded with PyAV (libopus at 48 kHz: WebM/Opus plays in every
Chromium, Firefox and Safari build, AAC in MP4 not in every Chromium).
Written to a temporary file and renamed like the proxy, named ``<key>.webm``
(the cache lists, budgets and removes it with the proxy), and bound to the
proxy's build and frame count by a tag in the file: a rebuilt or grown proxy
gets its sound made again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import av
import numpy as np

from .errors import SourceUnreadableError
from .reader import ProxyReader

#: Audio format assumed where a source's header leaves it out.
DEFAULT_SILENCE = (48000, "mono")
SAMPLE_RATE = 48000  # Opus's own rate
BIT_RATE = 96_000
#: The tag that binds the sound to the proxy build it was cut for.
BUILD_TAG = "SCRUBPROXY_BUILD"
_CHUNK = 4800  # samples handed to the encoder at once (0.1 s)


def source_audio(path: Path | None) -> tuple[int, str] | None:
    """(sample rate, channel layout) of the first audio stream of ``path``; None
    when it has none or cannot be opened (reads the header only)."""
    if path is None:
        return None
    try:
        with av.open(str(path)) as container:
            for stream in container.streams.audio:
                cc = stream.codec_context
                return int(cc.sample_rate or DEFAULT_SILENCE[0]), str(getattr(cc.layout, "name", "") or DEFAULT_SILENCE[1])
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None


def sound_path(proxy_path: Path) -> Path:
    """Where the sound of ``proxy_path``'s segment is kept."""
    return proxy_path.with_suffix(".webm")


def _binding(reader: ProxyReader) -> str:
    return f"{reader.frame_map.header.build_id.hex()}:{len(reader)}"


def _is_current(path: Path, binding: str) -> bool:
    try:
        with av.open(str(path)) as container:
            tags = {k.upper(): v for k, v in container.metadata.items()}
    except (av.error.FFmpegError, OSError, ValueError):
        return False
    return tags.get(BUILD_TAG) == binding


def segment_sound(reader: ProxyReader) -> Path | None:
    """The sound file of ``reader``'s segment, cut now when missing or of
    another build; None when its source has no sound (or is not recorded).
    Raises :class:`SourceUnreadableError` when the source cannot be read."""
    source = reader.metadata.source_path
    if source_audio(source) is None:
        return None
    path = sound_path(reader.path)
    binding = _binding(reader)
    if path.exists() and _is_current(path, binding):
        return path
    fm = reader.frame_map
    start = float(fm.header.source_start_pts * fm.header.source_time_base)
    fd, temp = tempfile.mkstemp(prefix=f".{reader.path.stem}.", suffix=".tmp.webm", dir=path.parent)
    os.close(fd)
    try:
        _cut(source, start, reader.metadata.duration, Path(temp), binding)  # type: ignore[arg-type]
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return path


def _cut(source: Path, start: float, duration: float, out_path: Path, binding: str) -> None:
    """Write ``source``'s sound from its time ``start`` for ``duration`` seconds to ``out_path`` (WebM, Opus)."""
    total = round(duration * SAMPLE_RATE)
    try:
        with av.open(str(source)) as src, av.open(str(out_path), "w", format="webm") as out:
            stream = src.streams.audio[0]
            layout = "stereo" if (stream.codec_context.channels or 1) >= 2 else "mono"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
            out.metadata[BUILD_TAG] = binding
            sink = out.add_stream("libopus", rate=SAMPLE_RATE, layout=layout)
            sink.bit_rate = BIT_RATE
            written = 0

            def emit(samples: np.ndarray) -> None:
                nonlocal written
                for at in range(0, samples.shape[1], _CHUNK):
                    chunk = np.ascontiguousarray(samples[:, at : at + _CHUNK])
                    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                    frame.sample_rate, frame.pts = SAMPLE_RATE, written
                    written += chunk.shape[1]
                    out.mux(sink.encode(frame))

            channels = 2 if layout == "stereo" else 1
            skip: int | None = None  # source samples before segment time 0 still to drop (negative: silence to add)
            for decoded in src.decode(stream):
                if skip is None:
                    first = decoded.time if decoded.time is not None else start
                    skip = round((start - first) * SAMPLE_RATE)
                    if skip < 0:
                        emit(np.zeros((channels, min(-skip, total)), np.float32))
                        skip = 0
                for frame in resampler.resample(decoded):
                    samples = frame.to_ndarray()
                    if skip:
                        dropped = min(skip, samples.shape[1])
                        samples, skip = samples[:, dropped:], skip - dropped
                    samples = samples[:, : total - written]
                    if samples.shape[1]:
                        emit(samples)
                if written >= total:
                    break
            if written < total:
                emit(np.zeros((channels, total - written), np.float32))
            out.mux(sink.encode(None))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise SourceUnreadableError(source, f"its sound cannot be read: {exc}") from exc
