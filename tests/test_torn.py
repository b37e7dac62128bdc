"""A reader racing a writer that laps the ring: never a torn frame, always detected."""

import time

import numpy as np
import pytest
from conftest import wait_until

import framebus
from framebus.testsrc import TestPattern


def test_copy_never_returns_a_torn_frame(procs, broker, stream_name):
    """Frames from a flat-out writer into a 2-slot ring, checked by content.

    Plain reads of the same slots do tear (that is what makes the race real);
    copy() must return only whole frames, raising FrameOverwritten otherwise.
    How many copies win the race depends on the machine's load (CI once won
    2,046 in 60 s against 742,641 overwrites), so the run is bounded by time
    and asks only for enough whole copies to have tested something.
    """
    shape = (96, 128, 3)
    producer = procs.framebus("testsrc", stream_name, "--size", "128x96", "--fps", "0",
                              "--slots", "2")
    pattern = TestPattern(shape)
    copied = overwritten = torn_plain_reads = 0
    # Latest mode: always the newest frame, the one the writer is about to reuse.
    with framebus.Subscriber(stream_name) as sub:
        deadline = time.monotonic() + 30
        while copied < 3000 and time.monotonic() < deadline:
            frame = sub.recv(timeout=10)
            plain = np.array(frame.array)  # no seqlock: may be torn or newer
            if not pattern.matches(plain, frame.seq):
                torn_plain_reads += 1
            try:
                pixels = frame.copy()
            except framebus.FrameOverwritten:
                overwritten += 1
                continue
            assert pattern.matches(pixels, frame.seq), f"copy() returned a wrong frame {frame.seq}"
            copied += 1
    print(f"copied {copied}, overwritten {overwritten}, torn plain reads {torn_plain_reads}")
    assert producer.poll() is None, producer.stderr.read()
    assert copied >= 200, "too few whole copies to have tested copy()"
    assert overwritten + torn_plain_reads > 0, "the writer never raced the reader: no test"


def test_a_held_frame_turns_invalid_when_the_writer_laps_the_ring(procs, broker, stream_name):
    procs.framebus("testsrc", stream_name, "--size", "64x48", "--fps", "200", "--slots", "4")
    with framebus.Subscriber(stream_name) as sub:
        held = sub.recv(timeout=10)
        assert held.valid()
        first = held.copy()
        assert TestPattern(held.shape).matches(first, held.seq)
        wait_until(lambda: sub.recv(timeout=5).seq >= held.seq + 4, 10, what="the ring to wrap")
        assert not held.valid()
        with pytest.raises(framebus.FrameOverwritten):
            held.copy()
        assert not held.array.flags.writeable
