"""The intake queue: batches by size, markers in order, and the low-water futures producers wait on."""

from __future__ import annotations

from hub.telemetry.intake import Flush, Intake


async def test_drained_to_resolves_once_the_writer_has_taken_enough() -> None:
    """A producer waiting for "at most 4 queued" wakes when a batch takes the queue there, not before."""
    intake: Intake[int] = Intake(maxsize=100)
    for i in range(10):
        assert intake.put_nowait(i)
    at_once, at_four, at_zero = intake.drained_to(10), intake.drained_to(4), intake.drained_to(0)
    assert at_once.done()  # already at or below the level
    got = await intake.next_batch(size=5, age=0, idle=0)
    assert got == ([0, 1, 2, 3, 4], None)
    assert not at_four.done() and len(intake) == 5
    got = await intake.next_batch(size=1, age=0, idle=0)
    assert got == ([5], None) and at_four.done() and not at_zero.done()
    marker = Flush()
    intake.put_marker(marker)
    got = await intake.next_batch(size=100, age=0, idle=0)
    assert got == ([6, 7, 8, 9], marker) and at_zero.done()


async def test_a_spill_of_the_whole_queue_wakes_waiters_and_cancelled_ones_are_dropped() -> None:
    """drain_items (the overflow path) empties the queue; a waiter that gave up is simply forgotten."""
    intake: Intake[int] = Intake(maxsize=3)
    for i in range(3):
        intake.put_nowait(i)
    assert not intake.put_nowait(3)  # full
    gave_up, waiting = intake.drained_to(1), intake.drained_to(1)
    gave_up.cancel()
    assert intake.drain_items() == [0, 1, 2]
    assert waiting.done() and gave_up.cancelled()
