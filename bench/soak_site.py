"""The site the soak runs (bench/soak.py): two hosts, one `framebus up`, and its watchers.

Host A (a network namespace with its own small /dev/shm, tests/netns.py) runs the site
under ``framebus up``: the broker, the relay, and four decoders (the test pattern, an
H.264 file twice, once as yuv420p, and a live RTSP camera served by GStreamer in A).
Beside them run a lying producer, checking subscribers, and an observer asking the broker
what it knows. Host B, across a veth, reads two streams through the relay, with CurveZMQ.

Everything here only starts, finds, and watches processes; bench/soak_chaos.py breaks
them, and bench/soak.py judges what happened.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from framebus import keys as curve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from framebus.testing import media  # noqa: E402  (the test clips)
from netns import PYTHON, Host, TwoHosts  # noqa: E402
from rtsp import RtspServer  # noqa: E402

log = logging.getLogger("soak")

BENCH = Path(__file__).resolve().parent
BROKER_PORT, RELAY_PORT, RTSP_PORT = 5555, 5556, 8554
CLIP_FRAMES, CLIP_FPS, CLIP_SIZE = 250, 25, (320, 240)


@dataclass(frozen=True)
class ConsumerPlan:
    """One checking subscriber: where it runs, what it reads and how it checks."""

    name: str
    stream: str
    args: tuple[str, ...]
    host: str = "a"
    witness: bool = False  # never SIGKILLed in the second phase: its memory is judged


CLIP_CHECK = ("--check", "marker", "--frames", str(CLIP_FRAMES), "--fps", str(CLIP_FPS))
CONSUMERS = (
    ConsumerPlan("pattern-copy", "pattern", ("--check", "pattern", "--shape", "360,640,3"),
                 witness=True),
    ConsumerPlan("pattern-view", "pattern", ("--check", "pattern", "--zero-copy")),
    ConsumerPlan("pattern-slow", "pattern", ("--check", "pattern", "--delay", "0.2")),
    ConsumerPlan("clip-copy", "clip", CLIP_CHECK, witness=True),
    ConsumerPlan("planar-view", "planar", (*CLIP_CHECK, "--zero-copy")),
    ConsumerPlan("camera", "camera", ("--check", "bars", "--shape", "240,320,3")),
    ConsumerPlan("liar", "liar", ("--check", "pattern"), witness=True),
    ConsumerPlan("pattern-remote", "pattern", ("--check", "pattern", "--transport", "tcp"),
                 host="b", witness=True),
    ConsumerPlan("clip-jpeg", "clip", (*CLIP_CHECK, "--transport", "tcp", "--codec", "jpeg",
                                       "--min-psnr", "25"), host="b"),
)
STREAMS = ("pattern", "clip", "planar", "camera")
FILE_STREAMS = ("clip", "planar")
WITNESS_STREAM = "pattern"


def site_file(clip: Path, keys: Path, address: str) -> str:
    """The site: A's broker and relay, also served on A's address for B, and four streams."""
    return f"""\
[broker]
address = "tcp://127.0.0.1:{BROKER_PORT}"
bind = ["tcp://{address}:{BROKER_PORT}"]
curve_keys = "{keys}"

[relay]
bind = ["tcp://127.0.0.1:{RELAY_PORT}", "tcp://{address}:{RELAY_PORT}"]
advertise = "tcp://{address}:{RELAY_PORT}"
curve_keys = "{keys}"

[streams.pattern]
source = "testsrc"
size = "640x360"
fps = 30

[streams.clip]
source = "{clip}"
loop = true

[streams.planar]
source = "{clip}"
loop = true
format = "yuv420p"

[streams.camera]
source = "rtsp://127.0.0.1:{RTSP_PORT}/live"
timeout = 2
"""


# -- the processes of host A, found by their command lines -------------------------------------

def role_of(pid: int) -> str | None:
    """"up", "broker", "relay" or "decoder:NAME" for a framebus process; None otherwise."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in argv if a]
    if "framebus" not in args[1:3] or len(args) < 3:
        return None
    command = args[args.index("framebus") + 1] if args.index("framebus") + 1 < len(args) else ""
    if command == "decode" and "--name" in args:
        return "decoder:" + args[args.index("--name") + 1]
    return command if command in ("up", "broker", "relay") else None


