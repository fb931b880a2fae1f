"""The completeness rules on their own: a fake clock and a fake file system, no
sleeps, no watcher (tests/test_watch.py runs the real thing end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrubproxy.watch.completeness import Complete, CompletenessDetector, FileState, FolderBack, FolderUnavailable, Gone, Writing

SETTLE, QUIET = 5.0, 0.5
REC = Path("/rec")
SEG = REC / "seg-001.mp4"
START = 1_000_000.0  # wall time at the start of each test


class FakeWorld:
    """A clock that moves only when told to, and files that are only (size, mtime)."""

    def __init__(self) -> None:
        self.now = 0.0  # monotonic
        self.files: dict[Path, FileState] = {}

    def wall(self) -> float:
        return START + self.now

    def stat(self, path: Path) -> FileState:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def write(self, path: Path, size: int) -> None:
        self.files[path] = FileState(size, int(self.wall() * 1e9))

    def wait(self, seconds: float) -> None:
        self.now += seconds

    def listing(self, folder: Path = REC) -> dict[Path, FileState]:
        return {p: s for p, s in self.files.items() if p.parent == folder}


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def detector(world: FakeWorld, close_events: bool = True) -> CompletenessDetector:
    return CompletenessDetector(SETTLE, QUIET, close_events=close_events, clock=lambda: world.now, wall_clock=world.wall, stat=world.stat)


def test_a_segment_written_then_closed_is_complete_once_quiet(world):
    d = detector(world)
    for size in (100, 200, 300):
        world.write(SEG, size)
        # Reported as being written once, at its first write.
        assert d.written(SEG) == ([Writing(SEG, world.files[SEG])] if size == 100 else [])
        assert d.check() == []
        world.wait(1.0)
    assert d.closed(SEG) == [] and d.check() == []
    world.wait(QUIET / 2)
    assert d.check() == [] and list(d.pending) == [SEG]
    world.wait(QUIET / 2)
    assert d.check() == [Complete(SEG, world.files[SEG])]
    assert list(d.pending) == [] and d.check() == []
    assert Complete(SEG, world.files[SEG]).last_write == pytest.approx(START + 2.0)


def test_a_recorder_that_pauses_with_the_file_open_is_never_complete(world):
    d = detector(world)
    world.write(SEG, 100)
    d.written(SEG)
    d.scanned(REC, world.listing())  # a rescan during the pause changes nothing
    for _ in range(10):  # ten times the settle time without a write or a close
        world.wait(SETTLE)
        assert d.check() == []
    world.write(SEG, 200)
    d.written(SEG)
    d.closed(SEG)
    world.wait(QUIET)
    assert d.check() == [Complete(SEG, FileState(200, world.files[SEG].mtime_ns))]


def test_without_close_events_a_segment_is_complete_once_settled(world):
    d = detector(world, close_events=False)
    world.write(SEG, 100)
    assert d.scanned(REC, world.listing()) == []
    world.wait(SETTLE - 1)
    world.write(SEG, 150)  # still growing: the settle clock restarts when check sees it
    d.written(SEG)  # an event that reports no closes just restarts it too
    world.wait(SETTLE - 0.5)
    assert d.check() == []
    world.wait(0.5)
    assert d.check() == [Complete(SEG, world.files[SEG])]


def test_growth_seen_only_by_stat_restarts_the_settle_clock(world):
    d = detector(world, close_events=False)
    world.write(SEG, 100)
    d.scanned(REC, world.listing())
    for size in (200, 300, 400):  # a network folder: no events at all
        world.wait(SETTLE - 1)
        world.write(SEG, size)
        assert d.check() == ([Writing(SEG, world.files[SEG])] if size == 200 else [])  # seen growing: being written
    world.wait(SETTLE)
    assert d.check() == [Complete(SEG, FileState(400, world.files[SEG].mtime_ns))]


def test_a_segment_already_complete_at_start_is_complete_at_once(world):
    world.write(SEG, 100)
    world.wait(60)
    recent = REC / "seg-002.mp4"
    world.write(recent, 100)
    world.wait(1)
    d = detector(world)
    assert d.scanned(REC, world.listing()) == []
    assert d.check() == [Complete(SEG, world.files[SEG])]
    world.wait(SETTLE - 1)  # the recent one settles from its mtime, not from when we saw it
    assert d.check() == [Complete(recent, world.files[recent])]


def test_a_segment_deleted_while_pending_is_gone(world):
    d = detector(world)
    world.write(SEG, 100)
    d.written(SEG)
    assert d.gone(SEG) == [Gone(SEG, "deleted", was_complete=False)]
    assert d.gone(SEG) == [] and list(d.pending) == []

    # Seen only by stat (the event was missed), and by a listing.
    other = REC / "seg-002.mp4"
    for path in (SEG, other):
        world.write(path, 100)
        d.written(path)
    del world.files[SEG]
    assert d.check() == [Gone(SEG, "deleted", was_complete=False)]
    del world.files[other]
    assert d.scanned(REC, world.listing()) == [Gone(other, "deleted", was_complete=False)]
    world.wait(SETTLE)
    assert d.check() == []


def test_a_complete_segment_that_is_deleted_is_gone(world):
    d = detector(world)
    world.write(SEG, 100)
    d.written(SEG)
    d.closed(SEG)
    world.wait(QUIET)
    assert d.check() == [Complete(SEG, world.files[SEG])]
    del world.files[SEG]
    assert d.scanned(REC, world.listing()) == [Gone(SEG, "deleted", was_complete=True)]
    assert d.gone(SEG) == []


def test_a_segment_rewritten_after_closing_is_complete_again_with_its_new_content(world):
    d = detector(world)
    world.write(SEG, 100)
    d.written(SEG)
    d.closed(SEG)
    world.wait(QUIET / 2)
    world.write(SEG, 200)  # reopened before the quiet time passed: not complete
    d.written(SEG)
    world.wait(QUIET)
    assert d.check() == []
    d.closed(SEG)
    world.wait(QUIET)
    first = d.check()
    assert first == [Complete(SEG, FileState(200, world.files[SEG].mtime_ns))]

    world.wait(10)
    world.write(SEG, 300)  # the recorder writes it again later
    d.written(SEG)
    assert list(d.pending) == [SEG]
    d.closed(SEG)
    world.wait(QUIET)
    assert d.check() == [Complete(SEG, FileState(300, world.files[SEG].mtime_ns))] != first


def test_a_segment_closed_again_without_a_change_is_not_reported_again(world):
    d = detector(world)
    world.write(SEG, 100)
    d.written(SEG)
    d.closed(SEG)
    world.wait(QUIET)
    assert len(d.check()) == 1
    assert d.closed(SEG) == [] and list(d.pending) == []  # opened for writing, not written
    d.written(SEG)  # touched (an attribute event) but the same content
    d.closed(SEG)
    world.wait(SETTLE)
    assert d.check() == [] and list(d.pending) == []
    d.scanned(REC, world.listing())
    world.wait(SETTLE)
    assert d.check() == [], "a rescan brought back a segment already reported"


def test_a_folder_that_vanishes_is_reported_once_and_judged_afresh_when_back(world):
    d = detector(world)
    done, writing = REC / "done.mp4", REC / "writing.mp4"
    elsewhere = Path("/other/seg.mp4")
    for path in (done, writing, elsewhere):
        world.write(path, 100)
        d.written(path)
    d.closed(done)
    d.closed(elsewhere)
    world.wait(QUIET)
    assert {c.path for c in d.check()} == {done, elsewhere}

    changes = d.unavailable(REC, "No such file or directory")
    assert changes[0] == FolderUnavailable(REC, "No such file or directory")
    assert sorted(changes[1:], key=lambda c: c.path) == [
        Gone(done, "its folder disappeared", was_complete=True),
        Gone(writing, "its folder disappeared", was_complete=False),
    ]
    assert d.unavailable(REC, "No such file or directory") == []
    assert list(d.pending) == []

    # Back (remounted): what is there is judged afresh, the same content included.
    world.wait(SETTLE)
    assert d.scanned(REC, world.listing()) == [FolderBack(REC)]
    assert d.check() == [Complete(done, world.files[done]), Complete(writing, world.files[writing])]
    assert d.scanned(REC, world.listing()) == []
    assert d.scanned(Path("/other"), world.listing(Path("/other"))) == [], "another folder's segment was forgotten"


def test_a_segment_that_vanishes_between_event_and_stat_is_ignored(world):
    d = detector(world)
    assert d.written(SEG) == [] and d.closed(SEG) == []
    assert list(d.pending) == [] and d.check() == []


def test_only_a_segment_seen_changing_is_reported_as_being_written(world):
    done, half = REC / "done.mkv", REC / "half.mkv"
    world.write(done, 100)  # complete when the watcher starts, however recent
    world.write(half, 100)  # half written when the watcher starts
    d = detector(world)
    assert d.scanned(REC, world.listing()) == []
    world.wait(0.2)
    world.write(half, 200)
    assert d.check() == [Writing(half, world.files[half])]  # at its next write: in time to follow it from its start
    for size in (300, 400):
        world.wait(1)
        world.write(half, size)
        assert d.written(half) == [] and d.check() == []
    d.closed(half)
    world.wait(SETTLE)
    assert d.check() == [Complete(done, world.files[done]), Complete(half, world.files[half])]  # done: never reported written


def test_a_segment_written_again_after_completing_is_reported_as_being_written_again(world):
    d = detector(world)
    world.write(SEG, 100)
    assert d.written(SEG) == [Writing(SEG, world.files[SEG])]
    d.closed(SEG)
    world.wait(QUIET)
    assert d.check() == [Complete(SEG, world.files[SEG])]
    d.written(SEG)  # an event that leaves it as it was reported complete: not written
    assert d.check() == []
    world.wait(1)
    world.write(SEG, 200)
    assert d.written(SEG) == [Writing(SEG, world.files[SEG])]
    world.wait(1)
    world.write(SEG, 300)
    assert d.scanned(REC, world.listing()) == [] and d.check() == []
