"""`framebus up`: a real supervisor process running a real broker, relay and decoders; a
killed child is brought back, a Ctrl-C or SIGTERM stops the site in order, and a site serves
other hosts with its keys."""

import itertools
import os
import signal
import socket
import threading
import time

import pytest
from conftest import broker_answers, free_port, leftover_segments, wait_until
from up_helpers import alive, child_pid, is_the_pattern, make_keys, relay_at, write_site

import framebus
from framebus.shm.segment import pid_alive
from framebus.testing import media


class Watch(threading.Thread):
    """Receives a stream in the background and records the longest silence, when each
    frame arrived, and (with *check*) how many were not the test pattern's."""

    def __init__(self, name, transport="auto", check=False):
        super().__init__(daemon=True)
        self.name, self.transport, self.check, self.stop = name, transport, check, threading.Event()
        self.frames, self.longest_gap, self.error = 0, 0.0, None
        self.arrivals: list[float] = []  # monotonic time of every frame
        self.wrong, self.paths = 0, set()

    def run(self):
        try:
            with framebus.Subscriber(self.name, transport=self.transport) as sub:
                self._got(sub.recv(timeout=15), sub)
                last = time.monotonic()
                while not self.stop.is_set():
                    try:
                        frame = sub.recv(timeout=0.2)
                    except framebus.Timeout:
                        pass
                    else:
                        self._got(frame, sub)
                        last = time.monotonic()
                    self.longest_gap = max(self.longest_gap, time.monotonic() - last)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def _got(self, frame, sub):
        self.arrivals.append(time.monotonic())
        self.frames += 1
        self.paths.add(sub.path)
        if self.check and not is_the_pattern(frame):
            self.wrong += 1

    def first_after(self, moment):
        return next((t for t in self.arrivals if t > moment), None)

    def longest_gap_between(self, start, end):
        times = [start] + [t for t in self.arrivals if start < t < end] + [end]
        return max(b - a for a, b in itertools.pairwise(times))

    def silence_ended(self, start, end):
        """When the longest silence between *start* and *end* ended: the frame that ended it."""
        times = [start] + [t for t in self.arrivals if start < t <= end]
        return max(itertools.pairwise(times), key=lambda gap: gap[1] - gap[0])[1]



def listening(endpoint) -> bool:
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def test_up_restarts_a_killed_decoder_and_the_other_stream_never_stops(
        procs, broker_address, stream_name, tmp_path):
    video = media.encode(tmp_path / "clip.mp4", 50, fps=25)
    a, b = stream_name + "a", stream_name + "b"
    site = tmp_path / "site.toml"
    write_site(site, {a: {"source": "testsrc", "size": "64x48", "fps": 50},
                      b: {"source": str(video), "loop": True}})
    up = procs.framebus("up", str(site))
    first = wait_until(alive(a), 20, what=f"{a} to run")
    wait_until(alive(b), 10, what=f"{b} to run")
    watch_a, watch_b = Watch(a), Watch(b)
    watch_a.start(), watch_b.start()
    try:
        wait_until(lambda: watch_a.frames > 10 and watch_b.frames > 10, 15,
                   what="both streams to reach their subscribers")
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        again = wait_until(lambda: (i := alive(a)()) and i.pid != first.pid and i, 10,
                           what=f"{a} to come back")
        frames_then = watch_a.frames
        wait_until(lambda: watch_a.frames > frames_then + 10, 10,
                   what="the same subscriber to get frames of the restarted decoder")
        assert time.monotonic() - killed < 5
        assert again.pid != first.pid
    finally:
        watch_a.stop.set(), watch_b.stop.set()
        watch_a.join(), watch_b.join()
    assert watch_a.error is None and watch_b.error is None
    assert watch_b.longest_gap < 0.5, "the other stream never stopped"
    assert up.poll() is None
    procs.stop(up, signal.SIGTERM)
    _, err = up.communicate()
    assert "died (killed by SIGKILL)" in err and "everything stopped" in err
    assert not leftover_segments()
    assert not broker_answers(broker_address), "the broker up started is stopped too"


def test_ctrl_c_to_ups_process_group_stops_the_site_and_leaves_nothing(
        procs, broker_address, stream_name, tmp_path):
    """As a terminal's Ctrl-C does: SIGINT to up's whole process group. Its children run in
    groups of their own, so up alone gets it, and stops them in order."""
    a, b = stream_name + "a", stream_name + "b"
    site = tmp_path / "site.toml"
    write_site(site, {a: {"source": "testsrc", "size": "64x48", "fps": 30},
                      b: {"source": "testsrc", "size": "64x48", "fps": 30,
                          "format": "yuv420p"}},
               f'[broker]\naddress = "{broker_address}"\n\n'
               f'[relay]\nbind = ["tcp://127.0.0.1:{free_port()}"]\n')
    up = procs.framebus("up", str(site))
    wait_until(alive(a), 20, what=f"{a} to run")
    wait_until(alive(b), 10, what=f"{b} to run")
    pids = [child_pid(up.pid, what) for what in ("broker", "relay", "decode")]
    assert None not in pids and len(leftover_segments()) == 2
    os.killpg(up.pid, signal.SIGINT)
    _, err = up.communicate(timeout=30)
    assert up.returncode == 0, err
    assert "Traceback" not in err and "everything stopped" in err
    assert f"{a}: stopped" in err and f"{b}: stopped" in err and "broker: stopped" in err
    assert "died" not in err, "no child was interrupted: each was stopped"
    assert not any(pid_alive(pid) for pid in pids)
    assert not leftover_segments() and not broker_answers(broker_address)


