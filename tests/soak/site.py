"""The site the soak runs (run.py): two hosts, one `framebus up`, and its watchers.

Host A (a network namespace with its own small /dev/shm, framebus.testing.netns) runs the site
under ``framebus up``: the broker, the relay, and four decoders (the test pattern, an
H.264 file twice, once as yuv420p, and a live RTSP camera served by GStreamer in A).
Beside them run a lying producer, checking subscribers, and an observer asking the broker
what it knows. Host B, across a veth, reads two streams through the relay, with CurveZMQ.

Everything here only starts, finds, and watches processes; chaos.py breaks them, run.py
gathers what happened, and report.py judges it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from framebus import keys as curve
from framebus.testing import media
from framebus.testing.netns import PYTHON, Host, TwoHosts
from framebus.testing.rtsp import RtspServer

from .agents import Agent, Consumer, ConsumerPlan, Observer, module

log = logging.getLogger("soak")

BROKER_PORT, RELAY_PORT, RTSP_PORT = 5555, 5556, 8554
CLIP_FRAMES, CLIP_FPS, CLIP_SIZE = 250, 25, (320, 240)


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
        self.observer = Observer(self.a, self.local_env(), self.logs, STREAMS)
        self.observer.start()
        self.liar = Agent("liar-producer", self.a, [*module("liar"), "liar",
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
