"""ZeroMQ contexts as pyzmq's own objects treat them: one given is shared and left to its
owner; one made by framebus is framebus's to end."""

import numpy as np
import zmq
from conftest import wait_until

import framebus


def _deliver(pub, sub, value: int) -> bool:
    pub.publish(np.full((8, 8, 3), value, np.uint8))
    try:
        return int(sub.recv(timeout=0.1).array[0, 0, 0]) == value
    except framebus.Timeout:
        return False


def test_a_publisher_and_a_subscriber_share_the_callers_context_and_leave_it_open(
        broker, stream_name):
    context = zmq.Context()
    try:
        with framebus.Publisher(stream_name, shape=(8, 8, 3), context=context) as pub, \
                framebus.Subscriber(stream_name, context=context) as sub:
            wait_until(lambda: _deliver(pub, sub, 7), 5, what="a frame over the shared context")
        assert not context.closed
        probe = context.socket(zmq.PAIR)  # still usable: nothing of framebus's is left in it
        probe.close()
    finally:
        context.term()  # returns at once: framebus closed every socket it opened in it


def test_contexts_framebus_makes_are_its_own_to_end(broker, stream_name):
    with framebus.Publisher(stream_name, shape=(8, 8, 3)) as pub, \
            framebus.Subscriber(stream_name) as sub:
        wait_until(lambda: _deliver(pub, sub, 3), 5, what="a frame")
        contexts = [pub._context, sub._context]
        assert contexts[0] is not contexts[1]
    assert all(c.closed for c in contexts)
