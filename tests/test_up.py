"""`framebus up`: a real supervisor process running a real broker, relay and decoders."""

import itertools
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import broker_answers, free_port, leftover_segments, wait_until

import framebus
from framebus import sitefile
from framebus.keys import generate
from framebus.shm.segment import pid_alive
from framebus.testing import media
from framebus.testsrc import TestPattern

EXAMPLE = Path(__file__).parent.parent / "examples" / "framebus.toml"


def write_site(path, streams: dict[str, dict], head: str = "") -> None:
    """A site file: *head* (TOML for the broker and relay as they are), then the streams."""
    lines = [head] if head else []
    for name, options in streams.items():
        lines.append(f"[streams.{name}]")
        lines += [f"{key} = {value!r}".replace("'", '"') if not isinstance(value, bool)
                  else f"{key} = {str(value).lower()}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")


def infos():
    return {s.name: s for s in framebus.streams(timeout=0.5)}


def alive(name):
    def check():
        try:
            info = infos().get(name)
        except framebus.BrokerUnavailable:
            return None
        return info if info and info.alive and info.fps > 0 else None
    return check


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


def is_the_pattern(frame) -> bool:
    """Whether a frame of a decoder's testsrc holds exactly the pattern it says it is."""
    pixels = frame.copy()
    pattern = TestPattern(frame.shape)
    # The decoder draws frame pts; seq counts the same unless it skipped a late frame.
    return pattern.matches(pixels, frame.seq) or pattern.matches(pixels, frame.pts)


def child_pid(parent: int, command: str) -> int | None:
    """The pid of *parent*'s live child running `framebus COMMAND`, if there is one now."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and argv[1:4] == [b"-m", b"framebus", command.encode()]:
            return int(entry)
    return None


def relay_at(endpoint, pid=None):
    """The broker's entry for a live relay at *endpoint* (of process *pid*), else None."""
    try:
        with framebus.BrokerClient(timeout=0.5) as client:
            relays = client.relays()
    except framebus.BrokerUnavailable:
        return None
    return next((r for r in relays if r["endpoint"] == endpoint and r["alive"]
                 and pid in (None, r["pid"])), None)


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


def test_sighup_applies_only_what_changed(procs, broker_address, stream_name, tmp_path):
    keep, drop, add = stream_name + "k", stream_name + "d", stream_name + "n"
    site = tmp_path / "site.toml"
    write_site(site, {keep: {"source": "testsrc", "size": "32x24", "fps": 20},
                      drop: {"source": "testsrc", "size": "32x24", "fps": 20}})
    up = procs.framebus("up", str(site))
    kept = wait_until(alive(keep), 20, what="the first streams")
    wait_until(alive(drop), 10, what="the second stream")
    write_site(site, {keep: {"source": "testsrc", "size": "32x24", "fps": 20},
                      add: {"source": "testsrc", "size": "48x32", "fps": 20}})
    up.send_signal(signal.SIGHUP)
    added = wait_until(alive(add), 10, what="the added stream")
    assert added.shape == (32, 48, 3)
    wait_until(lambda: drop not in infos(), 10, what="the removed stream to go")
    assert infos()[keep].pid == kept.pid, "an unchanged stream is left running"

    site.write_text("[streams.bad]\nsauce = 'testsrc'\n")  # a typo: refused, nothing stops
    up.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert alive(keep)() and alive(add)()
    procs.stop(up, signal.SIGINT)
    _, err = up.communicate()
    assert "reload refused" in err and "sauce" in err
    assert not pid_alive(kept.pid) and not leftover_segments()


def test_a_bad_site_file_is_refused_with_a_clear_error(procs, broker_address, tmp_path):
    cases = {
        "[streams.cam1]\nsource = 'testsrc'\nfsp = 10\n": "unknown option(s) ['fsp']",
        "[streams.cam1]\nsize = '640x480'\n": "needs a source",
        "[streams.'../x']\nsource = 'testsrc'\n": "invalid stream name",
        "[streams.cam1]\nsource = 'testsrc'\nformat = 'bgr'\n": "format = 'bgr' is not valid",
        "[streams.cam1\n": "not valid TOML",
        "": "no streams",
    }
    for text, expected in cases.items():
        site = tmp_path / "site.toml"
        site.write_text(text)
        proc = procs.framebus("up", str(site))
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1 and expected in err, (text, err)
    proc = procs.framebus("up", str(tmp_path / "missing.toml"))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "cannot read" in err


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


