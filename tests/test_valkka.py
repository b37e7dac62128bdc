"""framebus.compat.valkka: Valkka's shared-memory client against live `framebus decode` rings.

Every server is a real `framebus decode testsrc ... --format rgb24` process. The test
pattern went in as bgr24 frame n (pixel (y, x, c) = x + 2y + 85c + n), so an rgb24 picture
says which frame it is (its blue channel at (0, 0) is n mod 256) and can be checked
exactly against framebus.testsrc.TestPattern.
"""

from __future__ import annotations

import re
import select
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until

import framebus
from framebus.compat.valkka import (
    EventFd,
    GeometryMismatch,
    SharedMemRingBufferRGB,
    ShmemRGBClient,
    getNumpyShmem,
)
from framebus.testsrc import TestPattern

W, H = 160, 120
SIZE = W * H * 3
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def serve(procs, tmp_path, name, size=f"{W}x{H}", fps="20", fmt="rgb24", *extra):
    """Valkka's server side, played by framebus decode; its log goes to a file, not a pipe
    that could fill and stall it."""
    with open(tmp_path / f"{name}.log", "w") as log:  # the process keeps its own copy
        return procs.framebus("decode", "testsrc", "--name", name, "--size", size,
                              "--format", fmt, "--fps", fps, *extra,
                              stdout=subprocess.DEVNULL, stderr=log)


def registered(name):
    return any(s.name == name for s in framebus.streams())


def frame_number(picture: np.ndarray) -> int:
    """Which test-pattern frame (mod 256) an rgb24 picture is, checking every pixel."""
    n = int(picture[0, 0, 2])
    expected = TestPattern(picture.shape).frame(n)[..., ::-1]  # bgr24 in, rgb24 out
    assert np.array_equal(picture, expected), f"picture is not test-pattern frame {n}"
    return n


def picture(client: ShmemRGBClient, index: int, meta) -> np.ndarray:
    """What a Valkka program does with a pulled frame."""
    return client.shmem_list[index][:meta.size].reshape((meta.height, meta.width, 3))


@pytest.fixture
def clients():
    """Clients and EventFds made by a test, closed even when it fails."""
    made: list = []
    yield made
    for thing in reversed(made):
        thing.close()


def test_level2_cells_cycle_hold_their_frames_and_are_read_only(procs, broker, stream_name,
                                                                 tmp_path, clients):
    serve(procs, tmp_path, stream_name, fps="25")
    client = ShmemRGBClient(name=stream_name, n_ringbuffer=4, width=W, height=H,
                            mstimeout=10000, verbose=True)
    clients.append(client)
    assert len(client.shmem_list) == 4
    assert all(a.dtype == np.uint8 and a.shape == (SIZE,) for a in client.shmem_list)
    held: dict[int, int] = {}  # cell -> frame number pulled into it
    indexes, numbers = [], []
    for _ in range(12):
        index, meta = client.pullFrame()
        assert index is not None, "timed out with the server running"
        assert (meta.size, meta.width, meta.height, meta.slot) == (SIZE, W, H, 0)
        assert abs(meta.mstimestamp - time.time() * 1000) < 2000
        held[index] = frame_number(picture(client, index, meta))
        indexes.append(index)
        numbers.append(held[index])
    assert indexes == [i % 4 for i in range(12)], "the client's own index, cycling"
    steps = [(b - a) % 256 for a, b in zip(numbers, numbers[1:])]
    assert all(0 < s < 5 for s in steps), f"frames in order: {numbers}"
    # Far longer than the 8-slot ring takes to lap (0.32 s): every cell keeps its frame
    # until the client's own index comes back to it.
    time.sleep(1.0)
    for index, n in held.items():
        assert frame_number(client.shmem_list[index].reshape(H, W, 3)) == n
    for array in (client.shmem_list[0], client.shmem_list[1].reshape(H, W, 3)):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    assert client.pull()[1] == SIZE


def test_level1_calls(procs, broker, stream_name, tmp_path, clients):
    serve(procs, tmp_path, stream_name)
    shmem = SharedMemRingBufferRGB(stream_name, 3, W, H, 10000, False)
    clients.append(shmem)
    cells = shmem.getBufferListPy()
    assert len(cells) == 3 and all(getNumpyShmem(shmem, i) is cells[i] for i in range(3))
    for expected_index in (0, 1, 2, 0):
        index, size, width, height, slot, mstimestamp = shmem.clientPullPy()
        assert (index, size, width, height, slot) == (expected_index, SIZE, W, H, 0)
        frame_number(getNumpyShmem(shmem, index)[:size].reshape(height, width, 3))
    with pytest.raises(ValueError, match="read-only"):
        cells[2][:] = 0


