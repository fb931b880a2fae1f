"""``ProxyCache``: where proxies live, when they can be trusted, and how they are
made, published and removed.

Layout (see docs/architecture.md)::

    <root>/CACHEDIR.TAG                      marks the folder as ours (and as a cache)
    <root>/<session>/<stem>-<hash>.mkv      the proxy
    <root>/<session>/<stem>-<hash>.frames    its frame map
    <root>/<session>/<stem>-<hash>.json      its manifest: the commit record, written last
    <root>/.locks/<session>/<stem>-<hash>.lock

A proxy exists only if its manifest exists and matches: the source's size,
mtime_ns and a hash of sampled blocks, the settings, the format version, and
the size and mtime_ns of the proxy and frame-map files it names (the record,
its validation and the fingerprint are ``manifest.py``'s; a manifest it
refuses counts as none). Anything else is rebuilt. Files are encoded under temporary names in the same folder,
fsynced and renamed into place; the manifest goes last. The per-proxy file
lock makes concurrent callers share one encode; the manifest check does not
rely on it, so a second writer that ignores the lock (a network filesystem)
can at worst cause a rebuild, never a mismatched proxy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import BadInputError, CacheRootRefusedError, EncodeError, InvalidSessionError, ProxyFormatError, SourceUnreadableError
from .growing import WriterGone, followable, open_for_writing, wait_until
from .hwchoice import MEMORY_FILE_RE, forget_choices
from .manifest import (
    FileRecord,
    LiveManifest,
    Manifest,
    ProxyRecord,
    SourceRecord,
    SourceVideo,
    fsync_dir,
    mark_used,
    read_live_manifest,
    read_manifest,
    source_fingerprint,
    write_manifest,
)
from .mux import PROXY_CONTAINER
from .owner import TOKEN_CHARS as OWNER_CHARS
from .owner import alive as owner_alive
from .owner import new_token
from .probe import check_source_path
from .settings import ProxySettings, resolve_cache_root

if TYPE_CHECKING:  # loaded where used: a cache hit needs no PyAV, NumPy, libjpeg or filelock
    import filelock

    from .encode import EncodeResult, ProgressCallback
    from .mux import ProxyWriter
    from .reader import ProxyReader

log = logging.getLogger(__name__)

#: The session of ``session=None`` when a proxy has to be made (and where lookups look first).
DEFAULT_SESSION = "default"
#: ``progress(i, source, state, done, total, fps)`` of :meth:`ProxyCache.ensure_many`;
#: ``state`` is "reused", "waiting", "following", "recording", "encoding" or "done".
ManyProgressCallback = Callable[[int, Path, str, int, "int | None", float], None]
#: How often a waiting :meth:`ProxyCache.ensure_many` worker looks whether it was interrupted.
_POLL_SECONDS = 0.1
SESSION_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_STEM_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY = r"[A-Za-z0-9._-]*-[0-9a-f]{8}(?:[0-9a-f]{8})?"
#: A proxy's files: the proxy, its frame map, its manifest, its thumbnail sheets (thumbs.py) and its sound for the page (audio.py).
PROXY_FILE_RE = re.compile(rf"(?P<key>{_KEY})\.(?P<ext>avi|mkv|frames|json|webm|w[0-9]{{1,5}}i[0-9]{{1,10}}c[0-9]{{1,2}}r[0-9]{{1,2}}\.thumbs)")
TEMP_FILE_RE = re.compile(rf"\.(?P<key>{_KEY})\.(?P<owner>{OWNER_CHARS})\.tmp\.(?P<ext>avi|mkv|frames|json|webm|thumbs)")
TAG_NAME = "CACHEDIR.TAG"
LOCKS_DIR = ".locks"
RESERVED_NAMES = (".", "..", LOCKS_DIR, TAG_NAME)
TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a cache of scrubproxy proxies (all-intra MJPEG copies of recordings).\n"
    "# scrubproxy may delete anything it made here; see https://bford.info/cachedir/\n"
)


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


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def recording_order(path: Path) -> tuple[list[object], str]:
    """Recording order: by file name with digit runs compared as numbers (seg-2
    before seg-10), then by the full path."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)], str(path)