def test_sighup_starts_restarts_and_stops_the_relay_and_keeps_the_broker(
        procs, broker_address, stream_name, tmp_path):
    first, second = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    streams = {stream_name: {"source": "testsrc", "size": "32x24", "fps": 20}}
    site = tmp_path / "site.toml"
    write_site(site, streams, f'broker = "{broker_address}"\n')
    up = procs.framebus("up", str(site))
    producer = wait_until(alive(stream_name), 20, what="the stream to run")
    broker = child_pid(up.pid, "broker")
    assert child_pid(up.pid, "relay") is None

    write_site(site, streams, f'broker = "{broker_address}"\n[relay]\nbind = ["{first}"]\n')
    up.send_signal(signal.SIGHUP)
    relay = wait_until(lambda: relay_at(first), 10, what="the added relay to serve")
    with framebus.Subscriber(stream_name, transport="tcp") as sub:
        assert is_the_pattern(sub.recv(timeout=10))

    # A changed [broker] is kept as it runs; a changed [relay] restarts the relay.
    extra = f"tcp://127.0.0.2:{free_port()}"
    write_site(site, streams, f'[broker]\naddress = "{broker_address}"\nbind = ["{extra}"]\n'
                              f'[relay]\nbind = ["{second}"]\n')
    up.send_signal(signal.SIGHUP)
    moved = wait_until(lambda: relay_at(second), 10, what="the changed relay to serve")
    assert moved["pid"] != relay["pid"] and not pid_alive(relay["pid"])
    assert child_pid(up.pid, "broker") == broker and not broker_answers(extra)

    write_site(site, streams, f'broker = "{broker_address}"\n')
    up.send_signal(signal.SIGHUP)
    wait_until(lambda: child_pid(up.pid, "relay") is None and not pid_alive(moved["pid"]), 10,
               what="the removed relay to stop")
    assert infos()[stream_name].pid == producer.pid, "the stream ran on through it all"
    procs.stop(up, signal.SIGINT)
    _, err = up.communicate()
    assert "reload: relay added" in err and "reload: relay changed; restarting it" in err
    assert "reload: relay removed" in err
    assert "a changed broker takes a restart of `framebus up`" in err
    assert not pid_alive(broker) and not leftover_segments()


def _keys(directory: Path) -> Path:
    """A server key directory admitting one client, whose own key directory is DIR/client."""
    server_public, _ = generate("server", directory)
    client_public, _ = generate("client", directory / "client")
    (directory / "authorized").mkdir()
    shutil.copy(client_public, directory / "authorized" / "client.key")
    shutil.copy(server_public, directory / "client" / "server.key")
    return directory


BAD_SERVICES = {
    "broker-unknown-key": ('[broker]\nbnid = ["tcp://127.0.0.1:5999"]',
                           "[broker]: unknown key(s) ['bnid']; known: address, bind, curve_keys"),
    "broker-bind-not-a-list": ('[broker]\nbind = "tcp://127.0.0.1:5999"',
                               ("[broker]: bind = 'tcp://127.0.0.1:5999' is not valid; expected "
                                "a non-empty list")),
    "broker-bind-not-tcp": ('[broker]\nbind = ["ipc:///tmp/b"]',
                            "[broker]: bind: 'ipc:///tmp/b' is not valid; expected a tcp://"),
    "broker-bind-beyond-loopback": ('[broker]\nbind = ["tcp://192.0.2.1:5999"]',
                                    ("[broker]: bind: tcp://192.0.2.1:5999 is beyond loopback, "
                                     "which the broker serves only with CurveZMQ: set curve_keys")),
    "broker-bind-is-the-address": ('[broker]\naddress = "BROKER"\nbind = ["BROKER"]',
                                   "[broker]: bind: BROKER is the address"),
    "broker-address-not-tcp": ('[broker]\naddress = "udp://127.0.0.1:5999"',
                               "[broker]: address = 'udp://127.0.0.1:5999' is not valid"),
    "broker-no-keys": ('[broker]\ncurve_keys = "nokeys"', "[broker]: curve_keys: no key file"),
    "broker-not-a-string": ("broker = 5999", "broker must be an address"),
    "relay-not-a-table": ('relay = "tcp://127.0.0.1:5998"', "[relay] must be a table"),
    "relay-unknown-key": ("[relay]\nport = 5998",
                          "[relay]: unknown key(s) ['port']; known: bind, advertise, curve_keys"),
    "relay-bind-empty": ("[relay]\nbind = []",
                         "[relay]: bind = [] is not valid; expected a non-empty list"),
    "relay-bind-no-port": ('[relay]\nbind = ["tcp://127.0.0.1"]',
                           "[relay]: bind: 'tcp://127.0.0.1' is not valid"),
    "relay-bind-beyond-loopback": ('[relay]\nbind = ["tcp://0.0.0.0:5998"]',
                                   ("[relay]: bind: tcp://0.0.0.0:5998 is beyond loopback, which "
                                    "the relay serves only with CurveZMQ: set curve_keys")),
    "relay-advertise-not-tcp": ('[relay]\nadvertise = "10.0.0.5:5998"',
                                "[relay]: advertise = '10.0.0.5:5998' is not valid"),
    "relay-on-the-broker": ('[relay]\nbind = ["BROKER"]', "[relay]: bind: BROKER is the broker's"),
    "relay-wildcard-unadvertised": ('[relay]\nbind = ["tcp://0.0.0.0:5998"]\ncurve_keys = "keys"',
                                    ("[relay]: bound to tcp://0.0.0.0:5998, the relay cannot tell "
                                     "other hosts its address: set advertise")),
}