def test_lesson_4_server_command_at_480x270_and_1_fps(procs, broker, stream_name, tmp_path,
                                                      clients):
    serve(procs, tmp_path, stream_name, size="480x270", fps="1")
    client = ShmemRGBClient(name=stream_name, n_ringbuffer=10, width=480, height=270,
                            mstimeout=5000)
    clients.append(client)
    pulled = [client.pullFrame() for _ in range(3)]
    numbers = [frame_number(picture(client, i, m)) for i, m in pulled]
    stamps = [m.mstimestamp for _, m in pulled]
    assert [i for i, _ in pulled] == [0, 1, 2] and numbers == sorted(numbers)
    assert all(800 < b - a < 1200 for a, b in zip(stamps, stamps[1:])), stamps


def test_timeouts_and_a_client_started_before_its_server(procs, broker, stream_name, tmp_path,
                                                         clients):
    client = ShmemRGBClient(name=stream_name, width=W, height=H, mstimeout=300)
    level1 = SharedMemRingBufferRGB(stream_name, 2, W, H, 300)
    forever = ShmemRGBClient(name=stream_name, width=W, height=H)  # mstimeout=0: no timeout
    clients.extend([client, level1, forever])
    started = time.monotonic()
    assert client.pullFrame() == (None, None)
    assert 0.25 < time.monotonic() - started < 1.5
    assert level1.clientPullPy() == (-1, 0, 0, 0, 0, 0)

    got: list = []
    waiter = threading.Thread(target=lambda: got.append(forever.pullFrame()), daemon=True)
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and not got, "mstimeout=0 must wait, not time out"
    server = serve(procs, tmp_path, stream_name)
    waiter.join(20)
    index, meta = got[0]
    assert index == 0
    frame_number(picture(forever, index, meta))

    procs.stop(server)
    deadline = time.monotonic() + 10
    while client.pullFrame() != (None, None):  # what was in flight, then the timeout
        assert time.monotonic() < deadline


def test_a_slow_reader_never_gets_a_torn_or_overwritten_frame(procs, broker, stream_name,
                                                             tmp_path, clients, monkeypatch):
    # A 2-slot ring at 100 fps is lapped every 20 ms: most frames waiting for this reader
    # (in the queue its EventFd's thread fills) are overwritten before it comes to them.
    serve(procs, tmp_path, stream_name, f"{W}x{H}", "100", "rgb24", "--slots", "2")
    taken = []  # the framebus frames the client takes, to know which one a pull returned
    next_frame = SharedMemRingBufferRGB._next_frame
    monkeypatch.setattr(SharedMemRingBufferRGB, "_next_frame",
                        lambda self, timeout: taken.append(next_frame(self, timeout))
                        or taken[-1])
    client, event = ShmemRGBClient(name=stream_name, width=W, height=H), EventFd()
    clients.extend([event, client])
    client.useEventFd(event)
    for _ in range(30):
        assert select.select([event], [], [], 10)[0], "no frame"
        index, meta = client.pullFrame()
        # Exactly the whole frame the pull said it was (the test pattern's n is its pts),
        # not the newer one that overwrote it in the ring.
        assert frame_number(picture(client, index, meta)) == taken[-1].pts % 256
        time.sleep(0.03)
    core = client.core
    assert core.overwritten + core.subscriber.dropped > 20, "the reader was never lapped"


def test_any_number_of_clients_read_one_stream(procs, broker, stream_name, tmp_path, clients):
    serve(procs, tmp_path, stream_name)
    a, b = (ShmemRGBClient(name=stream_name, width=W, height=H, mstimeout=10000)
            for _ in range(2))
    clients.extend([a, b])
    seen = [[frame_number(picture(c, *c.pullFrame())) for _ in range(5)] for c in (a, b)]
    assert all(len(set(s)) == 5 for s in seen), seen  # neither steals the other's frames


