"""Packet streams with real parts: a real broker process, real POSIX shm, real ZeroMQ, a
writer in another process that laps the ring, a full /dev/shm in a private mount
namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from framebus.discovery import BrokerClient
from framebus.errors import FrameOverwritten, ProtocolError, Timeout
from framebus.packets import CodecInfo, PacketPublisher, PacketSubscriber, where
from framebus.packets.ring import PacketRingReader
from framebus.protocol.packet import PacketDescriptor

CODEC = CodecInfo("h264", b"\x01\x64\x00\x1f", (1, 90000), 1920, 1080)


def payload(seq: int) -> bytes:
    """Packet *seq*'s bytes: its size and content both tell which it is."""
    return bytes([seq % 251]) * (seq * 37 % 3000 + 1)


def test_packets_round_trip_in_order_zero_copy_and_verified(broker, stream_name):
    with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 20) as pub:
        for seq in range(5):
            pub.publish(payload(seq), pts=seq * 3600, dts=seq * 3600, duration=3600,
                        keyframe=seq % 5 == 0)
        with PacketSubscriber(stream_name, preroll=10) as sub:
            assert sub.codec == CODEC
            first = sub.recv(timeout=5)
            assert first.seq == 0 and first.keyframe, "preroll starts at the key frame"
            assert first.data.readonly and bytes(first.data) == payload(0)
            for seq in range(5, 200):
                pub.publish(payload(seq), pts=seq * 3600, dts=seq * 3600 - 1, duration=3600,
                            keyframe=seq % 25 == 0, corrupt=seq == 77)
            got = [first] + [sub.recv(timeout=5) for _ in range(199)]
            assert [p.seq for p in got] == list(range(200))
            assert all(p.bytes() == payload(p.seq) for p in got)
            assert [p.pts for p in got] == [s * 3600 for s in range(200)]
            assert got[77].corrupt and sum(p.corrupt for p in got) == 1
            assert got[100].dts == 100 * 3600 - 1 and got[100].duration == 3600
            assert got[0].time_base.denominator == 90000 and got[0].codec.width == 1920
            assert sub.dropped == 0 and sub.received == 200
            with pytest.raises(Timeout):
                sub.recv(timeout=0.2)


def test_preroll_zero_starts_at_the_next_key_frame(broker, stream_name):
    with PacketPublisher(stream_name, CODEC) as pub:
        for seq in range(10):
            pub.publish(payload(seq), pts=seq, dts=seq, keyframe=seq == 0)
        with PacketSubscriber(stream_name) as sub:
            assert sub.codec is not None
            for seq in range(10, 30):
                pub.publish(payload(seq), pts=seq, dts=seq, keyframe=seq % 8 == 0)
            first = sub.recv(timeout=5)
            assert first.seq == 16 and first.keyframe
            assert sub.dropped == 0


def test_the_broker_tells_packets_from_frames_of_the_same_name(broker, stream_name):
    import framebus

    with framebus.Publisher(stream_name, shape=(8, 8, 3)), \
            PacketPublisher(stream_name, CODEC) as pub:
        with BrokerClient() as client:
            frames = client.lookup(stream_name)
            packets = client.lookup(stream_name, kind="packets")
            assert frames.kind == "frames" and packets.kind == "packets"
            assert packets.segment == where.segment_name(stream_name) != frames.segment
            assert packets.fmt == "h264"
            # A client of old asks for a list without kind: frame streams only.
            listed = client.request("list")["streams"]
            assert [s.get("kind", "frames") for s in listed] == ["frames"]
            assert "kind" not in listed[0], "a frame stream's info stays as old clients read it"
            both = client.request("list", kind="all")["streams"]
            assert sorted(s.get("kind", "frames") for s in both) == ["frames", "packets"]
        pub.publish(b"abc", pts=0, dts=0, keyframe=True)


