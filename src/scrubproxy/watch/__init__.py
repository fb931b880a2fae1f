"""The folder watcher: completeness detection, niced child encoders and the cache budget."""

from .watcher import VIDEO_PATTERNS, SegmentWatcher, WatchStatus, default_jobs

__all__ = ["VIDEO_PATTERNS", "SegmentWatcher", "WatchStatus", "default_jobs"]
