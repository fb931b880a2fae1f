"""``ProxyCache``: where proxies live, when they can be trusted, and how they are
made, published and removed.

Layout (see DESIGN.md)::

    <root>/CACHEDIR.TAG                      marks the folder as ours (and as a cache)
    <root>/<session>/<stem>-<hash>.avi|.mkv  the proxy
    <root>/<session>/<stem>-<hash>.frames    its frame map
    <root>/<session>/<stem>-<hash>.json      its manifest: the commit record, written last
    <root>/.locks/<session>/<stem>-<hash>.lock

A proxy exists only if its manifest exists and matches: the source's size,
mtime_ns and a hash of sampled blocks, the settings, the format version, and
the size and mtime_ns of the proxy and frame-map files it names. Anything
else is rebuilt. Files are encoded under temporary names in the same folder,
fsynced and renamed into place; the manifest goes last. The per-proxy file
lock makes concurrent callers share one encode; the manifest check does not
rely on it, so a second writer that ignores the lock (a network filesystem)
can at worst cause a rebuild, never a mismatched proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock

from ._version import __version__
from .encode import EncodeResult, ProgressCallback, choose_container, encode_proxy
from .errors import CacheRootRefusedError, EncodeError, InvalidSessionError, SourceUnreadableError
from .probe import check_source_path, probe
from .settings import FORMAT_VERSION, ProxySettings, resolve_cache_root

if TYPE_CHECKING:
    from .reader import ProxyReader

log = logging.getLogger(__name__)

DEFAULT_SESSION = "default"
SESSION_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_STEM_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY = r"[A-Za-z0-9._-]*-[0-9a-f]{8}(?:[0-9a-f]{8})?"
#: A proxy's files: the proxy, its frame map, its manifest and its thumbnail sheets (thumbs.py).
PROXY_FILE_RE = re.compile(rf"(?P<key>{_KEY})\.(?P<ext>avi|mkv|frames|json|w[0-9]{{1,5}}i[0-9]{{1,10}}c[0-9]{{1,2}}r[0-9]{{1,2}}\.thumbs)")
TEMP_FILE_RE = re.compile(rf"\.(?P<key>{_KEY})\.(?P<owner>[A-Za-z0-9_-]+)\.tmp\.(?P<ext>avi|mkv|frames|json|thumbs)")
TAG_NAME = "CACHEDIR.TAG"
LOCKS_DIR = ".locks"
RESERVED_NAMES = (".", "..", LOCKS_DIR, TAG_NAME)
TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a cache of scrubproxy proxies (all-intra MJPEG copies of recordings).\n"
    "# scrubproxy may delete anything it made here; see https://bford.info/cachedir/\n"
)
SAMPLE_BLOCK = 4096  # one page each: enough to tell two recordings apart, cheap on a hit
#: A temporary file of a writer on another host counts as abandoned after this long unmodified.
ABANDONED_AFTER = 3600.0
MANIFEST_KIND = "scrubproxy-manifest"


def validate_session(session: str | None) -> str:
    """The session folder name for ``session`` (``None`` -> ``"default"``).

    Only ``[A-Za-z0-9._-]{1,128}`` and never ``.``, ``..`` or a name the cache
    root uses itself (``.locks``, ``CACHEDIR.TAG``), so no session id can name
    a folder outside its own or one that listing and cleanup skip.
    """
    if session is None:
        return DEFAULT_SESSION
    if not isinstance(session, str) or not SESSION_RE.fullmatch(session) or session in RESERVED_NAMES:
        raise InvalidSessionError(None, f"invalid session id {session!r}: use 1 to 128 of A-Z a-z 0-9 . _ - (not '.', '..', '{LOCKS_DIR}' or '{TAG_NAME}')")
    return session


def sample_hash(path: Path, size: int) -> str:
    """Hash of the size and the start, middle and end blocks of a file (reads
    at most 12 KiB; SHA-256 because CPUs hash it in hardware)."""
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


def source_fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample_hash": sample_hash(path, st.st_size)}


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _matches_record(path: str, record: dict[str, Any]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == record.get("size") and st.st_mtime_ns == record.get("mtime_ns")


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json_atomically(path: Path, data: dict[str, Any], temp: Path) -> None:
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _host_token() -> str:
    """This host's name as temp-file owners spell it: only ``[A-Za-z0-9_]``, the
    characters ``TEMP_FILE_RE`` accepts in an owner (host names may hold dots)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname())[:32] or "host"


