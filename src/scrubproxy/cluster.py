"""Proxies made on a Dask cluster's workers, with the guarantees of a local run.

Paths travel, not bytes: sources and the cache root sit on storage every
worker sees, and a path map translates the client's mount points into the
workers' (``/mnt/rec=/data/rec``). Each proxy is one task whose key is its
identity (worker-side source path, cache root, session, settings, source
fingerprint), so two clients of one scheduler asking for the same proxy share
one encode. The cache's publish protocol, not a lock, keeps proxies whole
across machines.

A deterministic failure (a bad source) is a task *result*, never an
exception: Dask does not retry it and the client raises it once, as the same
:class:`~scrubproxy.errors.ScrubProxyError` subclass a local run raises. A
lost worker is Dask's to retry; the cache removes the dead writer's temporary
files on the next encode of that proxy.

Progress travels as worker events (``log_event``) on one topic that clients
subscribe to: pushed by the scheduler, no polling and no shared object to
create or clean up (a ``distributed.Queue`` would need both), and every
client sharing a task sees its progress. Events are throttled on the worker.

``distributed`` is imported only when a cluster is used: without the
``scrubproxy[dask]`` extra everything else works.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import queue
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors
from .cache import ProxyCache, validate_session
from .manifest import SourceRecord, source_fingerprint
from .errors import BadInputError, ClusterError, EncodeError, ScrubProxyError
from .settings import FORMAT_VERSION, ProxySettings, resolve_cache_root

if TYPE_CHECKING:
    from distributed import Client

#: ``progress(index, source, state, frames_done, frames_expected, fps)``; state is
#: ``"running"`` (frames going), ``"done"`` or ``"failed"``. Called on the caller's thread.
ClusterProgress = Callable[[int, Path, str, int, "int | None", float], None]
PathMap = tuple[tuple[str, str], ...]

PROGRESS_TOPIC = "scrubproxy-progress"
INSTALL_HINT = "--scheduler needs the Dask extra: pip install 'scrubproxy[dask]'"
#: A worker sends at most this many progress events a second per segment.
EVENT_INTERVAL = 0.25
#: Newest-first priorities: each call's segments outrank those of earlier calls
#: (call number in the high bits, index within the call in the low ones).
_CALLS = itertools.count(1)


class _Cancelled(Exception):
    """The client no longer wants this task: stop the encode (its temp files go)."""


@dataclass(frozen=True)
class SegmentOutcome:
    """What one task returns: the proxy's worker-side path or the failure, never both.

    ``failure`` is ``(error class name, path, reason, exit code)``: plain
    values, so it pickles whatever the error class's constructor looks like.
    ``encoded`` says whether this run made the proxy (False: a cache hit).
    """

    proxy: str | None
    failure: tuple[str, str | None, str, int] | None
    encoded: bool
    worker: str
    run: str

    def error(self, path_map: PathMap = ()) -> ScrubProxyError:
        """The failure as the exception a local run raises (its path in the client's view)."""
        assert self.failure is not None
        name, path, reason, code = self.failure
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, ScrubProxyError)):
            cls = ScrubProxyError
        exc = cls(None if path is None else map_path(path, _reversed(path_map)), reason)
        if exc.exit_code != code:
            exc.exit_code = code
        return exc


# -- paths ------------------------------------------------------------------------


def parse_path_map(entries: Iterable[str]) -> PathMap:
    """``["/mnt/rec=/data/rec", ...]`` -> ``(("/mnt/rec", "/data/rec"), ...)``:
    client prefix, worker prefix. Both sides absolute; bad entries raise
    :class:`BadInputError` (exit 2)."""
    pairs = []
    for entry in entries:
        client, sep, worker = entry.partition("=")
        client, worker = client.strip(), worker.strip()
        if not sep or not client or not worker:
            raise BadInputError(None, f"--path-map {entry!r}: use CLIENT_PREFIX=WORKER_PREFIX, e.g. /mnt/rec=/data/rec")
        if not (os.path.isabs(os.path.expanduser(client)) and os.path.isabs(worker)):
            raise BadInputError(None, f"--path-map {entry!r}: both prefixes must be absolute paths")
        pairs.append((os.path.normpath(os.path.expanduser(client)), os.path.normpath(worker)))
    return tuple(pairs)


