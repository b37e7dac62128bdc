"""The shared-memory ring on its own: layout, permissions, seqlock, reclaim, full /dev/shm."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

import framebus
from framebus import config
from framebus.shm import Geometry, RingReader, RingWriter, read_header, reclaim

GEOMETRY = Geometry.of((48, 64, 3), "uint8", "bgr24")


@pytest.fixture
def ring_name(request):
    name = config.segment_name(request.node.name[-40:].strip("_[]").replace("[", "-") or "r")
    yield name
    reclaim(name)
    from framebus.shm import segment

    segment.unlink(name)


def test_segment_is_owner_only_and_readers_map_read_only(ring_name):
    writer = RingWriter.create(ring_name, GEOMETRY, slots=4)
    try:
        mode = stat.S_IMODE(os.stat(f"/dev/shm{ring_name}").st_mode)
        assert mode == 0o600
        reader = RingReader.open(ring_name)
        view = reader.view(0)
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0, 0, 0] = 1
        reader.close()
    finally:
        writer.close()
    assert not os.path.exists(f"/dev/shm{ring_name}")


def test_slots_are_aligned_and_header_round_trips(ring_name):
    writer = RingWriter.create(ring_name, Geometry.of((7, 13, 3), "uint8", "bgr24"), slots=5,
                               generation=3)
    try:
        header = read_header(ring_name)
        assert header == writer.header
        assert header.generation == 3 and header.slot_count == 5
        assert header.data_offset % 4096 == 0 and header.slot_stride % 4096 == 0
        reader = RingReader.open(ring_name)
        for slot in range(5):
            assert reader.view(slot).ctypes.data % 64 == 0
        reader.close()
    finally:
        writer.close()


def test_reader_sees_a_frame_only_once_committed_and_until_reused(ring_name):
    writer = RingWriter.create(ring_name, GEOMETRY, slots=2)
    reader = RingReader.open(ring_name)
    try:
        buf = writer.begin(0)
        buf[...] = 7
        assert not reader.holds(0, 0), "a frame being written must not look complete"
        writer.commit(0, pts=0, timestamp_ns=1)
        assert reader.holds(0, 0) and reader.head == 0
        held = reader.view(0)
        assert (reader.copy(0, 0) == 7).all()
        writer.begin(2)[...] = 9  # seq 2 reuses slot 0
        assert not reader.holds(0, 0)
        with pytest.raises(framebus.FrameOverwritten):
            reader.copy(0, 0)
        writer.commit(2, 2, 2)
        assert reader.holds(0, 2) and (held == 9).all()
    finally:
        reader.close()
        writer.close()


def test_a_live_writer_keeps_its_name(ring_name):
    code = textwrap.dedent(f"""
        import sys, time
        from framebus.shm import Geometry, RingWriter
        w = RingWriter.create({ring_name!r}, Geometry.of((4, 4), "uint8", "gray"))
        print("ready", flush=True)
        sys.stdin.read()
        w.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(framebus.StreamInUse):
            RingWriter.create(ring_name, GEOMETRY)
        assert not reclaim(ring_name), "a live writer's ring must not be reclaimed"
        # SIGKILL leaves the segment behind; the next writer reclaims it.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert os.path.exists(f"/dev/shm{ring_name}")
        writer = RingWriter.create(ring_name, GEOMETRY)
        assert writer.header.writer_pid == os.getpid()
        writer.close()
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_reclaim_checks_the_token(ring_name):
    writer = RingWriter.create(ring_name, GEOMETRY)
    try:
        # Our own pid is alive, so only a dead writer's token could ever match.
        assert not reclaim(ring_name, token=b"x" * 16)
        assert os.path.exists(f"/dev/shm{ring_name}")
    finally:
        writer.close()


def test_opening_a_missing_or_foreign_segment_is_a_clear_error(ring_name):
    with pytest.raises(framebus.RingError, match="no shared-memory segment"):
        RingReader.open(ring_name)
    import posix_ipc

    shm = posix_ipc.SharedMemory(ring_name, posix_ipc.O_CREX, mode=0o600, size=8192)
    shm.close_fd()
    with pytest.raises(framebus.RingError, match="bad magic"):
        RingReader.open(ring_name)


def test_bad_geometry_is_refused():
    for shape in [(), (0, 4), (1, 2, 3, 4, 5)]:
        with pytest.raises(ValueError):
            Geometry.of(shape, "uint8", "gray")
    with pytest.raises(ValueError):
        Geometry.of((4, 4), "uint8", "")
    with pytest.raises(ValueError):
        Geometry.of((4, 4), object, "gray")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare to mount a small private /dev/shm")
def test_full_dev_shm_fails_at_creation_with_the_space_needed():
    """A 1 MiB tmpfs as /dev/shm, in a private mount namespace: a 4 MiB ring cannot fit."""
    code = textwrap.dedent("""
        import framebus
        try:
            framebus.Publisher("big", shape=(512, 512, 3), slots=8, broker="tcp://127.0.0.1:9")
        except framebus.ShmFull as exc:
            print("ShmFull:", exc)
        import os
        print("left:", os.listdir("/dev/shm"))
        pub = framebus.Publisher("small", shape=(16, 16, 3), slots=2, broker="tcp://127.0.0.1:9")
        pub.publish(__import__("numpy").zeros((16, 16, 3), "uint8"))
        pub.close()
        print("small ok")
    """)
    script = f"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {sys.executable} -c '{code}'"
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    if "mount" in out.stderr and out.returncode:
        pytest.skip(f"cannot mount a private tmpfs here: {out.stderr.strip()}")
    assert "ShmFull:" in out.stdout, out.stdout + out.stderr
    assert "ShmFull: no room in /dev/shm for" in out.stdout, "the message, not [Errno 28] ..."
    assert "needs 6.0 MiB" in out.stdout and "MiB free" in out.stdout
    assert "left: []" in out.stdout, "a failed creation must not leave a segment"
    assert "small ok" in out.stdout