@dataclass(frozen=True)
class CacheEntry:
    """One proxy (or leftover) in the cache, as :meth:`ProxyCache.entries` reports it.

    ``state``: ``valid`` (usable as is), ``live`` (growing with a recording
    that is being followed: ``frames`` is the count published so far),
    ``stale`` (its source changed or is gone: rebuilt on next use) or
    ``orphan`` (files without a matching manifest, such as leftovers of a
    killed encode, or of a follower that died).
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

    def _key(self, source: Path, session_dir: Path) -> tuple[str, Manifest | None]:
        """``(<stem>-<8 hex>, its manifest)``, or the 16-hex name in the rare
        case that another source owns the 8-hex one: distinct sources never
        share a proxy."""
        key = self._key_for(source)
        manifest = read_manifest(session_dir / f"{key}.json")
        if manifest is not None and manifest.source.path != str(source):
            key = self._key_for(source, 16)
            return key, read_manifest(session_dir / f"{key}.json")
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
        next encode will publish. ``session=None``: a valid proxy in any session
        (see :meth:`find`), else the name in :data:`DEFAULT_SESSION`.
        """
        settings = settings or ProxySettings()
        src = Path(source).expanduser().absolute()
        src = src.resolve() if src.exists() else src
        if session is None and src.is_file():
            found = self.find(src, settings)
            if found is not None:
                return found[1]
        sdir = self.session_dir(session)
        key, manifest = self._key(src, sdir)
        if manifest is not None and manifest.settings == settings.fingerprint():
            return sdir / manifest.proxy.file
        return sdir / f"{key}.{PROXY_CONTAINER}"

    # -- validity -----------------------------------------------------------------

    @staticmethod
    def _valid_proxy(manifest: Manifest | None, source: Path, sdir: Path, settings: ProxySettings) -> Path | None:
        """The proxy path if ``manifest`` commits a complete proxy of the current
        ``source`` made with ``settings``; stats and samples only, never decodes.
        (The format version and the fields were checked when it was read.)"""
        if manifest is None or manifest.settings != settings.fingerprint():
            return None
        if not manifest.source.matches(source) or not manifest.files_match(sdir):
            return None
        return sdir / manifest.proxy.file

    def lookup(self, source: str | Path, session: str | None = None, settings: ProxySettings | None = None) -> Path | None:
        """The valid proxy of ``source``, or ``None``. Never encodes, never waits.

        ``session=None`` looks in every session (see :meth:`find`); a named
        session looks in that session only.
        """
        settings = settings or ProxySettings()
        src = self._resolve_source(source)
        if session is None:
            found = self._find(src, settings)
            return None if found is None else found[1]
        sdir = self.session_dir(session)
        _, manifest = self._key(src, sdir)
        return self._valid_proxy(manifest, src, sdir, settings)

    def find(self, source: str | Path, settings: ProxySettings | None = None) -> tuple[str, Path] | None:
        """``(session, proxy path)`` of a valid proxy of ``source`` made with
        ``settings``, in any session: :data:`DEFAULT_SESSION` first, then the
        others in sorted order. Stats and samples only; never encodes."""
        return self._find(self._resolve_source(source), settings or ProxySettings())

    def _find(self, src: Path, settings: ProxySettings) -> tuple[str, Path] | None:
        names = self._session_names(None)
        for name in sorted(names, key=lambda n: n != DEFAULT_SESSION):  # stable: default, then sorted
            sdir = self.root / name
            _, manifest = self._key(src, sdir)
            hit = self._valid_proxy(manifest, src, sdir, settings)
            if hit is not None:
                return name, hit
        return None

    def session_sources(self, session: str, settings: ProxySettings | None = None) -> list[Path]:
        """The sources of the session's valid proxies (only those made with
        ``settings`` when given), in recording order: by file name with numbers
        compared as numbers (seg-2 before seg-10), then by full path.

        Raises :class:`BadInputError` when the session has none.
        """
        sdir = self.session_dir(session)
        wanted = settings.fingerprint() if settings is not None else None
        sources = {
            e.source
            for e in self.entries(session)
            if e.state == "valid" and e.source is not None and (wanted is None or self._settings_of(sdir, e.key) == wanted)
        }
        if not sources:
            raise BadInputError(sdir, f"session has no valid proxies (make them with: scrubproxy proxy SRC... --session {session})")
        return sorted(sources, key=recording_order)

    @staticmethod
    def _settings_of(sdir: Path, key: str) -> dict[str, Any] | None:
        manifest = read_manifest(sdir / f"{key}.json")
        return None if manifest is None else manifest.settings

    # -- making -----------------------------------------------------------------

    def ensure(
        self,
        source: str | Path,
        session: str | None = None,
        settings: ProxySettings | None = None,
        progress: ProgressCallback | None = None,
        force: bool = False,
        on_wait: Callable[[], None] | None = None,
        follow: bool = True,
    ) -> Path:
        """Return the path of a valid proxy of ``source``, encoding it if needed.

        A hit costs a few stats and a sample read of three 4 KiB blocks (well
        under a millisecond) and never decodes. Concurrent callers, in any
        process, share one encode: ``on_wait`` is called once, before blocking,
        when someone else holds this proxy's lock (is encoding it). ``force``
        rebuilds even a valid proxy; a failed rebuild leaves the old proxy as it was.

        ``session=None`` reuses a valid proxy of the same source and settings
        from any session (see :meth:`find`) and otherwise makes it in
        :data:`DEFAULT_SESSION` ("default"); a named session uses that session only.

        A source that a recorder is still writing is never published as a
        complete proxy: it is followed to its end (:meth:`follow`), or for a
        format that cannot be read while written (an MP4/MOV with its index at
        the end) waited for. ``follow=False`` takes what is there now instead,
        committed as ``partial`` (and stale once the file grows).
        """
        return self._ensure(source, session, settings, progress, force, on_wait, None, follow)

    def _ensure(
        self,
        source: str | Path,
        session: str | None,
        settings: ProxySettings | None,
        progress: ProgressCallback | None,
        force: bool,
        on_wait: Callable[[], None] | None,
        stop: threading.Event | None,
        follow: bool = True,
        on_follow: Callable[[str], None] | None = None,
    ) -> Path:
        """:meth:`ensure`; ``stop`` set ends a wait for the lock with KeyboardInterrupt.
        ``on_follow("following" | "recording")`` says the source is still being
        written and is followed, or waited for (a format that cannot be followed)."""
        settings = settings or ProxySettings()
        src = self._resolve_source(source)
        if session is None and not force:
            found = self._find(src, settings)
            if found is not None:
                mark_used(found[1].with_suffix(".json"))
                return found[1]
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
        with self._locked(session_name, key, on_wait=on_wait, stop=stop):
            key, manifest = self._key(src, sdir)  # decided under the 8-hex lock: collisions too
            manifest_path = sdir / f"{key}.json"
            if not force:
                hit = self._valid_proxy(manifest, src, sdir, settings)
                if hit is not None:  # another process made it while we waited
                    mark_used(manifest_path)
                    return hit
            if follow and open_for_writing(src):
                if followable(src):
                    if on_follow is not None:
                        on_follow("following")
                    return self._follow_locked(src, sdir, key, settings, WriterGone(src), stop, None, progress)
                if on_follow is not None:
                    on_follow("recording")  # an MP4/MOV whose index comes at the end: wait for it
                wait_until(WriterGone(src), stop)
            return self._encode_locked(src, sdir, key, settings, progress, still_written=not follow and bool(open_for_writing(src)))

    def _encode_locked(self, src: Path, sdir: Path, key: str, settings: ProxySettings, progress: ProgressCallback | None, still_written: bool = False) -> Path:
        """Encode ``src`` and publish it, under the proxy's lock. ``still_written``:
        a recorder is still writing it and the caller takes what is there now,
        marked partial (and stale as soon as the file changes)."""
        from .encode import encode_proxy

        self._remove_leftovers(sdir, key)
        owner = new_token()
        try:
            before = source_fingerprint(src)
        except OSError as exc:
            raise SourceUnreadableError(src, f"cannot read the source: {exc.strerror or exc}") from exc
        claim = self._claim_session_dir(sdir, key, owner)
        try:
            result = encode_proxy(src, sdir / f".{key}.{owner}.tmp", settings, progress, memory_root=self.root)
            if still_written:
                note = f"taken while still being written ({before.size} bytes then): the proxy holds the {result.frames} frames there were"
                result = dataclasses.replace(result, partial=True, warnings=(*result.warnings, note))
            return self._publish(result, sdir, key, owner, settings, before, snapshot=still_written)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)  # gone already once the manifest is published
            raise

    def ensure_many(
        self,
        sources: Iterable[str | Path],
        session: str | None = None,
        settings: ProxySettings | None = None,
        *,
        jobs: int = 1,
        force: bool = False,
        follow: bool = True,
        progress: ManyProgressCallback | None = None,
    ) -> list[Path]:
        """:meth:`ensure` each source, ``jobs`` at a time (threads); the proxies in input order.

        ``progress(i, source, state, done, total, fps)`` reports source ``i``:
        "reused" (a valid proxy was there already; nothing else follows),
        "waiting" (on another process's encode of it), "following" (a recorder
        is still writing it: frames so far, total None) or "recording" (still
        written, in a format that cannot be followed: waiting for its end),
        "encoding" (done of total frames, fps) and "done". ``follow`` as in :meth:`ensure`. A KeyboardInterrupt in the caller's
        thread stops the running encodes and waits too (Ctrl-C reaches only
        the main thread), cancels the pending ones, and is raised again.
        """
        items = [Path(s) for s in sources]
        stop = threading.Event()

        def report(i: int, src: Path, state: str, done: int = 0, total: int | None = None, fps: float = 0.0) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            if progress is not None:
                progress(i, src, state, done, total, fps)

        def one(i: int, src: Path) -> Path:
            if not force:
                hit = self.lookup(src, session, settings)
                if hit is not None:
                    mark_used(hit.with_suffix(".json"))
                    report(i, src, "reused")
                    return hit
            last: list[Any] = [0, None, 0.0]

            def encoding(done: int, total: int | None, fps: float) -> None:
                last[:] = [done, total, fps]
                report(i, src, "encoding", done, total, fps)

            path = self._ensure(src, session, settings, encoding, force, lambda: report(i, src, "waiting"), stop, follow, lambda state: report(i, src, state))
            report(i, src, "done", *last)
            return path

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(one, i, src) for i, src in enumerate(items)]
            try:
                return [f.result() for f in futures]
            except BaseException:
                stop.set()
                for f in futures:
                    f.cancel()
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
    def _locked(
        self, session: str, key: str, timeout: float = -1, on_wait: Callable[[], None] | None = None, stop: threading.Event | None = None
    ) -> Iterator[None]:
        """Hold this proxy's lock. Busy: ``on_wait()`` once, then block (up to
        ``timeout``; while blocking, ``stop`` set raises KeyboardInterrupt)."""
        import filelock

        lock_path = self._lock_path(session, key)
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EncodeError(lock_path.parent, f"cannot create the lock folder: {exc.strerror or exc}") from exc
        lock = filelock.FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            if on_wait is not None:
                on_wait()
            self._wait_for(lock, timeout, stop)
        try:
            yield
        finally:
            lock.release()

    @staticmethod
    def _wait_for(lock: filelock.BaseFileLock, timeout: float, stop: threading.Event | None) -> None:
        import filelock

        if stop is None:
            lock.acquire(timeout=timeout)
            return
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            if stop.is_set():
                raise KeyboardInterrupt
            step = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
            try:
                lock.acquire(timeout=step)
                return
            except filelock.Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def _remove_leftovers(self, sdir: Path, key: str | None) -> int:
        """Delete temporary files of killed encodes of this proxy (of every proxy
        when ``key`` is None); returns how many files were removed."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(sdir):
                m = TEMP_FILE_RE.fullmatch(entry.name)
                if m is None or (key is not None and m["key"] != key) or not entry.is_file(follow_symlinks=False):
                    continue
                if not owner_alive(m["owner"], entry.stat(follow_symlinks=False).st_mtime):
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

    def _publish(self, result: EncodeResult, sdir: Path, key: str, owner: str, settings: ProxySettings, before: SourceRecord, snapshot: bool = False) -> Path:
        """Rename the encoded files into place and commit them with the manifest.

        Order: drop the old manifest (the old proxy stops being trusted), rename
        the proxy and frame map, write the new manifest last. A crash at any
        point leaves either no manifest (rebuilt next time) or a complete one.
        A source whose fingerprint changed since ``before`` (taken when the
        encode started) is refused: the proxy may show the older content, and
        a manifest with the newer fingerprint would vouch for it. A
        ``snapshot`` (a partial proxy of a file still being written) is
        committed with ``before``: stale as soon as the file has grown.
        """
        proxy_final = sdir / f"{key}.{result.container}"
        frames_final = sdir / f"{key}.frames"
        manifest_path = sdir / f"{key}.json"
        manifest_tmp = sdir / f".{key}.{owner}.tmp.json"
        try:
            source_record = before if snapshot else source_fingerprint(result.source.path)
            if source_record != before:
                for p in (result.proxy_path, result.frame_map_path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)
                raise EncodeError(result.source.path, "the source changed while its proxy was being made (still being written?)")
            # Our own files' records, taken before they get the shared names: a
            # writer that ignores the lock may replace those names before our
            # manifest lands, and the manifest must not vouch for its files.
            proxy_file = FileRecord.of(result.proxy_path, proxy_final.name)
            frames_record = FileRecord.of(result.frame_map_path, frames_final.name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(manifest_path)
            fsync_dir(sdir)
            os.replace(result.proxy_path, proxy_final)
            os.replace(result.frame_map_path, frames_final)
            fsync_dir(sdir)
            video = result.source.video
            manifest = Manifest(
                source=source_record,
                settings=settings.fingerprint(),
                proxy=ProxyRecord(**vars(proxy_file), container=result.container, width=result.width, height=result.height, frames=result.frames),
                frame_map=frames_record,
                build_id=result.build_id,
                partial=result.partial,
                warnings=tuple(result.warnings),
                decoder=result.decoder,
                encode_seconds=round(result.seconds, 3),
                source_video=SourceVideo(video.codec, video.width, video.height, video.rotation, video.variable_rate, str(video.average_rate)),
                scrubproxy_version=__version__,
            )
            write_manifest(manifest_path, manifest, manifest_tmp)
        except OSError as exc:
            for p in (result.proxy_path, result.frame_map_path, manifest_tmp):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
            raise EncodeError(manifest_path, f"publishing the proxy failed: {exc.strerror or exc}") from exc
        other = sdir / f"{key}.avi"  # the proxy of FORMAT_VERSION 1, if any
        with contextlib.suppress(FileNotFoundError):
            os.unlink(other)
        log.info("proxy ready: %s (%d frames, %.1f MB)", proxy_final, result.frames, proxy_final.stat().st_size / 1e6)
        return proxy_final

    def open(self, source: str | Path, session: str | None = None, settings: ProxySettings | None = None) -> ProxyReader:
        """Ensure the proxy of ``source`` (``session`` as in :meth:`ensure`) and
        open it for frame access; records the use (the reader itself never writes).

        A segment that is being followed while it is recorded (:meth:`follow`)
        opens at once as a live reader (``r.live``; ``r.refresh()`` picks up
        new frames) instead of waiting for its end.
        """
        from .reader import ProxyReader

        live = self.live_proxy(source, session, settings)
        if live is not None:
            try:
                return ProxyReader(live)
            except ProxyFormatError:
                pass  # finished or dropped meanwhile: the ordinary way below
        proxy = self.ensure(source, session, settings)
        reader = ProxyReader(proxy)
        mark_used(proxy.with_suffix(".json"))
        return reader


    # -- following a recording ------------------------------------------------------

    def follow(
        self,
        source: str | Path,
        session: str | None = None,
        settings: ProxySettings | None = None,
        *,
        is_done: Callable[[], bool] | None = None,
        stop: threading.Event | None = None,
        on_publish: Callable[[int], None] | None = None,
    ) -> Path:
        """Make the proxy of a segment while it is being recorded; returns the
        valid proxy once the recording is complete.

        Frames are decoded as their bytes reach the file and published in
        batches (at most about 0.5 s apart): from the first batch on,
        :meth:`open` in any process gives a live reader, and :meth:`entries`
        lists the entry as ``live``. ``is_done()`` says when the recorder is done
        with the file (default: no process holds it open for writing and it
        stopped changing, see :class:`growing.WriterGone`); a recorder calling
        this from its own process passes its own. At the end the live proxy
        becomes an ordinary one, its frames untouched, after a demux-only scan of
        the finished file confirms every frame; if it does not match, the
        segment is encoded anew (logged). ``stop`` set abandons the follow (the
        live proxy is deleted; ``FollowStopped`` is raised). A file truncated,
        replaced or deleted while followed raises :class:`SourceChangedError`
        and leaves nothing behind. ``session=None`` means :data:`DEFAULT_SESSION`.
        """
        settings = settings or ProxySettings()
        src = self._resolve_source(source)
        session_name = validate_session(session)
        sdir = self.root / session_name
        self._prepare_session_dir(sdir)
        with self._locked(session_name, self._key_for(src)):
            key, manifest = self._key(src, sdir)
            hit = self._valid_proxy(manifest, src, sdir, settings)
            if hit is not None:
                return hit
            return self._follow_locked(src, sdir, key, settings, is_done or WriterGone(src), stop, on_publish)

    def _follow_locked(
        self,
        src: Path,
        sdir: Path,
        key: str,
        settings: ProxySettings,
        is_done: Callable[[], bool],
        stop: threading.Event | None,
        on_publish: Callable[[int], None] | None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """:meth:`follow`, under the proxy's lock."""
        from .live import LiveOrderError, confirm_followed, follow_proxy

        self._remove_leftovers(sdir, key)
        self._remove_unusable(sdir, key)
        owner = new_token()
        claim = self._claim_session_dir(sdir, key, owner)
        manifest_path = sdir / f"{key}.json"
        started = time.monotonic()
        st = os.stat(src)
        build_id = secrets.token_bytes(16)
        record = LiveManifest(str(src), st.st_dev, st.st_ino, settings.fingerprint(), f"{key}.{PROXY_CONTAINER}", f"{key}.frames", 0, 0, build_id.hex(), owner)

        def begin(writer: ProxyWriter) -> None:
            live = dataclasses.replace(record, width=writer.geometry.width, height=writer.geometry.height)
            write_manifest(manifest_path, live, sdir / f".{key}.{owner}.tmp.json")

        def published(count: int) -> None:
            if progress is not None:
                progress(count, None, count / max(time.monotonic() - started, 1e-6))
            if on_publish is not None:
                on_publish(count)

        try:
            try:
                writer, followed = follow_proxy(src, sdir / record.proxy_file, sdir / record.frame_map_file, settings, build_id, is_done, stop, begin, published)
            except LiveOrderError as exc:
                log.warning("%s: %s; proxying it once it is complete", src, exc.reason)
                wait_until(is_done, stop)
                return self._encode_locked(src, sdir, key, settings, progress)
            before = source_fingerprint(src)
            result = confirm_followed(src, followed, writer, time.monotonic() - started)
            if result is None:
                writer.abort()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(manifest_path)
                log.warning("%s: the frames followed while it was recorded do not match the finished file; encoding it again", src)
                return self._encode_locked(src, sdir, key, settings, progress)
            return self._publish(result, sdir, key, owner, settings, before)
        except BaseException:
            ours = read_live_manifest(manifest_path)
            if ours is not None and ours.owner == owner:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(manifest_path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)
            raise

    def _live_record(self, sdir: Path, key: str) -> LiveManifest | None:
        """The record of a live proxy whose follower is at work, else None."""
        live = read_live_manifest(sdir / f"{key}.json")
        if live is None:
            return None
        try:
            last_write = os.stat(sdir / live.frame_map_file).st_mtime
        except OSError:
            return None
        return live if owner_alive(live.owner, last_write) else None

    def live_proxy(self, source: str | Path, session: str | None = None, settings: ProxySettings | None = None) -> Path | None:
        """The proxy of ``source`` being followed now while recorded (in
        ``session``, or in any session), else None. Never waits."""
        src = self._resolve_source(source)
        settings = settings or ProxySettings()
        for name in self._session_names(session) if session is not None else [DEFAULT_SESSION, *self._session_names(None)]:
            sdir = self.root / name
            key = self._key_for(src)
            live = self._live_record(sdir, key)
            if live is not None and live.source_path == str(src) and live.settings == settings.fingerprint():
                return sdir / live.proxy_file
        return None

    def _remove_unusable(self, sdir: Path, key: str) -> None:
        """Delete this key's proxy files that no valid manifest vouches for (a
        stale proxy, a dead follower's live one): the record first, so that
        nothing trusts the files while they go."""
        for suffix in ("json", PROXY_CONTAINER, "frames"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sdir / f"{key}.{suffix}")

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
        from .framemap import published_count as live_frames

        manifest_path = sdir / f"{key}.json"
        manifest = read_manifest(manifest_path)
        # Another process may publish or remove these files while we look: a file gone counts as nothing.
        stats = [_stat_or_none(p) for p in files]
        size = sum(st.st_size for st in stats if st is not None)
        if manifest is None:
            live = self._live_record(sdir, key)
            if live is not None:
                return CacheEntry(session, key, Path(live.source_path), sdir / live.proxy_file, size, live_frames(sdir / live.frame_map_file), "live", False, None, tuple(sorted(files)))
        if manifest is None or not manifest.files_match(sdir):
            return CacheEntry(session, key, None, next((p for p in files if p.suffix in (".avi", ".mkv")), None), size, None, "orphan", False, None, tuple(sorted(files)))
        source = Path(manifest.source.path)
        fresh = manifest.source.matches(source)
        manifest_stat = _stat_or_none(manifest_path)
        return CacheEntry(
            session=session,
            key=key,
            source=source,
            proxy_path=sdir / manifest.proxy.file,
            size=size,
            frames=manifest.proxy.frames,
            state="valid" if fresh else "stale",
            partial=manifest.partial,
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
            if MEMORY_FILE_RE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):  # hwaccel auto's measurements
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
        import filelock

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
        if session is None and not stale_only:
            forget_choices(self.root)  # everything goes, hwaccel auto's measurements too
        log.info("cleaned %d proxies from %s", removed, self.root if session is None else self.root / session)
        return removed
