"""What SIGKILLed producers leave behind is reclaimed at the next start: rings and socket files."""

import os
import signal
import socket
from pathlib import Path

import posix_ipc

from conftest import BrokerProcess, wait_until
from framebus import config
from framebus.leftovers import reclaim_stale


def ring_path(name: str) -> Path:
    return Path("/dev/shm" + config.segment_name(name))


def socket_path(name: str) -> Path:
    return Path(config.descriptor_endpoint(name)[len("ipc://"):])


def test_a_new_broker_reclaims_what_killed_producers_left(procs, broker, stream_name):
    dead, alive = stream_name + "-dead", stream_name + "-alive"
    producers = {name: procs.framebus("testsrc", name, "--size", "64x48", "--fps", "50")
                 for name in (dead, alive)}
    for name in (dead, alive):
        wait_until(lambda n=name: ring_path(n).exists() and socket_path(n).exists(), 10,
                   what=f"{name}'s ring and socket")
    # Not a ring (no header): someone else's, or a producer half way through starting.
    other = posix_ipc.SharedMemory(config.segment_name(stream_name + "-other"),
                                   posix_ipc.O_CREX, mode=0o600, size=4096)
    other.close_fd()
    try:
        broker.kill()  # nobody is left to notice the death below
        procs.stop(producers[dead], signal.SIGKILL)
        assert ring_path(dead).exists() and socket_path(dead).exists()

        BrokerProcess(procs, broker.address).start()
        wait_until(lambda: not ring_path(dead).exists() and not socket_path(dead).exists(), 5,
                   what="the new broker to reclaim the dead producer's ring and socket")
        assert ring_path(alive).exists() and socket_path(alive).exists()
        assert ring_path(stream_name + "-other").exists()
    finally:
        other.unlink()


def test_socket_files_nobody_listens_on_are_removed():
    stale, listening = socket_path("stale-one"), socket_path("listening-one")
    for path in (stale, listening):
        path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(stale))  # closed without unlink, like a process killed outright
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(listening))
        server.listen()
        try:
            cleaned = reclaim_stale()
            assert "stale-one" in cleaned and not stale.exists()
            assert "listening-one" not in cleaned and listening.exists()
        finally:
            os.unlink(listening)
