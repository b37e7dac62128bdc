"""Descriptors that lie (framebus/testing/hostile.py), on a real producer's own socket, never
make a Subscriber return a wrong frame; and the seeded draws those lies come from repeat."""

from __future__ import annotations

import threading
import time

import pytest
import zmq
from conftest import wait_until

import framebus
from framebus.names import topic
from framebus.protocol.descriptor import Descriptor
from framebus.testing import hostile
from framebus.testsrc import TestPattern

SEED = 20251120
FRAMES = 150
LIES = 3  # per frame
T0 = 1_700_000_000_000_000_000


class LyingSocket:
    """Stands in for a Publisher's PUB socket: before each true descriptor, it sends lies
    about that very frame, which the ring holds already (a frame is committed before its
    descriptor goes out), so that only the field a lie changes can give it away; and a
    replay of one of the last true descriptors, whose frame the ring may still hold."""

    def __init__(self, socket: zmq.Socket, facts: hostile.RingFacts) -> None:
        self.socket, self.facts = socket, facts
        self.lying = False
        self.lies: list[bytes] = []
        self._sent: list[bytes] = []

    def send(self, message: bytes) -> None:
        if self.lying:
            d = Descriptor.unpack(message[len(topic(self.facts.stream)):])
            lies = hostile.draw(hostile.lying_descriptors(self.facts.at(d.seq, d.pts,
                                                                        d.timestamp_ns)),
                                LIES, SEED + d.seq)
            lies.append(self._sent[-1 - d.seq % min(3, len(self._sent))])
            for lie in lies:
                self.socket.send(lie)
            self.lies += lies
        self._sent = [*self._sent[-2:], message]
        self.socket.send(message)

    def __getattr__(self, name: str):
        return getattr(self.socket, name)


@pytest.mark.parametrize("mode", ["all", "latest"])
def test_lying_descriptors_never_make_a_subscriber_return_a_wrong_frame(broker, stream_name,
                                                                         mode):
    """A real Publisher publishes the test pattern, with pts = seq and a timestamp known from
    the seq; lies about each frame go out on its own socket just before the truth. Every
    frame the subscriber returns is the truth, in order; each lie it reads is counted, and
    none raises."""
    shape = (24, 32, 3)
    pattern = TestPattern(shape)
    with framebus.Publisher(stream_name, shape=shape, fmt="bgr24", slots=8) as pub, \
            framebus.Subscriber(stream_name, mode=mode) as sub:
        liar = pub._socket = LyingSocket(pub._socket, hostile.RingFacts.of(pub))
        # A reader the writer wakes reads the slot table, not the descriptors: take the
        # wake-up's socket away, as from a producer that offers none (a low-level one, another
        # language's), so that this subscriber reads every descriptor, lies and all.
        assert pub._wake is not None
        pub._wake.path.unlink()

        def publish() -> None:
            pub.publish(pattern.frame(pub.seq), pts=pub.seq, timestamp_ns=T0 + pub.seq)

        # Until the subscriber is connected, a PUB socket sends it nothing.
        frames = [wait_until(lambda: publish() or _recv(sub, 0.05), 10, what="a first frame")]
        liar.lying = True

        def produce() -> None:
            for _ in range(FRAMES):
                publish()
                time.sleep(0.002)

        producer = threading.Thread(target=produce)
        producer.start()
        while (frame := _recv(sub, 0.3)) is not None or producer.is_alive():
            if frame is None:
                continue
            frames.append(frame)
            try:
                pixels = frame.copy()
            except framebus.FrameOverwritten:
                pixels = None  # lapped while we looked: never taken for good
            assert pixels is None or pattern.matches(pixels, frame.seq), frame
            assert (frame.stream, frame.fmt, frame.shape, frame.generation, frame.token) == \
                   (stream_name, "bgr24", shape, 0, pub._ring.token), frame
            assert (frame.pts, frame.timestamp_ns) == (frame.seq, T0 + frame.seq), frame
        producer.join()
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs)), "a frame came twice, or out of order"
    delivered = sum(lie.startswith(topic(stream_name)) for lie in liar.lies)
    assert sub.dropped <= FRAMES + delivered, sub.dropped  # no lie inflates the accounting
    if mode == "all":  # every descriptor is read: every frame returned, each lie counted
        assert len(frames) >= FRAMES, len(frames)
        assert sub.rejected + sub.dropped >= delivered, (sub.rejected, sub.dropped, delivered)
    else:
        assert len(frames) >= 10, len(frames)


def test_draw_gives_the_same_examples_for_the_same_seed():
    strategy = hostile.broker_messages()
    assert hostile.draw(strategy, 50, SEED) == hostile.draw(strategy, 50, SEED)
    assert hostile.draw(strategy, 50, SEED) != hostile.draw(strategy, 50, SEED + 1)
    assert len(hostile.draw(hostile.relay_messages(), 50, SEED)) == 50


def _recv(sub, timeout: float):
    try:
        return sub.recv(timeout=timeout)
    except framebus.Timeout:
        return None
