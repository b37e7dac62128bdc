"""What SIGKILLed producers leave behind is reclaimed at the next start: rings and socket files."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import posix_ipc
import pytest
from conftest import BrokerProcess, broker_answers, wait_until

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


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to make a segment this process cannot read")
def test_a_segment_it_may_not_read_is_left_alone_and_the_broker_goes_on(procs, broker_address):
    """Another user's ring under our prefix (owner-only, not ours): the broker's sweep must
    skip it, not die of it. Root without CAP_DAC_OVERRIDE, and a segment of mode 000, stand
    in for the other user."""
    name = config.segment_name("someone-elses")
    foreign = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o000, size=4096)
    foreign.close_fd()
    try:
        broker = subprocess.Popen(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable,
             "-m", "framebus", "broker", "--bind", broker_address],
            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.procs.append(broker)  # stopped and reaped at teardown
        wait_until(lambda: broker_answers(broker_address) or broker.poll() is not None, 10,
                   what="the broker to answer")
        time.sleep(0.5)  # its first sweep has run
        assert broker.poll() is None and broker_answers(broker_address), broker.stderr.read()
        assert os.path.exists("/dev/shm" + name)
    finally:
        posix_ipc.unlink_shared_memory(name)


def test_a_signal_while_a_publisher_says_goodbye_still_removes_its_ring(broker, stream_name):
    """A SIGTERM handler's SystemExit may land anywhere in close(): while the broker is
    told goodbye, say. The ring and the socket file must go all the same."""
    import framebus

    pub = framebus.Publisher(stream_name, shape=(8, 8, 3))
    goodbye = pub._registration.stop

    def interrupted(*args, **kwargs):
        goodbye(*args, **kwargs)
        raise SystemExit(0)  # as _stop_on_signal raises it, in the middle of closing

    pub._registration.stop = interrupted
    with pytest.raises(SystemExit):
        pub.close()
    assert not ring_path(stream_name).exists()
    assert not socket_path(stream_name).exists()
