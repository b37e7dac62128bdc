"""The soak's own processes in the site (site.py), each printing one JSON line of news at a
time: the checking readers (reader.py), the observer of the broker (watch.py), the liar
(liar.py). Each runs as ``python -m tests.soak.NAME`` in a host, from the repository root.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from framebus.support.children import stop
from framebus.testing.netns import PYTHON, Host

#: The repository root: where ``python -m tests.soak.NAME`` finds the package.
ROOT = Path(__file__).resolve().parent.parent.parent


def module(name: str) -> list[str]:
    """The arguments that run this package's module *name*: ``-m tests.soak.NAME``."""
    return ["-m", f"{__package__}.{name}"]


@dataclass(frozen=True)
class ConsumerPlan:
    """One checking subscriber: where it runs, what it reads and how it checks."""

    name: str
    stream: str
    args: tuple[str, ...]
    host: str = "a"
    witness: bool = False  # never SIGKILLed in the second phase: its memory is judged



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
            self.proc = self.host.popen([PYTHON, *self.argv], env=self.env, cwd=ROOT,
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
        stop(proc, timeout)
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
        super().__init__(plan.name, host, [*module("reader"), plan.stream, *plan.args], env,
                         logs)
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
    """Asks A's broker what it knows, four times a second (watch.py).

    Keeps, for every stream, the tokens seen and when each first showed up alive, and the
    frames each published; for the broker and relay, when they last answered or showed.
    """

    def __init__(self, host: Host, env: dict[str, str], logs: Path,
                 streams: tuple[str, ...]) -> None:
        super().__init__("observer", host, module("watch"), env, logs)
        self.streams = streams  # the site's: "all alive" means these
        self.first_alive: dict[tuple[str, str], float] = {}  # (stream, token) -> when
        self.frames: dict[tuple[str, str], int] = {}
        self.answered: list[tuple[float, bool]] = []  # when the broker answered; all alive?
        self.relay_seen: dict[int, float] = {}  # relay pid -> first seen alive

    def on_news(self, news: dict) -> None:
        self.latest = news
        if not news.get("ok"):
            return
        streams = news["streams"]
        everyone = all(name in streams and streams[name]["alive"] for name in self.streams)
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