def test_select_over_two_clients_with_event_fds(procs, broker, stream_name, tmp_path, clients):
    names = [stream_name + "1", stream_name + "2"]
    # Rings deep enough that no frame left waiting below is overwritten before it is pulled.
    servers = [serve(procs, tmp_path, name, f"{W}x{H}", fps, "rgb24", "--slots", "64")
               for name, fps in zip(names, ("20", "5"))]
    client_by_fd = {}
    for name in names:
        # Room for every frame that waits below, so none is dropped and all can be counted.
        client = ShmemRGBClient(name=name, n_ringbuffer=50, width=W, height=H)
        event = EventFd()
        clients.extend([event, client])
        event.set()
        event.clear()  # as Valkka's EventGroup.reserve() does; harmless here
        client.useEventFd(event)
        client_by_fd[event.getFd()] = client
    fast_fd = next(iter(client_by_fd))
    wait_until(lambda: all(registered(n) for n in names), 10, what="both streams")
    pulled = {name: 0 for name in names}
    last: dict[str, int] = {}

    def pull(client):
        started = time.monotonic()
        index, meta = client.pullFrame()  # mstimeout=0: this would hang if the fd lied
        assert time.monotonic() - started < 0.2 and index is not None
        n = frame_number(picture(client, index, meta))
        assert client.name not in last or 0 < (n - last[client.name]) % 256 < 4
        last[client.name] = n
        pulled[client.name] += 1

    end = time.monotonic() + 4
    while time.monotonic() < end:
        readable, _, _ = select.select(list(client_by_fd), [], [], 1.0)
        for fd in readable:
            pull(client_by_fd[fd])
    assert 50 < pulled[names[0]] < 110 and 12 < pulled[names[1]] < 30, pulled

    # Level-triggered: frames left waiting keep the fd readable until the last is pulled.
    time.sleep(0.5)
    for server in servers:
        procs.stop(server)
    time.sleep(0.3)
    assert select.select([fast_fd], [], [], 0)[0], "frames waited while the servers stopped"
    pull(client_by_fd[fast_fd])
    assert select.select([fast_fd], [], [], 0)[0], "readable while frames wait"
    for fd, client in client_by_fd.items():
        while select.select([fd], [], [], 0)[0]:
            pull(client)
        core = client.core
        assert pulled[client.name] + core.overwritten == core.subscriber.received, \
            "a frame was left waiting with its fd not readable"
    # Drained, and no server: nothing is readable, and nothing becomes so.
    assert select.select(list(client_by_fd), [], [], 1.0)[0] == []


def test_refused_as_valkka_refuses(broker, stream_name):
    with pytest.raises(AttributeError, match="Unknown parameter n_cells"):
        ShmemRGBClient(name=stream_name, n_cells=10, width=W, height=H)
    with pytest.raises(AttributeError, match="Missing a mandatory parameter height"):
        ShmemRGBClient(name=stream_name, width=W)
    with pytest.raises(AttributeError, match="Wrong type of parameter width"):
        ShmemRGBClient(name=stream_name, width=np.int64(W), height=H)
    with pytest.raises(NotImplementedError, match="framebus decode"):
        SharedMemRingBufferRGB(stream_name, 10, W, H, 0, True)
    with pytest.raises(framebus.InvalidName):
        ShmemRGBClient(name="no/slashes", width=W, height=H)


def test_one_event_fd_serves_one_client(broker, stream_name, clients):
    a, b = (ShmemRGBClient(name=stream_name + s, width=W, height=H) for s in "ab")
    event = EventFd()
    clients.extend([event, a, b])
    a.useEventFd(event)
    with pytest.raises(ValueError, match="one EventFd per client"):
        b.useEventFd(event)


@pytest.mark.parametrize("size, fmt", [("80x60", "rgb24"), (f"{W}x{H}", "bgr24")])
def test_geometry_mismatch_is_an_error(procs, broker, stream_name, tmp_path, clients, size,
                                       fmt):
    early = ShmemRGBClient(name=stream_name, width=W, height=H, mstimeout=10000)
    clients.append(early)
    serve(procs, tmp_path, stream_name, size=size, fmt=fmt)
    with pytest.raises(GeometryMismatch, match=f"carries {fmt} frames of {size}"):
        early.pullFrame()  # built before the server: the first frame tells
    wait_until(lambda: registered(stream_name), 10, what="the stream to register")
    with pytest.raises(GeometryMismatch, match=f"rgb24 {W}x{H}"):
        ShmemRGBClient(name=stream_name, width=W, height=H)  # the broker tells at once


def test_the_example_reads_two_streams(procs, broker, stream_name, tmp_path):
    names = [stream_name + "1", stream_name + "2"]
    for name in names:
        serve(procs, tmp_path, name, fps="5")
    wait_until(lambda: all(registered(n) for n in names), 10, what="both streams")
    example = procs.start(str(EXAMPLES / "valkka_client.py"), *names, "--size", f"{W}x{H}",
                          "--seconds", "3")
    out, err = example.communicate(timeout=30)
    assert example.returncode == 0, err
    for name in names:
        cells = [int(c) for c in re.findall(rf"^{name}: cell (\d+), {W}x{H}", out, re.M)]
        assert 8 <= len(cells) <= 20 and cells == [i % 10 for i in range(len(cells))], out