def map_path(path: str | Path, path_map: PathMap) -> str:
    """``path`` with the longest matching prefix of ``path_map`` replaced
    (whole components only: ``/mnt/rec`` does not match ``/mnt/records``)."""
    text = os.path.normpath(os.fspath(path))
    for src, dst in sorted(path_map, key=lambda p: len(p[0]), reverse=True):
        if text == src or text.startswith(src.rstrip("/") + "/"):
            return dst + text[len(src):] if src != "/" else os.path.join(dst, text[1:])
    return text


def _reversed(path_map: PathMap) -> PathMap:
    return tuple((w, c) for c, w in path_map)


def _client_path(path: str | Path) -> str:
    """Absolute and normalised, links kept: a path map names the mount points the user typed."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def task_key(worker_source: str, worker_root: str, session: str, settings: ProxySettings, fingerprint: SourceRecord | None) -> str:
    """The proxy's identity as a Dask key: equal requests from any client give equal keys."""
    identity = [worker_source, worker_root, session, settings.fingerprint(), fingerprint and [fingerprint.size, fingerprint.mtime_ns, fingerprint.sample_hash], FORMAT_VERSION]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    return f"scrubproxy-{Path(worker_source).stem[:40]}-{digest}"


# -- on the worker ------------------------------------------------------------------


def _proxy_task(source: str, cache_root: str, session: str, settings: ProxySettings) -> SegmentOutcome:
    """Run on a worker: ensure one proxy, report progress as events, return the outcome."""
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    run = secrets.token_hex(6)
    encoded = False
    last = 0.0

    def progress(done: int, total: int | None, fps: float) -> None:
        nonlocal encoded, last
        encoded = True
        task = worker.state.tasks.get(key)
        if task is None or task.state == "cancelled":
            raise _Cancelled
        now = time.monotonic()
        if now - last >= EVENT_INTERVAL:
            last = now
            event = {"key": key, "run": run, "state": "running", "done": done, "total": total, "fps": fps, "worker": worker.address}
            worker.log_event(PROGRESS_TOPIC, event)

    def outcome(proxy: str | None = None, failure: tuple[str, str | None, str, int] | None = None) -> SegmentOutcome:
        return SegmentOutcome(proxy, failure, encoded, worker.address, run)

    def unseen(path: str) -> str:
        return f"not found on worker {worker.address} as {path} (is the storage mounted there? see --path-map)"

    if not os.path.isdir(cache_root):
        return outcome(failure=("EncodeError", cache_root, f"cache root {unseen(cache_root)}", EncodeError.exit_code))
    if not os.path.exists(source):
        return outcome(failure=("BadInputError", source, unseen(source), BadInputError.exit_code))
    try:
        proxy = ProxyCache(cache_root).ensure(source, session, settings, progress=progress)
    except ScrubProxyError as exc:
        return outcome(failure=(type(exc).__name__, None if exc.path is None else str(exc.path), exc.reason, exc.exit_code))
    except _Cancelled:
        return outcome(failure=("ClusterError", source, "cancelled", ClusterError.exit_code))
    return outcome(proxy=str(proxy))


# -- on the client ------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    index: int
    source: Path
    key: str


def _requests(sources: Sequence[str | Path], root: str, session: str, settings: ProxySettings, path_map: PathMap) -> list[tuple[_Request, tuple[str, str, str, ProxySettings]]]:
    found = []
    for i, src in enumerate(sources):
        client = _client_path(src)
        try:
            fingerprint = source_fingerprint(Path(client))
        except OSError:  # the client need not see the storage; the workers must
            fingerprint = None
        worker_source = map_path(client, path_map)
        found.append((_Request(i, Path(client), task_key(worker_source, root, session, settings, fingerprint)), (worker_source, root, session, settings)))
    return found


