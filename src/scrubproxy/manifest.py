"""The manifest: a proxy's commit record, written last at publish, read by the cache and the reader.

A manifest (``<stem>-<hash>.json`` beside the proxy) vouches for one proxy and
its frame map: which source it shows (path, size, mtime_ns and a hash of
sampled blocks), the settings it was made with, and the size and mtime_ns of
the two files it names. This module is its only reader and writer, and its
only validator: :func:`load_manifest` refuses (``ManifestError``) a file of
another kind, of another format version, truncated or malformed JSON, or one
missing a field; :func:`read_manifest` turns a refusal into ``None``, which
the cache treats as "no manifest" (the proxy is rebuilt) and the reader as
"no record" (it falls back on the frame map alone).

It also owns the source fingerprint (:func:`source_fingerprint`,
:func:`sample_hash`): the fingerprint exists to be recorded in a manifest and
compared with it later (:meth:`SourceRecord.matches`), so the record and the
way it is taken live together; the cache only asks. And :func:`mark_used`,
because "last used" is the manifest file's atime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProxyFormatError
from .settings import FORMAT_VERSION

MANIFEST_KIND = "scrubproxy-manifest"
SAMPLE_BLOCK = 4096  # one page each: enough to tell two recordings apart, cheap on a hit


class ManifestError(ProxyFormatError):
    """A manifest that cannot be trusted: absent, damaged, foreign or of another format version."""


def sample_hash(path: Path, size: int) -> str:
    """Hash of the size and the start, middle and end blocks of a file (reads
    at most 3 x 4 KiB; SHA-256 because CPUs hash it in hardware)."""
    h = hashlib.sha256()
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        if size <= 3 * SAMPLE_BLOCK:
            h.update(f.read())
        else:
            for offset in (0, size // 2 - SAMPLE_BLOCK // 2, size - SAMPLE_BLOCK):
                f.seek(offset)
                h.update(f.read(SAMPLE_BLOCK))
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class SourceRecord:
    """What the source looked like when its proxy was made."""

    path: str
    size: int
    mtime_ns: int
    sample_hash: str

    def matches(self, source: Path) -> bool:
        """Is ``source`` still this file, unchanged? Stats, then samples only on a size/mtime match."""
        if self.path != str(source):
            return False
        try:
            st = os.stat(source)
        except OSError:
            return False
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
            return False
        try:
            return sample_hash(source, st.st_size) == self.sample_hash
        except OSError:
            return False


def source_fingerprint(path: Path) -> SourceRecord:
    """The record of ``path`` as it is now (raises OSError when it cannot be read)."""
    st = path.stat()
    return SourceRecord(str(path), st.st_size, st.st_mtime_ns, sample_hash(path, st.st_size))


@dataclass(frozen=True)
class FileRecord:
    """One file the manifest vouches for, by name (in the manifest's folder), size and mtime_ns."""

    file: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> "FileRecord":
        """The record of ``path`` as it is now, under ``name`` (default: its own)."""
        st = path.stat()
        return cls(name or path.name, st.st_size, st.st_mtime_ns)

    def matches(self, folder: Path) -> bool:
        try:
            st = os.stat(os.path.join(folder, self.file))
        except OSError:
            return False
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


@dataclass(frozen=True)
class ProxyRecord(FileRecord):
    """The proxy file, and what it holds."""

    container: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class SourceVideo:
    """Facts about the source's video stream (``average_rate`` as a fraction string, e.g. "30000/1001")."""

    codec: str
    width: int
    height: int
    rotation: int
    variable_rate: bool
    average_rate: str


@dataclass(frozen=True)
class Manifest:
    """A proxy's commit record. The JSON keeps these field names."""

    source: SourceRecord
    settings: dict[str, Any]
    proxy: ProxyRecord
    frame_map: FileRecord
    build_id: str
    partial: bool
    warnings: tuple[str, ...]
    decoder: str
    encode_seconds: float
    source_video: SourceVideo
    created: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION
    scrubproxy_version: str = ""

    def files_match(self, folder: Path) -> bool:
        """Are the proxy and frame map in ``folder`` the very files this manifest committed?"""
        return self.proxy.matches(folder) and self.frame_map.matches(folder)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": MANIFEST_KIND,
            "format_version": self.format_version,
            "scrubproxy_version": self.scrubproxy_version,
            "created": self.created,
            "build_id": self.build_id,
            "source": vars(self.source).copy(),
            "settings": dict(self.settings),
            "proxy": vars(self.proxy).copy(),
            "frame_map": vars(self.frame_map).copy(),
            "partial": self.partial,
            "warnings": list(self.warnings),
            "decoder": self.decoder,
            "encode_seconds": self.encode_seconds,
            "source_video": vars(self.source_video).copy(),
        }


