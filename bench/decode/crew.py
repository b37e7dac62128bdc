"""What the decode benchmark's main process owns: the temporary directory, the broker, the
`framebus decode` subprocesses, the spawned children of one measurement, and the cleanup."""

from __future__ import annotations

import os
import queue as queue_module
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.live import Live
from rich.text import Text

from bench.common import STOP_TIMEOUT, ThreadBroker, free_port, sweep_rings
from bench.decode.children import child_entry
from bench.decode.settings import err
from bench.decode.video import Video
from framebus.support.children import framebus_command, spawn, stop_all


@dataclass
class Decoder:
    """One `framebus decode` subprocess and its log."""

    name: str
    argv: list[str]
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Bench:
    """A temp dir (video, decoder logs, descriptor sockets), a broker on a free loopback port
    and a shared-memory prefix of this run's own, so the cleanup touches nothing else."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="fbdecode-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        runtime = self.tmp / "run"
        runtime.mkdir(mode=0o700)
        self.prefix = f"fbdecode{os.getpid()}"
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # Children, spawned and subprocess alike, inherit these.
        os.environ.update(FRAMEBUS_BROKER=self.address, FRAMEBUS_SHM_PREFIX=self.prefix,
                          FRAMEBUS_RUNTIME_DIR=str(runtime))
        self.decoders: list[Decoder] = []
        self.leftovers: list[str] = []  # rings a stopped decoder left behind
        self.broker = ThreadBroker(self.address)

    def start_broker(self) -> None:
        self.broker.start()

    def start_decoder(self, video: Video, name: str, *options: str) -> Decoder:
        args = ["decode", str(video.path), "--name", name, *options]
        log = self.logs / f"{name}.log"
        # spawn(): a session of its own, so a Ctrl-C at the terminal reaches this process only,
        # which stops the decoders in order; and `framebus decode` asks the kernel for SIGTERM
        # should this process die without stopping it (as under `framebus up`).
        with open(log, "wb") as out:
            proc = spawn(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        decoder = Decoder(name, framebus_command(args), proc, log)
        self.decoders.append(decoder)
        return decoder

    def stop_decoders(self, decoders: list[Decoder], patience: float = 5.0) -> None:
        """SIGTERM all at once (they unlink their rings on the way out), then wait up to
        *patience* seconds; kill what does not stop in time."""
        stop_all([d.proc for d in decoders], timeout=patience)

    def sweep(self) -> None:
        """Unlink any ring of this run still in /dev/shm, and note it (a framebus bug when
        its decoder stopped cleanly)."""
        self.leftovers += sweep_rings(self.prefix)

    def close(self) -> None:
        self.stop_decoders(self.decoders)
        self.broker.stop()
        self.sweep()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Crew:
    """The processes of one measurement: spawned children and decoder subprocesses, stopped
    and swept when the measurement ends, however it ends."""

    def __init__(self, bench: Bench, mp, lifetime: float) -> None:
        self.bench, self.mp = bench, mp
        self.queue, self.stop = mp.Queue(), mp.Event()
        # A bound on every child's life, should this process die without stopping them.
        self.deadline = time.time() + lifetime
        self.children: list = []
        self.decoders: list[Decoder] = []

    def spawn(self, target: Callable, role, *args) -> None:
        proc = self.mp.Process(target=child_entry, args=(target, self.queue, role, *args),
                               name=f"bench-{role}")
        proc.start()
        self.children.append(proc)

    def decode(self, video: Video, name: str, *options: str) -> Decoder:
        decoder = self.bench.start_decoder(video, name, *options)
        self.decoders.append(decoder)
        return decoder

    def pids(self) -> tuple[list[int], list[int]]:
        return [d.proc.pid for d in self.decoders], [c.pid for c in self.children]

    def check(self) -> None:
        """Raise if a child crashed or a decoder stopped: they all run until told to stop."""
        crashed = [c.name for c in self.children if c.exitcode not in (None, 0)]
        if crashed:
            raise RuntimeError(f"{', '.join(crashed)} died")
        for d in self.decoders:
            if d.proc.poll() is not None:
                raise RuntimeError(f"`framebus decode` of {d.name} exited with status "
                                   f"{d.proc.returncode}:\n{d.tail()}")

    def collect(self, kind: str, count: int, timeout: float,
                on_tick: Callable | None = None) -> dict:
        """Wait for *count* messages of *kind*, by role, passing live figures to *on_tick*."""
        got: dict = {}
        end = time.monotonic() + timeout
        while len(got) < count:
            msg = self._next(end, on_tick)
            if msg is None:
                raise RuntimeError(f"timed out waiting for '{kind}' ({len(got)} of {count})")
            if msg[0] == kind:
                got[msg[1]] = msg[2]
        return got

    def wait(self, seconds: float, on_tick: Callable | None = None) -> None:
        """Let *seconds* pass, taking live figures and noticing failures meanwhile."""
        end = time.monotonic() + seconds
        while self._next(end, on_tick) is not None:
            pass

    def _next(self, end: float, on_tick: Callable | None) -> tuple | None:
        """The next message other than a tick, or None at *end*; raises on a failure."""
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            try:
                kind, role, payload = self.queue.get(timeout=min(0.2, remaining))
            except queue_module.Empty:
                self.check()
                if on_tick is not None:
                    on_tick(None, None)
                continue
            if kind == "error":
                raise RuntimeError(f"{role} failed:\n{payload}")
            if kind == "tick":
                if on_tick is not None:
                    on_tick(role, payload)
                continue
            return kind, role, payload

    def close(self) -> None:
        self.stop.set()
        self.bench.stop_decoders(self.decoders)
        stop_all(self.children, STOP_TIMEOUT, patience=5.0)
        self.queue.close()
        self.bench.sweep()

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Ticker:
    """Live figures on stderr: redrawn in place on a terminal, a line every few seconds
    in a log."""

    def __init__(self, every: float = 2.0) -> None:
        self.live = Live(console=err, transient=True, refresh_per_second=4) \
            if err.is_terminal else None
        self.every, self.next = every, time.monotonic() + every

    def update(self, text: str) -> None:
        if self.live is not None:
            self.live.update(Text(text))
        elif time.monotonic() >= self.next:
            self.next = time.monotonic() + self.every
            err.print(f"    {text}", highlight=False)

    def __enter__(self) -> Ticker:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