def ensure_on(
    client: Client,
    sources: Sequence[str | Path],
    session: str | None = None,
    settings: ProxySettings | None = None,
    *,
    cache_root: str | Path | None = None,
    path_map: PathMap = (),
    progress: ClusterProgress | None = None,
    priority_newest_first: bool = False,
) -> list[Path]:
    """Ensure the proxies of ``sources`` on ``client``'s cluster; their paths
    (client's view) in input order.

    For programs that already hold a ``distributed.Client``. Waits for every
    segment, then raises the first failure in input order (the error a local
    run raises, reported once); the good ones are made all the same. Ctrl-C
    cancels this client's pending tasks (running encodes stop, nothing half
    written is published). ``priority_newest_first``: what this process
    submitted last (later sources, later calls) runs first, as the watcher
    wants; otherwise first come, first served. Subscribes ``client`` to the
    progress topic while it runs (one handler per topic and client: one call
    at a time per client).
    """
    settings = settings or ProxySettings()
    session_name = validate_session(session)
    client_root = resolve_cache_root(cache_root)
    _try_prepare_root(client_root)
    root = map_path(client_root, path_map)
    requests = _requests(sources, root, session_name, settings, path_map)
    inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    if progress is not None:
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: inbox.put(("event", event[1])))
    try:
        futures = {}
        # Equal priorities run in submission order (Dask's FIFO). Newest-first
        # submits the newest first (workers take the first tasks before later
        # submissions reach the scheduler) with a priority that grows across calls.
        base = next(_CALLS) << 32 if priority_newest_first else 0
        for request, args in reversed(requests) if priority_newest_first else requests:
            if request.key not in futures:
                priority = base + request.index if priority_newest_first else 0
                futures[request.key] = client.submit(_proxy_task, *args, key=request.key, priority=priority)
        outcomes = _gather(client, futures, requests, inbox, progress)
    finally:
        if progress is not None:
            client.unsubscribe_topic(PROGRESS_TOPIC)
    ordered = [outcomes[r.key] for r, _ in requests]
    failed = next((o for o in ordered if o.failure is not None), None)
    if failed is not None:
        raise failed.error(path_map)
    back = _reversed(path_map)
    return [Path(map_path(o.proxy, back)) for o in ordered]  # type: ignore[arg-type]


class Submitted:
    """One segment sent to the cluster by :class:`ClusterQueue`, not waited for:
    its latest progress from the workers, then its outcome."""

    def __init__(self, source: Path, key: str, future: Any, path_map: PathMap) -> None:
        self.source = source
        self.key = key
        #: ``(frames done, frames expected, fps)`` from the latest progress event.
        self.progress: tuple[int, int | None, float] = (0, None, 0.0)
        #: ``time.monotonic()`` of the first progress event (a worker took it), else ``None``.
        self.running_since: float | None = None
        self._future = future
        self._path_map = path_map

    def done(self) -> bool:
        """The task ended (made, reused, failed or cancelled)."""
        return bool(self._future.done())

    def cancelled(self) -> bool:
        return bool(self._future.cancelled())

    def result(self) -> Path:
        """The proxy's path (client's view) once :meth:`done`; a failure raises
        the error a local run raises (a cancelled task: ``ClusterError``)."""
        if self._future.cancelled():
            raise ClusterError(self.source, "cancelled")
        outcome = _result(self._future)
        if outcome.failure is not None:
            raise outcome.error(self._path_map)
        return Path(map_path(outcome.proxy, _reversed(self._path_map)))  # type: ignore[arg-type]

    def cancel(self) -> None:
        """Drop the task: a running encode stops at its next frame and leaves nothing."""
        self._future.cancel()


class ClusterQueue:
    """Segments submitted one at a time, none waited for: how a long-running
    program (the watcher) uses one client of a cluster.

    :meth:`submit` returns at once; ``priority`` orders the cluster's queue
    (higher first: the watcher passes newer segments higher). Progress events
    reach each :class:`Submitted` as they come (this queue subscribes its
    client to the progress topic until :meth:`close`: one queue, or one
    :func:`ensure_on` call, per client at a time). :meth:`close` cancels what
    is still pending.
    """

    def __init__(self, client: Client, path_map: PathMap = ()) -> None:
        self._client = client
        self._path_map = path_map
        self._jobs: dict[str, Submitted] = {}
        client.subscribe_topic(PROGRESS_TOPIC, self._on_event)

    def submit(
        self, source: str | Path, session: str | None, settings: ProxySettings, *, cache_root: str | Path | None = None, priority: int = 0
    ) -> Submitted:
        client_root = resolve_cache_root(cache_root)
        _try_prepare_root(client_root)
        [(request, args)] = _requests([source], map_path(client_root, self._path_map), validate_session(session), settings, self._path_map)
        future = self._client.submit(_proxy_task, *args, key=request.key, priority=priority)
        job = self._jobs[request.key] = Submitted(request.source, request.key, future, self._path_map)

        def forget(_: Any) -> None:  # no more progress to route to it (unless the key was submitted again since)
            if self._jobs.get(job.key) is job:
                del self._jobs[job.key]

        future.add_done_callback(forget)
        return job

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """On the client's event loop thread: plain attribute writes only."""
        message = event[1]
        job = self._jobs.get(message["key"])
        if job is not None and message["state"] == "running":
            if job.running_since is None:
                job.running_since = time.monotonic()
            job.progress = (message["done"], message["total"], message["fps"])

    def close(self) -> None:
        """Cancel every task not done yet and stop listening for progress."""
        pending = [j for j in list(self._jobs.values()) if not j.done()]
        for job in pending:
            job.cancel()
        self._jobs.clear()
        with contextlib.suppress(Exception):  # a client whose cluster is already gone
            self._client.unsubscribe_topic(PROGRESS_TOPIC)


