"""Raw frames go to remote readers straight from their ring slot (framebus/remote/sending.py):
a writer that laps a small ring flat out reuses slots while they are on their way, and not
one torn or reused slot may reach a remote reader. The relay runs in this process, so
that the test can see that it did send reused slots, and that the check stopped them."""

import threading
import time

from conftest import free_port, wait_until

import framebus
from framebus.remote.relay import Relay
from framebus.testsrc import TestPattern


def test_no_torn_or_reused_slot_reaches_a_remote_reader(procs, broker, stream_name):
    shape = (480, 640, 3)  # 0.9 MB a frame: long enough on its way to be lapped often
    producer = procs.framebus("testsrc", stream_name, "--size", "640x480", "--fps", "0",
                              "--slots", "2")
    relay = Relay([f"tcp://127.0.0.1:{free_port()}"])
    stop = threading.Event()
    serving = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    serving.start()
    pattern = TestPattern(shape)
    good = 0
    seqs: list[int] = []
    try:
        wait_until(lambda: relay._registration.done, 10, what="the relay's first list")
        with framebus.Subscriber(stream_name, transport="tcp") as sub:
            deadline = time.monotonic() + 30
            # Until the race has been lost (torn sends caught) and won (whole ones) enough.
            while time.monotonic() < deadline and (good < 300 or relay.torn < 20):
                frame = sub.recv(timeout=10)
                assert frame.remote and frame.shape == shape
                assert pattern.matches(frame.array, frame.seq), \
                    f"frame {frame.seq} reached the remote reader torn or reused"
                seqs.append(frame.seq)
                good += 1
    finally:
        stop.set()
        serving.join(5)
        relay.close()
    print(f"{good} whole frames, {relay.torn} sends from a reused slot discarded, "
          f"{relay.sent} sent")
    assert producer.poll() is None, producer.stderr.read()
    assert seqs == sorted(set(seqs)), "frames came out of order or twice"
    assert good >= 300, "too few frames to have tested anything"
    assert relay.torn >= 20, "the writer never lapped a slot being sent: no test"
