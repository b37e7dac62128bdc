"""Benchmark: frames to consumers in other processes over loopback TCP, side by side.

Systems, each a producer process and consumer processes on one host, talking over TCP:

  framebus-raw   producer -> ring in /dev/shm -> `framebus relay` -> Subscriber(transport="tcp")
  framebus-jpeg  the same, Subscriber(codec="jpeg", quality=90): the relay encodes, once a frame
  imagezmq       ImageSender / ImageHub in PUB/SUB mode (the sender binds)
  zenoh          eclipse-zenoh: two peers over loopback TCP (the sender listens, scouting off),
                 put() of the frame's bytes with seq and clock in the attachment; the
                 receiver's callback keeps the newest 8 samples (as zenoh's RingChannel(8))
  netgear        vidgear NetGear, pattern=2 (PUB/SUB) in multi-client mode, raw frames (its
                 JPEG compression, on by default when simplejpeg is installed, turned off). Its
                 default, pattern=0 (PAIR), serves one client; multi-client mode needs 1 or 2,
                 and with 1 (REQ/REP) each send() waits for a client's reply.
  local          framebus's local path: a shared-memory subscriber (transport="shm") alone,
                 then while 4 remote framebus-raw consumers read the same stream

and, after the cells (``--no-packets`` skips it), the packet path: a real decoder of a
1080p25 H.264 clip at ~4 Mbit/s, read through the relay as raw pixels, then by
Subscriber(codec="packets"), which decodes the packets itself: bytes/s, frames/s, each
frame's age and the reader's CPU, and a target (packets: <= 1% of raw's bytes/s, every
frame decoded). packets.py.

Every cell (size, system, consumers) starts the producer and its consumers, publishes at 30 fps
until each consumer has a frame, then runs two phases, one after the other:

  paced     100 fps up to 1280x720, 60 fps above: a fast camera. Latency, the slow consumer, and
            the local subscriber's rate are judged here: flat out, on two cores, every extra
            process takes CPU from every other, and a ratio would measure that, not the bus.
  flat out  as fast as the producer can: the most each path delivers (its capacity), and the
            producer's own rate with and without remote readers. ``--flat-fps N`` caps every
            system's producer at N fps instead: what each path carries from a fast producer
            that does not also spin a core (framebus's copies every frame into its ring).

Consumers are "1" (one fast consumer) or "4" (three fast ones and one slow one that sleeps
0.5 s after each frame, so it reads at 2 fps). Latency runs from the producer's clock
(framebus: frame.timestamp_ns, taken at commit; imagezmq: time.time_ns() in the message text;
NetGear: time.time_ns() written into the frame's first pixels, as its PUB/SUB mode drops the
message) to the consumer holding the array (decoded, for JPEG). One host, so one clock.

From the repository root:

    .venv/bin/python -m bench.remote [--seconds 4] [--sizes 640x480,1920x1080]
        [--systems framebus-raw,framebus-jpeg,imagezmq,zenoh,netgear,local] [--markdown]
        [--packets/--no-packets] [--flat-fps N] [--quick]

``--quick`` (about 2 minutes): 2 s phases at 1920x1080 only, every system; the full form
(about 6 minutes) both sizes, 4 s phases.

The pieces: cell.py (the settings, the cell), systems.py (senders and receivers),
children.py (the spawned producer and consumers), run.py (running a cell; the broker, relay
and namespace the main process owns), report.py (figures, tables, targets, notes),
costs.py (the remote path's pieces, each measured alone), packets.py (the packet path)
and __main__.py (the command line).
"""