def _try_prepare_root(root: Path) -> None:
    """Create the cache root where the client sees it, so that workers find it;
    a client that does not see the storage leaves that to whoever set it up."""
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)


def _gather(
    client: Client,
    futures: dict[str, Any],
    requests: list[tuple[_Request, Any]],
    inbox: queue.SimpleQueue[tuple[str, Any]],
    progress: ClusterProgress | None,
) -> dict[str, SegmentOutcome]:
    """Wait for every future, passing progress events on as they come (one
    queue for both, so the caller's thread does all the reporting)."""
    by_key: dict[str, list[_Request]] = {}
    for request, _ in requests:
        by_key.setdefault(request.key, []).append(request)
    for fut in futures.values():
        fut.add_done_callback(lambda f: inbox.put(("done", f)))
    outcomes: dict[str, SegmentOutcome] = {}
    try:
        while len(outcomes) < len(futures):
            kind, item = inbox.get()
            if kind == "event":
                if item["key"] not in outcomes and progress is not None:
                    for r in by_key.get(item["key"], ()):
                        progress(r.index, r.source, item["state"], item["done"], item["total"], item["fps"])
            elif item.key not in outcomes:
                outcome = outcomes[item.key] = _result(item)
                for r in by_key[item.key] if progress is not None else ():
                    progress(r.index, r.source, "failed" if outcome.failure else "done", 0, None, 0.0)
    except KeyboardInterrupt:
        client.cancel([f for k, f in futures.items() if k not in outcomes])
        raise
    return outcomes


def _result(future: Any) -> SegmentOutcome:
    """The task's outcome; a segment whose workers kept dying is a one-line cluster error."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        raise ClusterError(None, f"every worker that tried {future.key} died ({exc})") from None


@contextlib.contextmanager
def connect(scheduler: str, connect_timeout: float = 10.0, *, local_log_level: int = logging.CRITICAL) -> Iterator[Client]:
    """A client of ``scheduler`` (an address, or ``local`` / ``local:N`` for a
    LocalCluster of N single-thread worker processes, started and stopped here).
    One-line :class:`ClusterError` (exit 6) when Dask is missing or the
    scheduler does not answer within ``connect_timeout`` seconds.
    ``local_log_level``: what a LocalCluster's scheduler and workers log (to
    stderr). Below CRITICAL that includes the races of its own shutdown (a
    worker's heartbeat to the closed scheduler logs an ERROR with a traceback);
    what matters reaches the client anyway, as task results or KilledWorker."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError(None, INSTALL_HINT) from None
    if scheduler == "local" or scheduler.startswith("local:"):
        workers = _local_workers(scheduler)
        # No dashboard; its HTTP server (health checks) on a free port: the default
        # 8787 would warn on stderr whenever another cluster runs on this machine.
        options = {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": ":0"}, "silence_logs": local_log_level}
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, **options) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=connect_timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClusterError(None, f"cannot reach the Dask scheduler at {scheduler} within {connect_timeout:g} s ({detail})") from None
    with client:
        yield client


def _local_workers(scheduler: str) -> int:
    """``local`` -> one worker per two cores (an encode keeps about two busy); ``local:N`` -> N."""
    _, _, count = scheduler.partition(":")
    if not count:
        return max(1, (os.cpu_count() or 2) // 2)
    if not count.isdigit() or int(count) < 1:
        raise BadInputError(None, f"--scheduler {scheduler!r}: use local, local:N (N >= 1) or a scheduler address")
    return int(count)


def ensure_on_cluster(
    scheduler: str,
    sources: Sequence[str | Path],
    session: str | None,
    settings: ProxySettings | None,
    *,
    cache_root: str | Path | None = None,
    path_map: PathMap = (),
    connect_timeout: float = 10.0,
    progress: ClusterProgress | None = None,
    priority_newest_first: bool = False,
) -> list[Path]:
    """What ``--scheduler`` runs: :func:`connect`, then :func:`ensure_on`."""
    with connect(scheduler, connect_timeout) as client:
        return ensure_on(
            client, sources, session, settings, cache_root=cache_root, path_map=path_map, progress=progress, priority_newest_first=priority_newest_first
        )