def test_a_lapping_writer_never_yields_a_torn_or_stale_packet(broker, stream_name, procs):
    """A writer in another process publishes flat out into a 64 KiB ring; every packet the
    subscriber returns and copies is whole, and the laps are counted as dropped."""
    code = textwrap.dedent(f"""
        import time
        from framebus.packets import CodecInfo, PacketPublisher
        from tests.test_packets import payload, CODEC
        with PacketPublisher({stream_name!r}, CODEC, ring_bytes=65536, index=64) as pub:
            print("ready", flush=True)
            end = time.monotonic() + 4
            seq = 0
            while time.monotonic() < end:
                pub.publish(payload(seq), pts=seq, dts=seq, keyframe=seq % 10 == 0)
                seq += 1
            print("published", seq, flush=True)
    """)
    writer = procs.start("-c", code, stderr=subprocess.DEVNULL,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert writer.stdout.readline().strip() == "ready"
    whole = overwritten = 0
    with PacketSubscriber(stream_name, preroll=60) as sub:
        try:
            while True:
                packet = sub.recv(timeout=2)
                view = bytes(packet.data)
                try:
                    data = packet.bytes()
                except FrameOverwritten:
                    overwritten += 1
                    continue
                assert data == payload(packet.seq), f"packet {packet.seq} torn"
                if packet.valid():
                    assert view == data, "a view still valid after it was read is whole"
                whole += 1
        except Timeout:
            pass
    published = int(writer.stdout.readline().split()[1])
    assert whole > 100
    assert sub.dropped > 0, "a 64 KiB ring lapped by a flat-out writer must drop"
    assert whole + overwritten + sub.dropped <= published + 1


def test_a_new_codec_is_a_new_generation_that_readers_follow(broker, stream_name):
    with PacketPublisher(stream_name, CODEC) as pub:
        pub.publish(b"one", pts=0, dts=0, keyframe=True)
        with PacketSubscriber(stream_name, preroll=5) as sub:
            assert sub.recv(timeout=5).generation == 0
            small = CodecInfo("h264", b"\x01\x42", (1, 90000), 640, 360)
            pub.set_codec(small)
            pub.publish(b"two", pts=3600, dts=3600, keyframe=True)
            packet = sub.recv(timeout=5)
            assert (packet.generation, packet.codec, bytes(packet.data)) == (1, small, b"two")
            assert sub.codec == small


def test_a_producer_restart_is_followed(broker, stream_name):
    pub = PacketPublisher(stream_name, CODEC)
    pub.publish(b"before", pts=0, dts=0, keyframe=True)
    with PacketSubscriber(stream_name, preroll=5) as sub:
        assert bytes(sub.recv(timeout=5).data) == b"before"
        pub.close()
        with PacketPublisher(stream_name, CODEC) as again:
            again.publish(b"after", pts=0, dts=0, keyframe=True)
            packet = sub.recv(timeout=5)
            assert bytes(packet.data) == b"after" and packet.token == again._ring.token


def test_descriptors_that_lie_are_rejected(broker, stream_name):
    import zmq

    with PacketPublisher(stream_name, CODEC) as pub:
        pub.publish(b"real", pts=0, dts=0, keyframe=True)
        with PacketSubscriber(stream_name, preroll=5) as sub:
            assert bytes(sub.recv(timeout=5).data) == b"real"
            from tests.conftest import wait_until

            wait_until(lambda: pub.subscribers == 1, 5, what="the subscriber's connection")
            ring = pub._ring
            lies = [PacketDescriptor(stream=stream_name, generation=0, token=ring.token,
                                     seq=99, size=4, keyframe=True, timestamp_ns=1),
                    PacketDescriptor(stream=stream_name, generation=0, token=b"x" * 16,
                                     seq=1, size=4, keyframe=True, timestamp_ns=1)]
            for lie in lies:
                pub._socket.send(pub._topic + lie.pack())
            pub._socket.send(pub._topic + b"\x81\xa1v\x07")
            with pytest.raises(Timeout):
                sub.recv(timeout=0.5)
            assert sub.rejected == 3
    assert zmq  # the lies travel on the producer's own socket, as anyone's could
    with pytest.raises(ProtocolError):
        PacketDescriptor.unpack(b"\x81\xa1v\x01")


def test_a_killed_producers_packet_ring_is_reclaimed(broker, stream_name, procs):
    code = (f"from framebus.packets import *; import os, time\n"
            f"p = PacketPublisher({stream_name!r}, CodecInfo('h264', b'', (1, 90000), 2, 2))\n"
            f"print('up', flush=True); time.sleep(60)")
    proc = procs.start("-c", code, stderr=subprocess.DEVNULL)
    assert proc.stdout.readline().strip() == "up"
    proc.kill()
    proc.wait()
    from tests.conftest import wait_until

    wait_until(lambda: PacketRingReader_missing(stream_name), 10, what="the broker's reclaim")
    with PacketPublisher(stream_name, CODEC):  # and the name is free again
        pass


def PacketRingReader_missing(stream: str) -> bool:  # noqa: N802
    try:
        PacketRingReader.open(where.segment_name(stream)).close()
    except Exception:
        return not where.socket_file(stream).exists()
    return False


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare to mount a small private /dev/shm")
def test_full_dev_shm_at_packet_ring_creation_is_the_clear_error():
    code = textwrap.dedent("""
        import framebus, os
        from framebus.packets import CodecInfo, PacketPublisher
        c = CodecInfo("h264", b"", (1, 90000), 2, 2)
        try:
            PacketPublisher("big", c, ring_bytes=4 << 20, broker="tcp://127.0.0.1:9")
        except framebus.ShmFull as exc:
            print("ShmFull:", exc)
        print("left:", os.listdir("/dev/shm"))
        PacketPublisher("small", c, ring_bytes=65536, broker="tcp://127.0.0.1:9").close()
        print("small ok")
    """)
    script = f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {sys.executable} -c '{code}'"
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    if "mount" in out.stderr and out.returncode:
        pytest.skip(f"cannot mount a private tmpfs here: {out.stderr.strip()}")
    assert "ShmFull: no room in /dev/shm for" in out.stdout, out.stdout + out.stderr
    assert "MiB free" in out.stdout
    assert "left: []" in out.stdout
    assert "small ok" in out.stdout