def memory(pid: int) -> tuple[float, int] | None:
    """(resident MiB, open file descriptors) of *pid*, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024, fds
    return None


# -- line-printing agents: consumers, the observer, the liar ------------------------------------

class Agent:
    """A process of ours that prints one JSON line of news at a time; keeps the latest."""

    def __init__(self, name: str, host: Host, argv: list[str], env: dict[str, str],
                 logs: Path) -> None:
        self.name, self.host, self.argv, self.env = name, host, argv, env
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.latest: dict = {}
        self.started = 0.0
        self.lock = threading.Lock()

    def start(self) -> None:
        with open(self.log_path, "a") as stderr:
            self.proc = self.host.popen([PYTHON, *self.argv], env=self.env,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.started = time.monotonic()
        self.latest = {}
        threading.Thread(target=self._read, args=(self.proc,), daemon=True,
                         name=f"soak-{self.name}").start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                news = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if proc is self.proc:
                    self.on_news(news)
        proc.stdout.close()

    def on_news(self, news: dict) -> None:
        self.latest = news

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        time.sleep(0.1)  # its last line, read by the reader thread


@dataclass
class Incarnation:
    """What one process of a consumer reported last."""

    started: float
    latest: dict = field(default_factory=dict)


class Consumer(Agent):
    """A checking subscriber, across its restarts: totals, and every gap between frames.

    A restart is a gap too: from the last frame of the old process to the first of the new.
    """

    COUNTS = ("frames", "good", "bad", "overwritten", "dropped", "rejected")

    def __init__(self, plan: ConsumerPlan, host: Host, env: dict[str, str], logs: Path) -> None:
        super().__init__(plan.name, host, [str(BENCH / "soak_consumer.py"), plan.stream,
                                           *plan.args], env, logs)
        self.plan = plan
        self.finished: list[dict] = []  # the last report of each earlier process
        self.gaps: list[tuple[float, float]] = []
        self.last: float | None = None  # the newest frame, whichever process got it
        self.bad_examples: list[str] = []
        self.restarts = 0
        self.crashes = 0  # deaths nobody caused

    def on_news(self, news: dict) -> None:
        if self.latest.get("first") is None and news.get("first") and self.last is not None:
            self.gaps.append((self.last, news["first"]))  # the silence of a restart
        self.gaps.extend(tuple(g) for g in news.get("gaps", []))
        self.last = news.get("last") or self.last
        for example in news.get("bad_examples", []):
            if example not in self.bad_examples:
                self.bad_examples.append(example)
        self.latest = news

    def restart(self) -> None:
        with self.lock:
            if self.latest:
                self.finished.append(self.latest)
            self.restarts += 1
        self.start()

    def total(self, key: str) -> int:
        with self.lock:
            return sum(r.get(key, 0) for r in [*self.finished, self.latest])

    def recovered_after(self, moment: float) -> float | None:
        """Seconds from *moment* to its first frame after it; None while none has come.

        0 when frames kept coming (no gap spans the moment).
        """
        with self.lock:
            if self.last is None or self.last <= moment:
                return None
            spanning = [end for start, end in self.gaps if start <= moment < end]
        return max(0.0, min(spanning) - moment) if spanning else 0.0

    def longest_gap(self, since: float = 0.0) -> float:
        with self.lock:
            return max((end - start for start, end in self.gaps if end > since), default=0.0)


class Observer(Agent):
    """Asks A's broker what it knows, four times a second (bench/soak_watch.py).

    Keeps, for every stream, the tokens seen and when each first showed up alive, and the
    frames each published; for the broker and relay, when they last answered or showed.
    """

    def __init__(self, host: Host, env: dict[str, str], logs: Path) -> None:
        super().__init__("observer", host, [str(BENCH / "soak_watch.py")], env, logs)
        self.first_alive: dict[tuple[str, str], float] = {}  # (stream, token) -> when
        self.frames: dict[tuple[str, str], int] = {}
        self.answered: list[tuple[float, bool]] = []  # when the broker answered; all alive?
        self.relay_seen: dict[int, float] = {}  # relay pid -> first seen alive

    def on_news(self, news: dict) -> None:
        self.latest = news
        if not news.get("ok"):
            return
        streams = news["streams"]
        everyone = all(name in streams and streams[name]["alive"] for name in STREAMS)
        self.answered.append((news["t"], everyone))
        for name, stream in news["streams"].items():
            key = (name, stream["token"])
            self.frames[key] = max(self.frames.get(key, 0), stream["frames"])
            if stream["alive"] and key not in self.first_alive:
                self.first_alive[key] = news["t"]
        for relay in news["relays"]:
            if relay["alive"]:
                self.relay_seen.setdefault(relay["pid"], news["t"])

    def token(self, stream: str) -> str | None:
        with self.lock:
            info = self.latest.get("streams", {}).get(stream)
            return info["token"] if info and info["alive"] else None

    def back_after(self, stream: str, moment: float, old_token: str | None) -> float | None:
        """Seconds from *moment* until a new producer of *stream* was registered and alive."""
        with self.lock:
            times = [t for (name, token), t in self.first_alive.items()
                     if name == stream and token != old_token and t >= moment]
        return min(times) - moment if times else None

    def broker_back_after(self, moment: float, everyone: bool = False) -> float | None:
        """Seconds from *moment* until the broker answered again (with *everyone*: and
        listed every stream of the site alive: all producers had registered again)."""
        with self.lock:
            times = [t for t, all_alive in self.answered
                     if t > moment and (all_alive or not everyone)]
        return min(times) - moment if times else None

    def relay_back_after(self, moment: float, old_pid: int | None) -> float | None:
        with self.lock:
            times = [t for pid, t in self.relay_seen.items() if pid != old_pid and t >= moment]
        return min(times) - moment if times else None

    def published(self, stream: str) -> int:
        with self.lock:
            return sum(n for (name, _), n in self.frames.items() if name == stream)


class Site:
    """Hosts, keys, media, the RTSP camera, `framebus up` and every agent; closed in one go."""

    def __init__(self, work: Path, shm_size: str, seed: int) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.hosts = TwoHosts(("soak-a", "soak-b"), shm_size=shm_size)
        self.up: subprocess.Popen | None = None
        self.up_log = self.logs / "up.log"
        self.camera: RtspServer | None = None
        self.consumers: dict[str, Consumer] = {}
        self.observer: Observer | None = None
        self.liar: Agent | None = None

    @property
    def a(self) -> Host:
        return self.hosts.a

    @property
    def b(self) -> Host:
        return self.hosts.b

    def local_env(self) -> dict[str, str]:
        return {"FRAMEBUS_BROKER": f"tcp://127.0.0.1:{BROKER_PORT}"}

    def remote_env(self) -> dict[str, str]:
        return {"FRAMEBUS_BROKER": f"tcp://{self.a.address}:{BROKER_PORT}",
                "FRAMEBUS_KEYS": str(self.work / "keys" / "client")}

    # -- start --

    def start(self) -> None:
        self.hosts.start()
        clip = media.encode(self.work / "clip.mp4", CLIP_FRAMES, *CLIP_SIZE, CLIP_FPS)
        server_keys = self._make_keys()
        site = self.work / "site.toml"
        site.write_text(site_file(clip, server_keys, self.a.address))
        self.camera = RtspServer(port=RTSP_PORT, popen=self.a.popen, size=(320, 240), fps=25,
                                 pattern="bars")
        self.camera.start()
        self.start_up(site)
        self.observer = Observer(self.a, self.local_env(), self.logs)
        self.observer.start()
        self.liar = Agent("liar-producer", self.a, [str(BENCH / "soak_liar.py"), "liar",
                                                    "--seed", str(self.seed)],
                          self.local_env(), self.logs)
        self.liar.start()
        for plan in CONSUMERS:
            host, env = (self.a, self.local_env()) if plan.host == "a" else (
                self.b, self.remote_env())
            self.consumers[plan.name] = Consumer(plan, host, env, self.logs)
            self.consumers[plan.name].start()

    def start_up(self, site: Path | None = None) -> None:
        site = site or self.work / "site.toml"
        with open(self.up_log, "a") as stderr:
            self.up = self.a.popen([PYTHON, "-m", "framebus", "up", str(site)],
                                   env=self.local_env(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)

    def _make_keys(self) -> Path:
        """The site's server pair and one client's, the client admitted by both servers."""
        root = self.work / "keys"
        server, client = root / "server", root / "client"
        curve.generate("server", server)
        curve.generate("client", client)
        (server / "authorized").mkdir(mode=0o700)
        shutil.copy(client / "client.key", server / "authorized" / "client.key")
        shutil.copy(server / "server.key", client / "server.key")
        return server

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every stream is alive and every consumer has had a frame."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = [s for s in (*STREAMS, "liar") if not self.observer.token(s)]
            waiting += [c.name for c in self.consumers.values() if c.last is None]
            if not waiting:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the site did not come up within {timeout:.0f} s: still waiting "
                           f"for {', '.join(waiting)}; logs in {self.logs}")

    # -- find --

    def pids(self) -> dict[str, int]:
        """The framebus services of host A by role: up, broker, relay, decoder:NAME."""
        found = {}
        for pid in self.a.pids():
            role = role_of(pid)
            if role:
                found[role] = pid
        return found

    def pid(self, role: str) -> int | None:
        return self.pids().get(role)

    def revive_crashed(self) -> None:
        """Restart a reader that died on its own: a broken promise, counted, but the soak
        goes on judging the rest."""
        for consumer in self.consumers.values():
            if consumer.proc is not None and consumer.proc.poll() is not None:
                log.error("reader %s died on its own (exit status %s); see %s",
                          consumer.name, consumer.proc.returncode, consumer.log_path)
                consumer.crashes += 1
                consumer.restart()

    def agents(self) -> list[Agent]:
        return [a for a in (self.observer, self.liar, *self.consumers.values()) if a]

    # -- what is left --

    def leftovers(self) -> list[str]:
        """Rings in A's /dev/shm and socket files in A's runtime directory."""
        shm = [f"/dev/shm/{p.name}" for p in self.a.shm.iterdir()]
        run = self.a.view(self.a.runtime_dir)
        return shm + [f"{self.a.runtime_dir}/{p.name}" for p in run.iterdir()]

    # -- stop --

    def stop_up(self, timeout: float = 20.0) -> int | None:
        if self.up is None or self.up.poll() is not None:
            return None if self.up is None else self.up.returncode
        self.up.terminate()
        try:
            return self.up.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("framebus up did not stop within %.0f s", timeout)
            self.up.kill()
            return self.up.wait()

    def close(self) -> None:
        for agent in self.agents():
            agent.stop()
        self.stop_up()
        if self.camera is not None:
            self.camera.close()
        self.hosts.close(check=False)
