"""A low-level client: the framebus protocol by hand, without the Subscriber class.

Shows every step a client takes, for people writing one in another language
(C, C++, Rust, Go: anything with ZeroMQ, msgpack and mmap): ask the broker
where the stream is, subscribe to its descriptors, map its ring read-only,
and read each slot under the stamp check. docs/protocol.md and docs/ring.md
specify the messages and the bytes.

Run (against `framebus demo`)::

    python examples/lowlevel_client.py [STREAM] [--seconds N]

Ctrl-C stops it, as does --seconds N.
"""

import argparse
import time

import zmq

import framebus
from framebus.lowlevel import BrokerClient, Descriptor, RingReader, topic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", nargs="?", default="demo")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    end = time.monotonic() + args.seconds if args.seconds else float("inf")

    # 1. Discovery. A DEALER socket sends [b"", msgpack {"op": "lookup", "id": 1,
    #    "name": ...}] to the broker ($FRAMEBUS_BROKER) and gets back {"ok": true,
    #    "id": 1, "stream": {...}}: where descriptors are published (endpoint), the
    #    ring's shared-memory name (segment) and its 16-byte token.
    broker = BrokerClient()
    info = broker.lookup(args.stream)  # StreamNotFound if no producer registered it
    print(f"{info.name}: descriptors on {info.endpoint}, ring {info.segment}, "
          f"{info.shape} {info.fmt}")

    # 2. Descriptors. One single-frame message per frame on a PUB socket: the topic
    #    (stream name + NUL, so "cam1" does not match "cam10") then a msgpack map.
    #    CONFLATE keeps only the newest unread message: we always get the latest frame.
    prefix = topic(args.stream)
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.CONFLATE, 1)  # before connect
    sock.setsockopt(zmq.SUBSCRIBE, prefix)
    sock.connect(endpoint := info.endpoint)

    # 3. The ring: shm_open(segment, O_RDONLY) and mmap(PROT_READ) of the whole
    #    segment; the header (magic, layout version, geometry, token) is checked.
    ring = RingReader.open(info.segment)

    frames = missed = overwritten = 0
    last_seq, next_report = None, time.monotonic() + 1.0
    try:
        while time.monotonic() < end:
            if not sock.poll(250):
                continue
            message = sock.recv()
            received_ns = time.time_ns()
            # 4. Parse and validate (every field is range-checked: never trust a slot).
            try:
                desc = Descriptor.unpack(message[len(prefix):])
            except framebus.ProtocolError:
                continue

            # 5. A new token means a new ring: the producer restarted or changed
            #    geometry. Ask the broker again and map the new segment (and follow
            #    the endpoint if it moved; ZeroMQ reconnects to an unchanged one).
            if desc.token != ring.token:
                try:
                    info = broker.lookup(args.stream)
                    new_ring = RingReader.open(info.segment)
                except framebus.FramebusError:
                    continue  # not registered or mapped yet: retry on the next descriptor
                ring.close()  # munmap the old ring
                ring, last_seq = new_ring, None
                if info.endpoint != endpoint:
                    sock.disconnect(endpoint)
                    sock.connect(endpoint := info.endpoint)
                if desc.token != ring.token:
                    continue  # that ring is already gone; wait for the next descriptor

            # 6. The descriptor must agree with the ring's own header.
            g = ring.geometry
            if (desc.slot >= ring.slot_count or desc.slot != desc.seq % ring.slot_count
                    or desc.shape != g.shape or desc.dtype != g.dtype.str):
                continue
            if last_seq is not None and desc.seq > last_seq + 1:
                missed += desc.seq - last_seq - 1  # conflated away: we were slower
            last_seq = desc.seq

            # 7. Zero-copy read under the sequence lock: the slot's stamp must be
            #    2*seq+2 before reading (holds), and still after; if it changed, the
            #    writer reused the slot meanwhile and what we read may be torn.
            if not ring.holds(desc.slot, desc.seq):
                overwritten += 1  # lapped before we even started
                continue
            pixels = ring.view(desc.slot)  # numpy view into the mapping, read-only
            brightness = float(pixels.mean())
            if not ring.holds(desc.slot, desc.seq):
                overwritten += 1  # torn: discard the result
                continue
            frames += 1

            # 8. Or take a private copy, which the same check guards (FrameOverwritten).
            if time.monotonic() >= next_report:
                try:
                    snapshot = ring.copy(desc.slot, desc.seq)
                except framebus.FrameOverwritten:
                    snapshot = None
                latency = (received_ns - desc.timestamp_ns) / 1e6  # same-host clocks
                print(f"seq {desc.seq} slot {desc.slot}: {frames} frames, latency "
                      f"{latency:.2f} ms, mean {brightness:.1f}, copy "
                      f"{'ok' if snapshot is not None else 'overwritten'}, "
                      f"missed {missed}, overwritten {overwritten}")
                next_report = time.monotonic() + 1.0
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)
        broker.close()
        ring.close()


if __name__ == "__main__":
    main()
