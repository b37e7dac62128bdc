"""Packet streams through a relay on one host: a real broker, relay and reader processes over
loopback TCP, the reader told it is on another host (FRAMEBUS_HOST), so that discovery sends
it through the relay as it would a reader on another machine. (Two real hosts, CurveZMQ and a
real decoder: tests/test_two_hosts.py.)"""

import hashlib
import os
import select
import signal
import time
from pathlib import Path

import pytest
from conftest import free_port, result_of, wait_until

import framebus
from framebus.packets import CodecInfo, PacketPublisher, PacketSubscriber
from framebus.testing.media import encode, marker

TESTS = Path(__file__).parent
READER = str(TESTS / "packet_reader.py")
CODEC = CodecInfo("h264", b"\x01\x64\x00\x1f", (1, 90000), 1920, 1080)


def payload(seq: int, size: int = 0) -> bytes:
    """Packet *seq*'s bytes: their content tells which packet they are."""
    return (seq.to_bytes(8, "little") * ((size or seq * 37 % 3000 + 8) // 8 + 1))[
        :size or seq * 37 % 3000 + 8]


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def start_relay(procs, endpoint, *args):
    proc = procs.framebus("relay", "--bind", endpoint, *args)

    def registered():
        with framebus.BrokerClient() as client:
            return any(r["endpoint"] == endpoint and r["alive"] for r in client.relays())

    wait_until(registered, 10, what="the relay to register")
    return proc


@pytest.fixture
def relay(procs, broker):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    start_relay(procs, endpoint)
    return endpoint


def remote_reader(procs, name, *args):
    """A packet reader process that believes it is on another host."""
    return procs.start(READER, name, *args, env={**os.environ, "FRAMEBUS_HOST": "elsewhere"})


def publish(pub, seqs, size=0, gop=25, pause=0.0):
    for seq in seqs:
        pub.publish(payload(seq, size), pts=seq * 3600, dts=seq * 3600, duration=3600,
                    keyframe=seq % gop == 0)
        if pause:
            time.sleep(pause)


def test_a_remote_reader_gets_every_packet_as_a_local_one_does(procs, relay, stream_name):
    with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 22) as pub:
        publish(pub, range(30))
        reader = remote_reader(procs, stream_name, "--packets", "400", "--preroll", "60")
        with PacketSubscriber(stream_name, preroll=60) as local:
            assert local.codec == CODEC
            time.sleep(1.0)  # the remote reader starts meanwhile: preroll finds the history
            publish(pub, range(30, 400), pause=0.001)
            mine = [local.recv(timeout=5) for _ in range(400)]
        r = result_of(reader)
    assert r["remote"] and r["codec"] == ["h264", 1920, CODEC.extradata.hex()]
    got = r["packets"]
    assert [p[1] for p in got] == list(range(400)), "every packet, in order, from preroll"
    assert [p[5] for p in got] == [digest(p.bytes()) for p in mine], "bit-identical"
    assert [p[4] for p in got] == [s * 3600 for s in range(400)]
    assert [p[2] for p in got] == [s % 25 == 0 for s in range(400)]
    assert r["dropped"] == 0 and r["rejected"] == 0


def test_a_too_slow_remote_recorder_is_told_of_its_gap_and_never_gets_a_torn_packet(
        procs, relay, stream_name):
    """A reader that stalls while 3000 packets of 20 kB go by (60 MB: beyond the relay's
    buffer) skips what fell out of it; every packet it does get is whole, and the gaps in
    its sequence are exactly the skips it was told of."""
    with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 24) as pub:
        publish(pub, range(25), size=20_000)
        reader = remote_reader(procs, stream_name, "--seconds", "6", "--preroll", "60",
                               "--stall", "3")
        time.sleep(1.5)
        publish(pub, range(25, 3000), size=20_000, pause=0.0003)
        r = result_of(reader, timeout=40)
    got = r["packets"]
    seqs = [p[1] for p in got]
    assert seqs[0] == 0 and seqs[-1] == 2999 and seqs == sorted(set(seqs))
    assert all(p[5] == digest(payload(p[1], 20_000)) for p in got), "no torn packet"
    told = [p[3] for p in got]
    assert told == [0] + [b - a - 1 for a, b in zip(seqs, seqs[1:])], "each gap told"
    assert r["dropped"] == sum(told) > 0 and len(got) + r["dropped"] == 3000