def test_up_runs_the_relay_and_brings_relay_and_broker_back_after_sigkill(
        procs, broker_address, stream_name, tmp_path):
    relay_endpoint, extra = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.2:{free_port()}"
    site = tmp_path / "site.toml"
    write_site(site, {stream_name: {"source": "testsrc", "size": "64x48", "fps": 30}},
               f'[broker]\naddress = "{broker_address}"\nbind = ["{extra}"]\n\n'
               f'[relay]\nbind = ["{relay_endpoint}"]\n')
    up = procs.framebus("up", str(site))
    producer = wait_until(alive(stream_name), 20, what="the stream to run")
    relay = wait_until(lambda: relay_at(relay_endpoint), 10, what="the relay to register")
    assert relay["pid"] == child_pid(up.pid, "relay")
    broker = child_pid(up.pid, "broker")
    assert broker_answers(extra), "the broker serves its further endpoints too"
    watch = Watch(stream_name, transport="tcp", check=True)
    watch.start()
    try:
        wait_until(lambda: watch.frames > 20, 15, what="frames through the relay")
        assert watch.paths == {"tcp"}

        os.kill(relay["pid"], signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: (r := relay_at(relay_endpoint)) and r["pid"] != relay["pid"], 15,
                   what="up to restart the relay", interval=0.02)
        relay_back = time.monotonic()
        wait_until(lambda: watch.first_after(relay_back), 15,
                   what="the same subscriber to resume through the restarted relay")
        # It may have resumed before the broker showed the new relay; the first frame after
        # the silence that the kill began is when it did.
        resumed = watch.silence_ended(killed, watch.first_after(relay_back))
        frames_then = watch.frames

        os.kill(broker, signal.SIGKILL)
        broker_killed = time.monotonic()
        wait_until(lambda: broker_answers(broker_address, timeout=0.1), 15,
                   what="up to restart the broker", interval=0.02)
        broker_back = time.monotonic()
        wait_until(lambda: (i := alive(stream_name)()) and i.pid == producer.pid, 15,
                   what="the stream to re-register with the new broker")
        registered = time.monotonic()
        wait_until(lambda: relay_at(relay_endpoint), 5, what="the relay to re-register")
        wait_until(lambda: watch.frames > frames_then + 20, 10, what="frames after all that")
    finally:
        watch.stop.set()
        watch.join()
    print(f"\nrelay back {relay_back - killed:.2f} s after SIGKILL, subscriber resumed "
          f"{resumed - killed:.2f} s after it; broker back {broker_back - broker_killed:.2f} s "
          f"after SIGKILL, stream re-registered {registered - broker_killed:.2f} s after it")
    assert watch.error is None and watch.wrong == 0 and watch.paths == {"tcp"}
    assert relay_back - killed < 5, "up restarts the relay within 5 s"
    assert resumed - relay_back < 2, "the subscriber resumes within 2 s of the relay's return"
    assert broker_back - broker_killed < 5 and registered - broker_killed < 5
    assert child_pid(up.pid, "broker") not in (None, broker)
    assert watch.longest_gap_between(broker_killed, registered) < 1.0, \
        "frames flow through the relay while the broker is away"
    assert up.poll() is None

    pids = [child_pid(up.pid, what) for what in ("broker", "relay", "decode")]
    procs.stop(up, signal.SIGTERM)
    _, err = up.communicate()
    assert "relay: died (killed by SIGKILL)" in err and "broker: died (killed by SIGKILL)" in err
    # Streams first, then the relay, then the broker.
    assert (err.index(f"{stream_name}: stopped") < err.index("relay: stopped")
            < err.index("broker: stopped")), err
    assert not any(pid_alive(pid) for pid in pids)
    assert not broker_answers(broker_address) and not listening(relay_endpoint)
    assert not leftover_segments()


def _other_address() -> str | None:
    """An address of this host beyond loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # no packet is sent: only a route is chosen
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_a_site_serves_other_hosts_with_its_keys(procs, broker_address, stream_name, tmp_path,
                                                  monkeypatch):
    address = _other_address()
    if address is None:
        pytest.skip("this host has no address beyond loopback")
    keys = make_keys(tmp_path / "keys")
    public_broker = f"tcp://{address}:{free_port()}"
    public_relay = f"tcp://{address}:{free_port()}"
    site = tmp_path / "site.toml"
    write_site(site, {stream_name: {"source": "testsrc", "size": "64x48", "fps": 30}},
               f'[broker]\naddress = "{broker_address}"\nbind = ["{public_broker}"]\n'
               f'curve_keys = "keys"\n\n'
               f'[relay]\nbind = ["tcp://127.0.0.1:{free_port()}", "{public_relay}"]\n'
               f'curve_keys = "{keys}"\n')
    up = procs.framebus("up", str(site))
    wait_until(alive(stream_name), 20, what="the stream to run")
    # Another host's view: the public broker, and the relay it advertises, with client keys.
    monkeypatch.setenv("FRAMEBUS_KEYS", str(keys / "client"))
    monkeypatch.setenv("FRAMEBUS_BROKER", public_broker)
    wait_until(lambda: relay_at(public_relay), 10, what="the relay to advertise its address")
    with framebus.Subscriber(stream_name, transport="tcp") as sub:
        frames = [sub.recv(timeout=10) for _ in range(10)]
    assert all(is_the_pattern(f) for f in frames)
    monkeypatch.delenv("FRAMEBUS_KEYS")
    with pytest.raises(framebus.FramebusError, match="beyond loopback"):
        framebus.streams(timeout=0.5)
    procs.stop(up, signal.SIGTERM)
    assert up.returncode == 0 and not leftover_segments()