_TYPES: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def _field(path: Path, data: dict[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise ManifestError(path, f"manifest lacks {name!r}")
    value = data[name]
    if not isinstance(value, _TYPES.get(kind, (kind,))) or (kind is not bool and isinstance(value, bool)):
        raise ManifestError(path, f"manifest field {name!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _record(path: Path, data: dict[str, Any], name: str, cls: type, fields: dict[str, type]) -> Any:
    part = _field(path, data, name, dict)
    return cls(**{key: _field(path, part, key, kind) for key, kind in fields.items()})


_FILE_FIELDS = {"file": str, "size": int, "mtime_ns": int}


def parse_manifest(path: Path, data: Any) -> Manifest:
    """The manifest in the JSON value ``data`` (read from ``path``), or ManifestError."""
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise ManifestError(path, "not a scrubproxy manifest")
    version = _field(path, data, "format_version", int)
    if version != FORMAT_VERSION:
        raise ManifestError(path, f"manifest of format version {version}, this scrubproxy reads {FORMAT_VERSION} (the proxy is rebuilt)")
    warnings = _field(path, data, "warnings", list)
    if not all(isinstance(w, str) for w in warnings):
        raise ManifestError(path, "manifest field 'warnings' is not a list of strings")
    proxy_fields = {**_FILE_FIELDS, "container": str, "width": int, "height": int, "frames": int}
    video_fields = {"codec": str, "width": int, "height": int, "rotation": int, "variable_rate": bool, "average_rate": str}
    return Manifest(
        source=_record(path, data, "source", SourceRecord, {"path": str, "size": int, "mtime_ns": int, "sample_hash": str}),
        settings=_field(path, data, "settings", dict),
        proxy=_record(path, data, "proxy", ProxyRecord, proxy_fields),
        frame_map=_record(path, data, "frame_map", FileRecord, _FILE_FIELDS),
        build_id=_field(path, data, "build_id", str),
        partial=_field(path, data, "partial", bool),
        warnings=tuple(warnings),
        decoder=_field(path, data, "decoder", str),
        encode_seconds=float(_field(path, data, "encode_seconds", float)),
        source_video=_record(path, data, "source_video", SourceVideo, video_fields),
        created=float(_field(path, data, "created", float)),
        format_version=version,
        scrubproxy_version=_field(path, data, "scrubproxy_version", str),
    )


def _read_json(path: Path) -> Any:
    """The JSON in a manifest, read without touching its atime (O_NOATIME where
    the OS has it and we own the file): a manifest's atime records deliberate
    uses only (:func:`mark_used`), and with relatime the first plain read after
    a use would set it again, so listing the cache would reorder its LRU."""
    flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:  # O_NOATIME needs ownership; read plainly then
        fd = os.open(path, os.O_RDONLY)
    with open(fd, encoding="utf-8") as f:
        return json.load(f)


def load_manifest(path: Path) -> Manifest:
    """The manifest at ``path``; ManifestError (with the reason) when it is absent or refused."""
    try:
        data = _read_json(path)
    except OSError as exc:
        raise ManifestError(path, f"cannot read the manifest: {exc.strerror or exc}") from exc
    except ValueError as exc:  # truncated or malformed JSON, or not UTF-8
        raise ManifestError(path, f"manifest is not valid JSON: {exc}") from exc
    return parse_manifest(path, data)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path``, or ``None`` when it is absent or refused (see :func:`load_manifest`)."""
    try:
        return load_manifest(path)
    except ManifestError:
        return None


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_manifest(path: Path, manifest: "Manifest | LiveManifest", temp: Path) -> None:
    """Write ``manifest`` (or a live record) to ``temp``, fsync it and rename it to ``path`` (the commit)."""
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(manifest.to_json(), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def mark_used(manifest_path: Path) -> None:
    """Record a use of the proxy that ``manifest_path`` commits: its atime is
    "last used" for least-recently-used eviction (its mtime stays the time it
    was made). Best effort: a read-only cache simply keeps no record."""
    with contextlib.suppress(OSError):
        st = manifest_path.stat()
        os.utime(manifest_path, ns=(time.time_ns(), st.st_mtime_ns))


LIVE_KIND = "scrubproxy-live"


@dataclass(frozen=True)
class LiveManifest:
    """The record of a proxy still growing with its recording (same file name as
    the manifest that replaces it at the end; another ``kind``, so that nothing
    that reads manifests can take it for a finished proxy, after any crash).

    It names the source by path and identity (device, inode): a file replaced
    at that path is another recording. ``owner`` is the follower's writer token
    (:mod:`.owner`); a live proxy whose owner is gone will never be finished.
    """

    source_path: str
    source_device: int
    source_inode: int
    settings: dict[str, Any]
    proxy_file: str
    frame_map_file: str
    width: int
    height: int
    build_id: str
    owner: str
    started: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"kind": LIVE_KIND, **vars(self)}


_LIVE_FIELDS = {
    "source_path": str,
    "source_device": int,
    "source_inode": int,
    "settings": dict,
    "proxy_file": str,
    "frame_map_file": str,
    "width": int,
    "height": int,
    "build_id": str,
    "owner": str,
    "started": float,
}


def read_live_manifest(path: Path) -> LiveManifest | None:
    """The live record at ``path``, or ``None`` when there is none (or another
    kind of record, or one this version cannot read)."""
    try:
        data = _read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != LIVE_KIND or data.get("format_version") != FORMAT_VERSION:
        return None
    try:
        values = {name: _field(path, data, name, kind) for name, kind in _LIVE_FIELDS.items()}
    except ManifestError:
        return None
    return LiveManifest(**values, format_version=FORMAT_VERSION)