@pytest.mark.parametrize("text,expected", BAD_SERVICES.values(), ids=BAD_SERVICES.keys())
def test_bad_broker_and_relay_tables_are_refused_before_anything_starts(
        procs, broker_address, tmp_path, text, expected):
    _keys(tmp_path / "keys")  # a relative curve_keys is taken from the site file's directory
    site = tmp_path / "site.toml"
    write_site(site, {"cam1": {"source": "testsrc"}}, text.replace("BROKER", broker_address))
    proc = procs.framebus("up", str(site))
    _, err = proc.communicate(timeout=20)
    expected = expected.replace("BROKER", broker_address)
    assert proc.returncode == 1 and expected in err, err
    assert str(site) in err, "the error names the file"
    assert "started" not in err and not broker_answers(broker_address)


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
    keys = _keys(tmp_path / "keys")
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


def test_the_site_files_relay_default_and_example_are_the_real_ones(tmp_path):
    from framebus.remote.relay import DEFAULT_BIND

    assert sitefile.RELAY_DEFAULT_BIND == DEFAULT_BIND
    assert sitefile.load(EXAMPLE).relay is None
    # The commented example of a site serving other hosts, uncommented, with real keys.
    keys = _keys(tmp_path / "keys")
    text = EXAMPLE.read_text()
    text = text.replace("\n# [broker]\n", "\n[broker]\n").replace("\n# [relay]\n", "\n[relay]\n")
    for key in ("address", "bind", "advertise", "curve_keys"):
        text = text.replace(f"\n# {key} = ", f"\n{key} = ")
    text = text.replace('"/etc/framebus/keys"', f'"{keys}"')
    (tmp_path / "site.toml").write_text(text)
    site = sitefile.load(tmp_path / "site.toml")
    assert site.broker.bind == ("tcp://10.0.0.5:5555",) and site.broker.curve_keys == str(keys)
    assert site.relay.advertise == "tcp://10.0.0.5:5556" and len(site.relay.bind) == 2


def test_a_streams_command_line_gives_back_its_spec():
    """up runs each stream as `framebus decode ARGS`; parsed by decode's own options, the
    arguments are the stream's spec again, field for field."""
    from framebus.cli.site import decode
    from framebus.spec import DecodeSpec

    site = sitefile.parse({"streams": {
        "plain": {"source": "testsrc"},
        "every": {"source": "rtsp://192.0.2.1/s", "format": "yuv420p", "size": "320x240",
                  "fps": 7.5, "slots": 3, "loop": True, "fast": True, "transport": "udp",
                  "timeout": 0.5, "threads": 2},
    }})
    for spec in [*sitefile.load(EXAMPLE).streams.values(), *site.streams.values()]:
        args = spec.args()
        assert args[0] == "decode"
        ctx = decode.make_context("decode", args[1:] + ["--broker", "tcp://127.0.0.1:1"])
        options = {k: v for k, v in ctx.params.items() if k != "broker"}
        assert DecodeSpec.convert(options) == spec, args


BAD_STREAMS = {
    "fps = true": "[streams.cam1]: fps = True is not valid; expected a number > 0",
    "slots = 8.0": "[streams.cam1]: slots = 8.0 is not valid; expected an integer from 1 to 1024",
    'size = "640"': "[streams.cam1]: size = '640' is not valid; expected WIDTHxHEIGHT",
    'transport = "http"': ("[streams.cam1]: transport = 'http' is not valid; expected one of "
                           "tcp, udp"),
    "threads = 65": "[streams.cam1]: threads = 65 is not valid; expected an integer from 0 to 64",
    "loop = 1": "[streams.cam1]: loop = 1 is not valid; expected true or false",
    'name = "other"': "[streams.cam1]: unknown option(s) ['name']",
    'source = " "': "[streams.cam1]: source = ' ' is not valid",
}


@pytest.mark.parametrize("line,expected", BAD_STREAMS.items(), ids=BAD_STREAMS.keys())
def test_every_bad_stream_option_is_named_with_its_table(tmp_path, line, expected):
    site = tmp_path / "site.toml"
    source = "" if line.startswith("source") else "source = 'testsrc'\n"
    site.write_text(f"[streams.cam1]\n{source}{line}\n")
    with pytest.raises(framebus.SiteError) as caught:
        sitefile.load(site)
    assert str(caught.value).startswith(f"{site}: ") and expected in str(caught.value)
    # The same value in [defaults] is blamed on [defaults].
    if not line.startswith(("name", "source")):
        site.write_text(f"[defaults]\n{line}\n[streams.cam1]\nsource = 'testsrc'\n")
        with pytest.raises(framebus.SiteError, match=r"\[defaults\]: "):
            sitefile.load(site)
