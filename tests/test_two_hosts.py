"""One stream read on two real hosts at once: network namespaces, each with its own /dev/shm,
joined by a veth pair (framebus/testing/netns.py). Host A runs the broker, a producer, the relay and
local subscribers; host B runs remote subscribers. Broker and relay are bound to A's
address, so CurveZMQ guards them, with an allowlist of client keys."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framebus.testing.netns import PYTHON, read_line

TESTS = Path(__file__).parent
CONSUMER = str(TESTS / "consumer.py")
PACKET_READER = str(TESTS / "packet_reader.py")
STREAM = "cam"


def framebus(*args: str) -> list[str]:
    return [PYTHON, "-m", "framebus", *args]


def keygen(name: str, directory: Path) -> None:
    subprocess.run(framebus("keygen", name, "--dir", str(directory)), check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def made_keys(tmp_path_factory) -> Path:
    """The key pairs, made once for the module by `framebus keygen` (a process each, most
    of a test's setup when made for every test)."""
    root = tmp_path_factory.mktemp("keys")
    make_keys(root)
    return root


@pytest.fixture
def keys(made_keys, tmp_path):
    """Each test's own copy of the keys: one admits a client at runtime by adding a file."""
    root = tmp_path / "keys"
    shutil.copytree(made_keys, root)  # modes too: the secret files stay the owner's alone
    return {name: root / directory for name, directory in KEY_DIRS.items()}


KEY_DIRS = {"broker": "broker-keys", "relay": "relay-keys", "good": "good",
            "outsider": "outsider", "relayless": "relayless"}


def make_keys(tmp_path: Path) -> None:
    """Server keys for the broker (admits good and relay-only) and the relay (admits good)."""
    broker_dir, relay_dir = tmp_path / "broker-keys", tmp_path / "relay-keys"
    keygen("server", broker_dir)
    relay_dir.mkdir(mode=0o700)
    for name in ("server.key", "server.key_secret"):  # one site key pair for both servers
        shutil.copy2(broker_dir / name, relay_dir / name)
    clients = {}
    for client in ("good", "outsider", "relayless"):
        directory = tmp_path / client
        keygen("client", directory)
        shutil.copy(broker_dir / "server.key", directory / "server.key")
        clients[client] = directory
    for server_dir, admitted in ((broker_dir, ("good", "relayless")), (relay_dir, ("good",))):
        (server_dir / "authorized").mkdir(mode=0o700)
        for client in admitted:
            shutil.copy(clients[client] / "client.key", server_dir / "authorized" / f"{client}.key")


class Site:
    """Host A's services; consumers anywhere; every process reaped by the hosts' teardown."""

    def __init__(self, a, b, keys):
        self.a, self.b, self.keys = a, b, keys
        self.public_broker = f"tcp://{a.address}:5555"
        self.relay_endpoint = f"tcp://{a.address}:5556"
        self.local = {"FRAMEBUS_BROKER": "tcp://127.0.0.1:5555"}

    def start(self):
        self.broker = self.a.popen(framebus(
            "broker", "--bind", "tcp://127.0.0.1:5555", "--bind", self.public_broker,
            "--curve-keys", str(self.keys["broker"])), stderr=subprocess.PIPE, text=True)
        self.producer = self.a.popen(framebus("testsrc", STREAM, "--size", "64x48", "--fps", "50"),
                                     env=self.local)
        self.start_relay()
        return self

    def start_relay(self):
        self.relay = self.a.popen(framebus(
            "relay", "--bind", self.relay_endpoint, "--curve-keys", str(self.keys["relay"])),
            env=self.local, stderr=subprocess.PIPE, text=True)

    def consumer(self, host, *args, keys="good"):
        env = dict(self.local) if host is self.a else {
            "FRAMEBUS_BROKER": self.public_broker, "FRAMEBUS_KEYS": str(self.keys[keys])}
        return host.popen([PYTHON, CONSUMER, STREAM, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def result(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"consumer failed ({proc.returncode}):\n{err}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def site(two_hosts, keys):
    a, b = two_hosts
    return Site(a, b, keys).start()


def test_local_and_remote_readers_of_one_stream_at_once(site):
    a, b = site.a, site.b
    readers = {
        "local-1": site.consumer(a, "--seconds", "4"),
        "local-2": site.consumer(a, "--seconds", "4"),
        "remote-raw": site.consumer(b, "--seconds", "4"),
        "remote-jpeg": site.consumer(b, "--seconds", "4", "--codec", "jpeg", "--quality", "90",
                                     "--min-psnr", "25"),
    }
    results = {name: result(proc) for name, proc in readers.items()}
    for name, r in results.items():
        assert r["bad"] == 0 and r["good"] > 50, (name, r)
        assert r["seqs"] == sorted(r["seqs"]), name
    assert results["local-1"]["paths"] == results["local-2"]["paths"] == ["shm"]
    assert results["remote-raw"]["paths"] == results["remote-jpeg"]["paths"] == ["tcp"]
    assert results["remote-raw"]["worst_psnr"] == float("inf")
    # B has its own /dev/shm: the ring is only on A.
    assert any(STREAM in n for n in (p.name for p in a.shm.iterdir()))
    assert not any(STREAM in n for n in (p.name for p in b.shm.iterdir()))


def test_a_slow_remote_reader_slows_neither_local_nor_other_remote_readers(site):
    a, b = site.a, site.b
    slow = site.consumer(b, "--seconds", "5", "--delay", "0.5")
    fast = site.consumer(b, "--seconds", "5")
    local = site.consumer(a, "--seconds", "5")
    slow, fast, local = result(slow), result(fast), result(local)
    assert fast["fps"] > 40 and local["fps"] > 40, (fast["fps"], local["fps"])
    gaps = [y - x for x, y in zip(slow["seqs"], slow["seqs"][1:])]
    assert len(slow["seqs"]) >= 7 and min(gaps) >= 15, gaps  # always the newest, ~25 apart
    assert slow["bad"] == fast["bad"] == local["bad"] == 0


def test_keys_that_are_not_allowed_get_nothing_and_a_clear_error(site):
    b = site.b
    good = site.consumer(b, "--seconds", "4")
    outsider = site.consumer(b, "--seconds", "3", keys="outsider")
    relayless = site.consumer(b, "--seconds", "3", keys="relayless")
    _, err = outsider.communicate(timeout=30)
    assert outsider.returncode != 0 and "broker" in err and "refused this client's key" in err
    _, err = relayless.communicate(timeout=30)
    assert relayless.returncode != 0 and "relay" in err and "refused this client's key" in err
    assert result(good)["good"] > 50, "the allowed client reads on meanwhile"
    no_keys = b.run([PYTHON, CONSUMER, STREAM, "--seconds", "1"], timeout=30,
                    env={"FRAMEBUS_BROKER": site.public_broker})
    assert no_keys.returncode != 0 and "requires CurveZMQ" in no_keys.stderr
    site.relay.terminate()
    _, relay_log = site.relay.communicate(timeout=10)
    assert "refused a client whose key" in relay_log


def test_a_remote_reader_resumes_after_the_network_and_the_relay_come_back(site):
    a, b = site.a, site.b
    reader = site.consumer(b, "--seconds", "14", "--ready")
    assert read_line(reader, 20).strip() == "ready"
    a.link_down()
    time.sleep(2.5)
    a.link_up()
    time.sleep(3.0)
    site.relay.kill()
    site.relay.wait()
    site.start_relay()
    r = result(reader)
    seqs = r["seqs"]
    gaps = sorted((y - x for x, y in zip(seqs, seqs[1:])), reverse=True)
    assert r["bad"] == 0 and len(seqs) > 200, r["received"]
    assert gaps[0] >= 100, "the cut is visible as a gap in the sequence"
    assert seqs[-1] - seqs[0] > 500, "frames flowed again after the cut and the relay restart"
    late = [s for s in seqs if s > seqs[0] + 50 * 9]
    assert len(late) > 50, "and still after the relay came back"


def test_packets_reach_the_other_host_bit_identical_across_a_producer_restart(site, tmp_path):
    """A real decoder's packets on A, read on A from the ring and on B through the relay
    (CurveZMQ): the same packets, bit for bit; the decoder restarted, B follows its new ring
    from a key frame without losing a packet."""
    from framebus.testing.media import encode

    a, b = site.a, site.b
    clip = encode(tmp_path / "clip.mp4", 50, 160, 120)
    decode = framebus("decode", str(clip), "--name", "pk", "--loop")
    producer = a.popen(decode, env=site.local)
    remote_env = {"FRAMEBUS_BROKER": site.public_broker, "FRAMEBUS_KEYS": str(site.keys["good"])}
    readers = {"local": a.popen([PYTHON, PACKET_READER, "pk", "--seconds", "7", "--ready"],
                                env=site.local, stdout=subprocess.PIPE, text=True),
               "remote": b.popen([PYTHON, PACKET_READER, "pk", "--seconds", "7", "--ready"],
                                 env=remote_env, stdout=subprocess.PIPE, text=True)}
    for reader in readers.values():
        assert read_line(reader, 20).strip() == "ready"
    time.sleep(1.5)
    producer.terminate()
    producer.wait(10)
    a.popen(decode, env=site.local)
    local, remote = (result(proc) for proc in readers.values())
    assert remote["remote"] and not local["remote"]
    tokens = list(dict.fromkeys(p[0] for p in remote["packets"]))
    assert len(tokens) == 2, "the restarted producer's new ring, after the old one's"
    for token in tokens:
        seqs = [p[1] for p in remote["packets"] if p[0] == token]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) > 20, token
    first_of_new = next(p for p in remote["packets"] if p[0] == tokens[1])
    assert first_of_new[2], "the new ring is read from a key frame"
    assert remote["dropped"] == 0 and remote["rejected"] == 0
    mine = {(p[0], p[1]): p[5] for p in local["packets"]}
    common = [p for p in remote["packets"] if (p[0], p[1]) in mine]
    assert len(common) > 60 and all(mine[(p[0], p[1])] == p[5] for p in common), "bit-identical"
    assert remote["codec"] == local["codec"] and remote["codec"][0] == "h264"


def test_broker_and_relay_refuse_to_bind_beyond_loopback_without_keys(two_hosts):
    a, _ = two_hosts
    for args in (["broker", "--bind", f"tcp://{a.address}:5555"],
                 ["relay", "--bind", f"tcp://{a.address}:5556"]):
        run = a.run(framebus(*args), timeout=30)
        assert run.returncode == 1 and "only with CurveZMQ" in run.stderr, run.stderr


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("network namespaces are Linux's", allow_module_level=True)


def test_the_broker_knows_the_whole_site_and_readers_on_either_host_reach_either_stream(site):
    """A producer and a relay on B register with A's broker over CurveZMQ; A reads B's stream."""
    a, b = site.a, site.b
    b_env = {"FRAMEBUS_BROKER": site.public_broker, "FRAMEBUS_KEYS": str(site.keys["good"])}
    b.popen(framebus("testsrc", "cam-b", "--size", "32x24", "--fps", "50"), env=b_env)
    b.popen(framebus("relay", "--bind", f"tcp://{b.address}:5556", "--curve-keys",
                     str(site.keys["relay"])), env=b_env)
    ls = None
    for _ in range(40):  # registrations arrive within a heartbeat or two
        ls = a.run(framebus("ls"), env=site.local, timeout=30)
        if all(part in ls.stdout for part in ("host-a", "cam-b", f"tcp://{b.address}:5556")):
            break  # both hosts' producers and B's relay have registered
        time.sleep(0.25)
    assert ls.returncode == 0 and "host-a" in ls.stdout and "host-b" in ls.stdout, ls.stdout
    assert f"relay for host host-b: tcp://{b.address}:5556" in ls.stdout
    on_a = a.popen([PYTHON, CONSUMER, "cam-b", "--frames", "30"], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True,
                   env={**site.local, "FRAMEBUS_KEYS": str(site.keys["good"])})
    r = result(on_a)
    assert r["good"] == 30 and r["bad"] == 0 and r["paths"] == ["tcp"], r


def test_a_client_admitted_at_runtime_reads_after_a_sighup(site):
    b = site.b
    refused = site.consumer(b, "--seconds", "2", keys="relayless")
    _, err = refused.communicate(timeout=30)
    assert refused.returncode != 0 and "refused this client's key" in err
    shutil.copy(site.keys["relayless"] / "client.key",
                site.keys["relay"] / "authorized" / "relayless.key")
    site.relay.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    admitted = site.consumer(b, "--frames", "20", keys="relayless")
    r = result(admitted)
    assert r["good"] == 20 and r["paths"] == ["tcp"], r
    assert site.relay.poll() is None, "the relay reloads, it does not restart"