def test_a_remote_reader_follows_a_restarted_producer(procs, relay, stream_name):
    reader = remote_reader(procs, stream_name, "--seconds", "4.5", "--preroll", "60")
    tokens = []
    for _ in range(2):
        with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 22) as pub:
            tokens.append(pub._ring.token.hex())
            time.sleep(1.0)  # registered, found by the relay's feed
            publish(pub, range(100), pause=0.01)
    r = result_of(reader)
    got = r["packets"]
    by_ring = [[p for p in got if p[0] == token] for token in tokens]
    assert [p[0] for p in got] == [tokens[0]] * len(by_ring[0]) + [tokens[1]] * len(by_ring[1])
    assert by_ring[1][0][1] % 25 == 0 and by_ring[1][0][2], "the new ring from a key frame"
    assert [p[1] for p in by_ring[1]] == list(range(by_ring[1][0][1], 100))
    assert [p[1] for p in by_ring[0]] == list(range(by_ring[0][0][1], 100))
    assert all(p[5] == digest(payload(p[1])) for p in got)


def test_the_relays_packet_buffer_is_as_large_as_it_is_told(procs, broker, stream_name):
    """`framebus relay --packet-buffer 64`: a reader that stalls while 400 packets go by
    gets the 64 newest after its stall, told of the exact gap before them."""
    start_relay(procs, f"tcp://127.0.0.1:{free_port()}", "--packet-buffer", "64")
    with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 22) as pub:
        publish(pub, range(25))
        reader = remote_reader(procs, stream_name, "--seconds", "7", "--preroll", "60",
                               "--stall", "2.5", "--ready")
        assert reader.stdout.readline().strip() == "ready"  # its stall begins: 400 go by
        publish(pub, range(25, 425), pause=0.002)
        r = result_of(reader, timeout=30)
    seqs = [p[1] for p in r["packets"]]
    assert seqs[0] == 0 and seqs[-1] == 424 and seqs == sorted(set(seqs)), seqs
    after_stall = [s for s in seqs if s > 60]
    assert len(after_stall) <= 64 + 4, after_stall  # the buffer, and a batch in flight
    gaps = [b - a - 1 for a, b in zip(seqs, seqs[1:]) if b > a + 1]
    assert sum(gaps) == r["dropped"] > 300, (gaps, r["dropped"])


def test_a_remote_reader_carries_on_without_a_gap_across_a_relay_restart(procs, relay,
                                                                        stream_name):
    """The relay SIGKILLed and started again on its address: the reader's next request says
    where it is, the new relay's feed holds the ring's history, and not a packet is lost."""
    with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 22) as pub:
        reader = remote_reader(procs, stream_name, "--packets", "400", "--ready",
                               "--preroll", "60")
        publish(pub, range(0, 50), pause=0.01)
        assert reader.stdout.readline().strip() == "ready"
        first_relay = next(p for p in procs.procs if "relay" in p.args)
        procs.stop(first_relay, signal.SIGKILL)
        publish(pub, range(50, 150), pause=0.01)  # while no relay runs
        start_relay(procs, relay)
        publish(pub, range(150, 400), pause=0.005)
        r = result_of(reader)
    seqs = [p[1] for p in r["packets"]]
    assert seqs == list(range(seqs[0], seqs[0] + 400)) and r["dropped"] == 0
    assert all(p[5] == digest(payload(p[1])) for p in r["packets"])


def test_a_remote_reader_follows_its_relay_to_a_new_address_without_a_gap(procs, relay,
                                                                          stream_name):
    """The relay SIGKILLed and started on another port: the reader, finding its relay
    quiet, asks the broker where it went, and carries on there without losing a packet;
    its fileno() stays the one it gave at the start, and tells of packets from the new one."""
    with PacketPublisher(stream_name, CODEC, ring_bytes=1 << 22) as pub:
        reader = remote_reader(procs, stream_name, "--packets", "300", "--ready",
                               "--preroll", "60", "--fileno")
        publish(pub, range(0, 50), pause=0.01)
        assert reader.stdout.readline().strip() == "ready"
        first_relay = next(p for p in procs.procs if "relay" in p.args)
        procs.stop(first_relay, signal.SIGKILL)
        publish(pub, range(50, 100), pause=0.01)  # while no relay runs
        start_relay(procs, f"tcp://127.0.0.1:{free_port()}")
        publish(pub, range(100, 300), pause=0.01)
        r = result_of(reader)
    seqs = [p[1] for p in r["packets"]]
    assert seqs == list(range(seqs[0], seqs[0] + 300)) and r["dropped"] == 0
    assert all(p[5] == digest(payload(p[1])) for p in r["packets"])
    assert r["fileno_kept"], r


