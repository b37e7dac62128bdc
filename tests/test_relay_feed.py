"""The relay's feed of one stream (framebus/remote/feed.py), driven by hand on a real ring:
which frame it offers the relay's loop as fresh."""

import time

import zmq

import framebus
from framebus.remote import feed as feed_module
from framebus.remote.feed import FRESH, Feed
from framebus.testsrc import TestPattern


def test_a_jpeg_is_fresh_once_made_even_when_its_encode_outlasted_newer_frames(
        broker, stream_name, monkeypatch):
    """An encode longer than FRESH (a 1080p JPEG on a slow machine, beside a producer flat
    out) ends with newer frames published meanwhile: the JPEG just made must still be
    offered, or a JPEG reader of a fast producer gets no frame at all."""
    encode = feed_module.encode_jpeg

    def slow_encode(pixels, fmt, quality):  # the real encoder, on a slower machine
        time.sleep(3 * FRESH)
        return encode(pixels, fmt, quality)

    monkeypatch.setattr(feed_module, "encode_jpeg", slow_encode)
    image = TestPattern((120, 160, 3)).frame(0)
    context = zmq.Context()
    try:
        with framebus.Publisher(stream_name, shape=image.shape, fmt="bgr24") as pub, \
                framebus.Subscriber(stream_name, transport="shm") as sub:
            frame, deadline = None, time.monotonic() + 10
            while frame is None and time.monotonic() < deadline:  # until the reader is there
                pub.publish(image)
                time.sleep(0.05)
                frame = sub.try_recv()
            assert frame is not None, "the shm reader got no frame"
            feed = Feed(stream_name, broker.address, context)  # not started: driven here
            feed.settings = frozenset({("jpeg", 90)})
            feed.latest = (frame.token, frame.seq)
            assert feed._keep(frame)
            feed.latest = (frame.token, frame.seq + 1)  # published while it was encoded
            fresh = feed.fresh
            assert fresh is not None and fresh.descriptor.seq == frame.seq
            assert fresh.payloads[("jpeg", 90)][:2] == b"\xff\xd8"  # a JPEG
            time.sleep(FRESH * 2)
            assert feed.fresh is None, "and stale once FRESH has passed with a newer frame"
    finally:
        context.term()