def _owner_token() -> str:
    return f"{_host_token()}_{os.getpid()}_{secrets.token_hex(4)}"


def _owner_alive(owner: str, mtime: float) -> bool:
    """Is the writer that owns a temp file still at work? Same host: its pid
    lives. Other host: the file changed within ``ABANDONED_AFTER``."""
    parts = owner.rsplit("_", 2)
    if len(parts) == 3 and parts[0] == _host_token() and parts[1].isdigit():
        pid = int(parts[1])
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - mtime < ABANDONED_AFTER


def read_manifest_json(path: Path) -> Any:
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


def mark_used(manifest_path: Path) -> None:
    """Record a use of the proxy that ``manifest_path`` commits: its atime is
    "last used" for least-recently-used eviction (its mtime stays the time it
    was made). Best effort: a read-only cache simply keeps no record."""
    with contextlib.suppress(OSError):
        st = manifest_path.stat()
        os.utime(manifest_path, ns=(time.time_ns(), st.st_mtime_ns))


@dataclass(frozen=True)
class CacheEntry:
    """One proxy (or leftover) in the cache, as :meth:`ProxyCache.entries` reports it.

    ``state``: ``valid`` (usable as is), ``stale`` (its source changed or is
    gone: rebuilt on next use) or ``orphan`` (files without a matching
    manifest, such as leftovers of a killed encode).
    """

    session: str
    key: str
    source: Path | None
    proxy_path: Path | None
    size: int
    frames: int | None
    state: str
    partial: bool
    last_used: float | None
    files: tuple[Path, ...]