def test_a_remote_subscriber_decodes_packets_itself_behind_the_frame_api(
        procs, relay, stream_name, tmp_path, monkeypatch):
    clip = encode(tmp_path / "clip.mp4", 75, 320, 240)
    procs.framebus("decode", str(clip), "--name", stream_name, "--loop")
    with framebus.Subscriber(stream_name) as local:
        mine = local.recv(timeout=10)
        assert local.path == "shm"
    monkeypatch.setenv("FRAMEBUS_HOST", "elsewhere")
    with framebus.Subscriber(stream_name, codec="packets") as sub:
        frames = [sub.recv(timeout=10) for _ in range(40)]
        assert sub.path == "tcp"
        woken = None  # Contract A: its fileno() wakes a selector for the next decoded picture
        deadline = time.monotonic() + 5
        while woken is None and time.monotonic() < deadline:
            select.select([sub.fileno()], [], [], sub.housekeeping)
            woken = sub.try_recv()
        assert woken is not None and woken.seq > frames[-1].seq
    assert all(f.shape == mine.shape and f.desc.fmt == mine.desc.fmt for f in frames)
    indices = [marker(f.array) for f in frames]
    assert indices[0] % 25 == 0, "decoding starts at a key frame"
    steps = [(b - a) % 75 for a, b in zip(indices, indices[1:])]
    assert all(step >= 1 for step in steps) and sum(steps) < 60, "fresh pictures, in order"
    assert all(f.seq > 0 and f.timestamp_ns > 0 for f in frames)


def test_a_decoding_subscriber_in_mode_all_holds_pictures_in_order_and_counts_the_rest(
        procs, relay, stream_name, tmp_path, monkeypatch):
    """mode="all": a caller that stops for a second finds ALL_HELD pictures there at once, in
    order (consecutive packets), and the ones let go meanwhile counted, never hidden."""
    from framebus.paths.decoded import ALL_HELD

    clip = encode(tmp_path / "clip.mp4", 75, 320, 240)
    procs.framebus("decode", str(clip), "--name", stream_name, "--loop")
    monkeypatch.setenv("FRAMEBUS_HOST", "elsewhere")
    with framebus.Subscriber(stream_name, codec="packets", mode="all") as sub:
        first = sub.recv(timeout=10)
        time.sleep(1.0)  # 25 pictures decoded meanwhile: the newest ALL_HELD are kept
        held = [sub.try_recv() for _ in range(ALL_HELD)]  # all there: none waited for
        assert None not in held, held
        after = sub.recv(timeout=5)
        dropped = sub.dropped
    seqs = [f.seq for f in held]
    assert seqs == list(range(seqs[0], seqs[0] + ALL_HELD)), seqs
    assert held[0].skipped == seqs[0] - first.seq - 1 > 0, (first.seq, seqs)
    assert after.seq > seqs[-1] and dropped >= seqs[0] - first.seq - 1
    indices = [marker(f.array) for f in held]
    assert [(b - a) % 75 for a, b in zip(indices, indices[1:])] == [1] * (ALL_HELD - 1)


def test_framebus_record_on_another_host_records_the_packets_through_the_relay(
        procs, relay, stream_name, tmp_path):
    """The recorder's own CLI, told it is elsewhere: its file holds the source's own packets."""
    import av

    clip = encode(tmp_path / "clip.mp4", 50, 160, 120)
    with av.open(str(clip)) as container:
        source = {bytes(p) for p in container.demux(video=0) if p.size}
    procs.framebus("decode", str(clip), "--name", stream_name, "--loop")
    out = tmp_path / "remote.mp4"
    recorder = procs.framebus("record", stream_name, str(out), "--mode", "packets",
                              "--duration", "2", env={**os.environ, "FRAMEBUS_HOST": "elsewhere"})
    _, err = recorder.communicate(timeout=30)
    assert recorder.returncode == 0, err
    with av.open(str(out)) as container:
        recorded = [bytes(p) for p in container.demux(video=0) if p.size]
    assert len(recorded) >= 10 and all(p in source for p in recorded), "the source's packets"



def test_a_stream_without_packets_is_refused_with_the_reason(procs, relay, stream_name,
                                                            caplog):
    """A Publisher's stream has pixels only: a reader that wants its packets is told why it
    gets nothing, and the relay starts no feed for a name the broker does not know."""
    procs.framebus("testsrc", stream_name, "--size", "64x48", "--fps", "50")
    with framebus.Subscriber(stream_name) as local:
        local.recv(timeout=10)
    with framebus.Subscriber(stream_name, transport="tcp", codec="packets") as sub, \
            pytest.raises(framebus.Timeout):
        sub.recv(timeout=2)
    assert f"no packet stream named {stream_name!r}" in caplog.text
    assert "not_found" in caplog.text