class ProxyCache:
    """The proxy cache under one root folder. Safe to use from several threads
    and processes at once."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve_cache_root(root)

    def __repr__(self) -> str:
        return f"ProxyCache(root={str(self.root)!r})"

    # -- naming -----------------------------------------------------------------

    def session_dir(self, session: str | None = None) -> Path:
        return self.root / validate_session(session)

    def _lock_path(self, session: str, key: str) -> Path:
        return self.root / LOCKS_DIR / session / f"{key}.lock"

    @staticmethod
    def _key_for(source: Path, digits: int = 8) -> str:
        stem = _STEM_UNSAFE.sub("_", source.stem)[:96] or "segment"
        digest = hashlib.sha256(os.fsencode(source)).hexdigest()[:digits]
        return f"{stem}-{digest}"

    def _key(self, source: Path, session_dir: Path) -> tuple[str, dict[str, Any] | None]:
        """``(<stem>-<8 hex>, its manifest)``, or the 16-hex name in the rare
        case that another source owns the 8-hex one: distinct sources never
        share a proxy."""
        key = self._key_for(source)
        manifest = self._read_manifest(session_dir / f"{key}.json")
        if manifest is not None and manifest.get("source", {}).get("path") != str(source):
            key = self._key_for(source, 16)
            return key, self._read_manifest(session_dir / f"{key}.json")
        return key, manifest

    @staticmethod
    def _resolve_source(source: str | Path) -> Path:
        """The source's real path (links resolved), or the precise error for a bad one."""
        real = os.path.realpath(os.path.expanduser(os.fspath(source)))
        try:
            regular = stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            regular = False
        if not regular:
            check_source_path(source)  # raises: missing, folder, not a regular file
        return Path(real)

    def path_for(self, source: str | Path, session: str | None = None, settings: ProxySettings | None = None) -> Path:
        """Where the proxy of ``source`` lives (or will live). Does not encode.

        A published proxy's own path when there is one; otherwise the name the
        container choice gives (which reads the source's timestamps when the
        container is ``auto``).
        """
        settings = settings or ProxySettings()
        sdir = self.session_dir(session)
        src = Path(source).expanduser().absolute()
        src = src.resolve() if src.exists() else src
        key, manifest = self._key(src, sdir)
        if manifest is not None and manifest.get("settings") == settings.fingerprint():
            return sdir / manifest["proxy"]["file"]
        if settings.container != "auto" or not src.is_file():
            ext = "avi" if settings.container == "auto" else settings.container
            return sdir / f"{key}.{ext}"
        return sdir / f"{key}.{choose_container(probe(src, settings.stream), settings)}"

    # -- validity -----------------------------------------------------------------

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any] | None:
        try:
            data = read_manifest_json(path)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
            return None
        return data

    def _valid_proxy(self, manifest: dict[str, Any] | None, source: Path, sdir: Path, settings: ProxySettings) -> Path | None:
        """The proxy path if ``manifest`` commits a complete proxy of the current
        ``source`` made with ``settings``; stats and samples only, never decodes."""
        if manifest is None or manifest.get("format_version") != FORMAT_VERSION:
            return None
        if manifest.get("settings") != settings.fingerprint():
            return None
        if not self._source_unchanged(manifest, source):
            return None
        if not self._files_match(manifest, sdir):
            return None
        return sdir / manifest["proxy"]["file"]

    @staticmethod
    def _source_unchanged(manifest: dict[str, Any], source: Path) -> bool:
        recorded = manifest.get("source", {})
        if recorded.get("path") != str(source):
            return False
        try:
            st = os.stat(source)
        except OSError:
            return False
        if st.st_size != recorded.get("size") or st.st_mtime_ns != recorded.get("mtime_ns"):
            return False
        return sample_hash(source, st.st_size) == recorded.get("sample_hash")

    @staticmethod
    def _files_match(manifest: dict[str, Any], sdir: Path) -> bool:
        try:
            proxy, frames = manifest["proxy"], manifest["frame_map"]
            folder = os.fspath(sdir)
            return _matches_record(os.path.join(folder, proxy["file"]), proxy) and _matches_record(os.path.join(folder, frames["file"]), frames)
        except (KeyError, TypeError):
            return False

    def lookup(self, source: str | Path, session: str | None = None, settings: ProxySettings | None = None) -> Path | None:
        """The valid proxy of ``source``, or ``None``. Never encodes, never waits."""
        settings = settings or ProxySettings()
        src = self._resolve_source(source)
        sdir = self.session_dir(session)
        _, manifest = self._key(src, sdir)
        return self._valid_proxy(manifest, src, sdir, settings)

    # -- making -----------------------------------------------------------------

    def ensure(
        self,
        source: str | Path,
        session: str | None = None,
        settings: ProxySettings | None = None,
        progress: ProgressCallback | None = None,
        force: bool = False,
    ) -> Path:
        """Return the path of a valid proxy of ``source``, encoding it if needed.

        A hit costs a few stats and a 192 KiB sample read (well under a
        millisecond) and never decodes. Concurrent callers, in any process,
        share one encode. ``force`` rebuilds even a valid proxy; a failed
        rebuild leaves the old proxy as it was.
        """
        settings = settings or ProxySettings()
        src = self._resolve_source(source)
        session_name = validate_session(session)
        sdir = self.root / session_name
        if not force:
            key, manifest = self._key(src, sdir)
            hit = self._valid_proxy(manifest, src, sdir, settings)
            if hit is not None:
                mark_used(sdir / f"{key}.json")
                return hit
        self._prepare_session_dir(sdir)
        key = self._key_for(src)
        with self._locked(session_name, key):
            key, manifest = self._key(src, sdir)  # decided under the 8-hex lock: collisions too
            manifest_path = sdir / f"{key}.json"
            if not force:
                hit = self._valid_proxy(manifest, src, sdir, settings)
                if hit is not None:  # another process made it while we waited
                    mark_used(manifest_path)
                    return hit
            self._remove_leftovers(sdir, key)
            owner = _owner_token()
            try:
                before = source_fingerprint(src)
            except OSError as exc:
                raise SourceUnreadableError(src, f"cannot read the source: {exc.strerror or exc}") from exc
            claim = self._claim_session_dir(sdir, key, owner)
            try:
                result = encode_proxy(src, sdir / f".{key}.{owner}.tmp", settings, progress)
                return self._publish(result, sdir, key, owner, settings, before)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(claim)  # gone already once the manifest is published
                raise

    def _claim_session_dir(self, sdir: Path, key: str, owner: str) -> Path:
        """Make sure the session folder exists and holds this writer's temporary
        manifest (written for real at publish). A cleanup removes only empty
        session folders, so from here on none can pull the folder from under
        the encode; one that removed it just before is undone by trying again."""
        claim = sdir / f".{key}.{owner}.tmp.json"
        for _ in range(10):
            self._prepare_session_dir(sdir)
            try:
                with open(claim, "x", encoding="utf-8"):
                    return claim
            except FileNotFoundError:
                continue
        raise EncodeError(sdir, "the cache folder keeps disappearing (is something else cleaning it?)")

    def _prepare_session_dir(self, sdir: Path) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tag = self.root / TAG_NAME
            if not tag.exists():
                tag.write_text(TAG_TEXT, encoding="utf-8")
            sdir.mkdir(exist_ok=True)
        except OSError as exc:
            raise EncodeError(sdir, f"cannot create the cache folder: {exc.strerror or exc}") from exc
        if sdir.is_dir() and not os.access(sdir, os.W_OK | os.X_OK):  # gone again: the caller retries
            raise EncodeError(sdir, "cache folder is not writable")

    @contextlib.contextmanager
    def _locked(self, session: str, key: str, timeout: float = -1) -> Iterator[None]:
        lock_path = self._lock_path(session, key)
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EncodeError(lock_path.parent, f"cannot create the lock folder: {exc.strerror or exc}") from exc
        with filelock.FileLock(lock_path, timeout=timeout):
            yield

    def _remove_leftovers(self, sdir: Path, key: str | None) -> int:
        """Delete temporary files of killed encodes of this proxy (of every proxy
        when ``key`` is None); returns how many files were removed."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(sdir):
                m = TEMP_FILE_RE.fullmatch(entry.name)
                if m is None or (key is not None and m["key"] != key) or not entry.is_file(follow_symlinks=False):
                    continue
                if not _owner_alive(m["owner"], entry.stat(follow_symlinks=False).st_mtime):
                    log.info("removing leftover of an interrupted encode: %s", entry.path)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def remove_leftovers(self, session: str | None = None) -> int:
        """Delete the temporary files of encodes whose process is gone (killed,
        crashed), in one session or all; returns how many files were removed.
        Files of encodes still running (here or, recently, on another host) stay."""
        return sum(self._remove_leftovers(self.root / name, None) for name in self._session_names(session))

    def _publish(self, result: EncodeResult, sdir: Path, key: str, owner: str, settings: ProxySettings, before: dict[str, Any]) -> Path:
        """Rename the encoded files into place and commit them with the manifest.

        Order: drop the old manifest (the old proxy stops being trusted), rename
        the proxy and frame map, write the new manifest last. A crash at any
        point leaves either no manifest (rebuilt next time) or a complete one.
        A source whose fingerprint changed since ``before`` (taken when the
        encode started) is refused: the proxy may show the older content, and
        a manifest with the newer fingerprint would vouch for it.
        """
        proxy_final = sdir / f"{key}.{result.container}"
        frames_final = sdir / f"{key}.frames"
        manifest_path = sdir / f"{key}.json"
        manifest_tmp = sdir / f".{key}.{owner}.tmp.json"
        try:
            source_record = source_fingerprint(result.source.path)
            if source_record != before:
                for p in (result.proxy_path, result.frame_map_path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)
                raise EncodeError(result.source.path, "the source changed while its proxy was being made (still being written?)")
            # Our own files' records, taken before they get the shared names: a
            # writer that ignores the lock may replace those names before our
            # manifest lands, and the manifest must not vouch for its files.
            proxy_record = {**_file_record(result.proxy_path), "file": proxy_final.name}
            frames_record = {**_file_record(result.frame_map_path), "file": frames_final.name}
            with contextlib.suppress(FileNotFoundError):
                os.unlink(manifest_path)
            _fsync_dir(sdir)
            os.replace(result.proxy_path, proxy_final)
            os.replace(result.frame_map_path, frames_final)
            _fsync_dir(sdir)
            manifest = {
                "kind": MANIFEST_KIND,
                "format_version": FORMAT_VERSION,
                "scrubproxy_version": __version__,
                "created": time.time(),
                "build_id": result.build_id,
                "source": source_record,
                "settings": settings.fingerprint(),
                "proxy": {**proxy_record, "container": result.container, "width": result.width, "height": result.height, "frames": result.frames},
                "frame_map": frames_record,
                "partial": result.partial,
                "warnings": list(result.warnings),
                "decoder": result.decoder,
                "encode_seconds": round(result.seconds, 3),
                "source_video": {
                    "codec": result.source.video.codec,
                    "width": result.source.video.width,
                    "height": result.source.video.height,
                    "rotation": result.source.video.rotation,
                    "variable_rate": result.source.video.variable_rate,
                    "average_rate": str(result.source.video.average_rate),
                },
            }
            _write_json_atomically(manifest_path, manifest, manifest_tmp)
        except OSError as exc:
            for p in (result.proxy_path, result.frame_map_path, manifest_tmp):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
            raise EncodeError(manifest_path, f"publishing the proxy failed: {exc.strerror or exc}") from exc
        other = sdir / f"{key}.{'mkv' if result.container == 'avi' else 'avi'}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(other)
        log.info("proxy ready: %s (%d frames, %.1f MB)", proxy_final, result.frames, proxy_final.stat().st_size / 1e6)
        return proxy_final

    def open(self, source: str | Path, session: str | None = None, settings: ProxySettings | None = None) -> "ProxyReader":
        """Ensure the proxy of ``source`` and open it for frame access."""
        from .reader import ProxyReader

        return ProxyReader(self.ensure(source, session, settings))

    # -- listing ------------------------------------------------------------------

    def _session_names(self, session: str | None) -> list[str]:
        if session is not None:
            return [validate_session(session)]
        try:
            return sorted(
                e.name for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False) and SESSION_RE.fullmatch(e.name) and e.name not in RESERVED_NAMES
            )
        except (FileNotFoundError, NotADirectoryError):  # no cache there (yet): nothing in it
            return []

    def entries(self, session: str | None = None) -> list[CacheEntry]:
        """Every proxy (and leftover) in one session, or in all sessions."""
        found: list[CacheEntry] = []
        for name in self._session_names(session):
            sdir = self.root / name
            for key, files in sorted(self._files_by_key(sdir).items()):
                found.append(self._entry(name, sdir, key, files))
        return found

    @staticmethod
    def _files_by_key(sdir: Path) -> dict[str, list[Path]]:
        """The files of each proxy (and leftover) in one session folder, by key."""
        groups: dict[str, list[Path]] = {}
        try:
            listing = list(os.scandir(sdir))
        except (FileNotFoundError, NotADirectoryError):
            return groups
        for e in listing:
            m = PROXY_FILE_RE.fullmatch(e.name) or TEMP_FILE_RE.fullmatch(e.name)
            if m is not None and e.is_file(follow_symlinks=False):
                groups.setdefault(m["key"], []).append(Path(e.path))
        return groups

    def _entry(self, session: str, sdir: Path, key: str, files: list[Path]) -> CacheEntry:
        manifest_path = sdir / f"{key}.json"
        manifest = self._read_manifest(manifest_path)
        # Another process may publish or remove these files while we look: a file gone counts as nothing.
        stats = [_stat_or_none(p) for p in files]
        size = sum(st.st_size for st in stats if st is not None)
        if manifest is None or not self._files_match(manifest, sdir):
            return CacheEntry(session, key, None, next((p for p in files if p.suffix in (".avi", ".mkv")), None), size, None, "orphan", False, None, tuple(sorted(files)))
        source = Path(manifest["source"]["path"])
        fresh = manifest.get("format_version") == FORMAT_VERSION and self._source_unchanged(manifest, source)
        manifest_stat = _stat_or_none(manifest_path)
        return CacheEntry(
            session=session,
            key=key,
            source=source,
            proxy_path=sdir / manifest["proxy"]["file"],
            size=size,
            frames=manifest["proxy"].get("frames"),
            state="valid" if fresh else "stale",
            partial=bool(manifest.get("partial")),
            last_used=manifest_stat.st_atime if manifest_stat else None,
            files=tuple(sorted(files)),
        )

    # -- removing -----------------------------------------------------------------

    def _check_root_is_ours(self) -> None:
        """Refuse to clean ``/``, the home folder, or a folder holding files
        scrubproxy did not make (a mistyped ``--cache-dir``)."""
        root = self.root.resolve()
        home = Path.home().resolve()
        if root == Path(root.anchor) or root == home or root in home.parents:
            raise CacheRootRefusedError(root, "refusing to clean: this is / or the home folder, not a scrubproxy cache")
        if not root.exists():
            return
        if root.is_symlink() or not root.is_dir():
            raise CacheRootRefusedError(root, "refusing to clean: not a folder")
        for entry in os.scandir(root):
            if entry.name == TAG_NAME and entry.is_file(follow_symlinks=False):
                continue
            if entry.name == LOCKS_DIR and entry.is_dir(follow_symlinks=False):
                continue
            if entry.is_dir(follow_symlinks=False) and SESSION_RE.fullmatch(entry.name) and self._only_ours(Path(entry.path)):
                continue
            raise CacheRootRefusedError(root, f"refusing to clean: {entry.name!r} was not made by scrubproxy (is this the right --cache-dir?)")

    @staticmethod
    def _only_ours(sdir: Path) -> bool:
        return all(
            (PROXY_FILE_RE.fullmatch(e.name) or TEMP_FILE_RE.fullmatch(e.name)) and e.is_file(follow_symlinks=False)
            for e in os.scandir(sdir)
        )

    def remove_entry(self, entry: CacheEntry, keep_valid: bool = False) -> bool:
        """Delete one entry's files unless an encode holds its lock; True if removed.

        The files and the state are read again under the lock: another process
        may have republished the proxy since ``entry`` was listed. ``keep_valid``
        spares it when it is valid by then.
        """
        sdir = self.root / entry.session
        try:
            with self._locked(entry.session, self._key_for_lock(entry), timeout=0):
                files = self._files_by_key(sdir).get(entry.key, [])
                if keep_valid and files and self._entry(entry.session, sdir, entry.key, files).state == "valid":
                    return False
                for p in files:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)
        except filelock.Timeout:
            log.info("skipping %s: an encode is using it", entry.key)
            return False
        return bool(files)

    @staticmethod
    def _key_for_lock(entry: CacheEntry) -> str:
        # Locks are taken on the 8-hex key (see ensure), also for 16-hex names.
        stem, digest = entry.key.rsplit("-", 1)
        return f"{stem}-{digest[:8]}"

    def cleanup(self, session: str | None = None, stale_only: bool = False) -> int:
        """Delete one session's proxies, or every session's; returns how many
        proxies were removed. Only files scrubproxy made are touched; proxies
        being encoded right now are skipped. ``stale_only`` keeps valid ones.
        """
        if session is not None:
            validate_session(session)
        self._check_root_is_ours()
        removed = 0
        for entry in self.entries(session):
            if stale_only and entry.state == "valid":
                continue
            if self.remove_entry(entry, keep_valid=stale_only):
                removed += 1
        for name in self._session_names(session):
            with contextlib.suppress(OSError):
                (self.root / name).rmdir()  # only when empty: never a file we did not make
        log.info("cleaned %d proxies from %s", removed, self.root if session is None else self.root / session)
        return removed
