"""Many streams into one consumer process (issue 11, section 3): the CPU each delivered
frame costs the consumer, and the latency p99, for each way of consuming them.

32 streams of 640x480 bgr24 at 25 fps (800 frames/s in all), published by a few producer
processes (each frame written in place, so the producers cost little of the machine's two
cores), at phases spread over the frame period, as cameras are. One consumer process takes
every stream, by one of:

- ``multi``: framebus.MultiSubscriber, one thread;
- ``asyncio``: framebus.aio.MultiSubscriber, one task on asyncio's own loop;
- ``uvloop``: the same on uvloop;
- ``threads``: 32 threads, each with its own framebus.Subscriber;
- ``iceoryx2``: the peer: iceoryx2's Python binding, a publish-subscribe service (loaned
  samples of the same size, written in place) and an event service per stream, and one
  WaitSet over the 32 listeners.

Each consumer reads a byte of every frame's pixels through a numpy view, and measures the
latency from the producer's clock at commit (framebus: the descriptor's timestamp_ns;
iceoryx2: the clock written into the sample just before send()) to its own clock once it
holds the view. Its CPU is its process's user + system time (every thread: ZeroMQ's I/O
threads too) over the measured seconds.

Run from the repository root: ``python -m bench.many [--seconds 10] [--systems ...]
[--markdown]``. Prints the load average beside the figures: on two cores shared with
other work, CPU per frame is the steadier figure.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import tempfile
import threading
import time
from multiprocessing import get_context

import click
import numpy as np
from rich.console import Console

from bench.bus.children import child_entry
from bench.common import (
    STOP_TIMEOUT,
    ThreadBroker,
    collect,
    free_port,
    markdown_table,
    parse_systems,
    start_process,
    sweep_rings,
)
from framebus.support.children import stop_all

SYSTEMS = ("multi", "asyncio", "uvloop", "threads", "iceoryx2")
SHM_PREFIX = "fbbench-many"
STARTUP_TIMEOUT = 60.0
console = Console()


# -- producers --------------------------------------------------------------------------------

class FramebusSource:
    def __init__(self, name: str, shape: tuple[int, int, int], broker: str) -> None:
        import framebus

        self.pub = framebus.Publisher(name, shape=shape, fmt="bgr24", slots=8, broker=broker)

    def send(self, seq: int) -> None:
        with self.pub.frame() as buf:  # in place: the timestamp is taken at commit
            buf[0, 0, 0] = seq & 255

    def close(self) -> None:
        self.pub.close()


def _picture(shape: tuple[int, int, int]) -> type[ctypes.Structure]:
    class Picture(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint64), ("t_ns", ctypes.c_int64),
                    ("pixels", ctypes.c_uint8 * int(np.prod(shape)))]
    return Picture


class IceoryxSource:
    def __init__(self, name: str, shape: tuple[int, int, int], broker: str) -> None:
        import iceoryx2 as iox2

        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        service = iox2.ServiceName.new(f"{SHM_PREFIX}/{name}")
        pubsub = self.node.service_builder(service).publish_subscribe(_picture(shape)) \
            .open_or_create()
        event = self.node.service_builder(service).event().open_or_create()
        self.publisher = pubsub.publisher_builder().create()
        self.notifier = event.notifier_builder().create()

    def send(self, seq: int) -> None:
        sample = self.publisher.loan_uninit()
        picture = sample.payload().contents
        picture.pixels[0] = seq & 255
        picture.seq = seq
        picture.t_ns = time.time_ns()
        sample.assume_init().send()
        self.notifier.notify()

    def close(self) -> None:
        self.publisher.delete()
        self.notifier.delete()
        self.node.delete()


def producer_process(queue, system: str, names: list[str], shape, fps: float, broker: str,
                     stop, deadline: float) -> None:
    kind = IceoryxSource if system == "iceoryx2" else FramebusSource
    sources = [kind(name, shape, broker) for name in names]
    try:
        queue.put(("up", names[0], None))
        period, start = 1.0 / fps, time.monotonic()
        # Each stream at its own phase, spread over the period, as unsynchronised cameras.
        phases = [period * i / len(sources) for i in range(len(sources))]
        seq = 0
        while not stop.is_set() and time.time() < deadline:
            for source, phase in zip(sources, phases):
                due = start + seq * period + phase
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                source.send(seq)
            seq += 1
    finally:
        for source in sources:
            source.close()


# -- consumers --------------------------------------------------------------------------------

class Tally:
    """What a consumer measures while `measuring` is set: frames, latencies, CPU."""

    def __init__(self) -> None:
        self.measuring = False
        self.latencies: list[int] = []
        self.seen: set[str] = set()
        self.seqs: dict[str, list[int]] = {}  # stream: [first seq, last seq, frames]

    def frame(self, stream: str, seq: int, t_ns: int, first_byte: int) -> None:
        if self.measuring:
            self.latencies.append(time.time_ns() - t_ns)
            if (s := self.seqs.get(stream)) is None:
                self.seqs[stream] = [seq, seq, 1]
            else:
                s[1], s[2] = seq, s[2] + 1
        else:
            self.seen.add(stream)

    def lost(self) -> int:
        """Frames missed between the first and the last of each stream while measuring."""
        return sum(last - first + 1 - n for first, last, n in list(self.seqs.values()))


def consumer_process(queue, system: str, names: list[str], broker: str, go, seconds: float,
                     deadline: float) -> None:
    tally = Tally()
    stop = threading.Event()

    def control() -> None:
        """Tell the main process once every stream delivered; measure between go and the end."""
        while len(tally.seen) < len(names):
            if time.time() > deadline:
                return
            time.sleep(0.05)
        queue.put(("ready", "consumer", None))
        go.wait(STARTUP_TIMEOUT)
        cpu0, t0 = time.process_time(), time.monotonic()
        tally.measuring = True
        time.sleep(seconds)
        tally.measuring = False
        cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
        stop.set()
        queue.put(("result", "consumer", {"cpu": cpu, "elapsed": elapsed, "lost": tally.lost(),
                                          "latencies": np.array(tally.latencies, np.int64)}))

    threading.Thread(target=control, daemon=True).start()
    CONSUMERS[system](names, broker, tally, stop)


def consume_multi(names, broker, tally, stop) -> None:
    import framebus

    with framebus.MultiSubscriber(names, broker=broker) as subs:
        while not stop.is_set():
            try:
                frame = subs.recv(timeout=0.2)
            except framebus.Timeout:
                continue
            tally.frame(frame.stream, frame.seq, frame.timestamp_ns, frame.array[0, 0, 0])


def _consume_aio(names, broker, tally, stop, loop_factory) -> None:
    import framebus
    from framebus import aio

    async def main() -> None:
        async with aio.MultiSubscriber(names, broker=broker) as subs:
            while not stop.is_set():
                try:
                    frame = await subs.recv(timeout=0.2)
                except framebus.Timeout:
                    continue
                tally.frame(frame.stream, frame.seq, frame.timestamp_ns, frame.array[0, 0, 0])

    loop = loop_factory()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def consume_asyncio(names, broker, tally, stop) -> None:
    _consume_aio(names, broker, tally, stop, asyncio.new_event_loop)


def consume_uvloop(names, broker, tally, stop) -> None:
    import uvloop

    _consume_aio(names, broker, tally, stop, uvloop.new_event_loop)


def consume_threads(names, broker, tally, stop) -> None:
    import framebus

    def one(name: str) -> None:
        with framebus.Subscriber(name, broker=broker) as sub:
            while not stop.is_set():
                try:
                    frame = sub.recv(timeout=0.2)
                except framebus.Timeout:
                    continue
                tally.frame(frame.stream, frame.seq, frame.timestamp_ns, frame.array[0, 0, 0])

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def consume_iceoryx2(names, broker, tally, stop) -> None:
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    waitset = iox2.WaitSetBuilder.new().create(iox2.ServiceType.Ipc)
    shape = (480, 640, 3)
    streams, guards = {}, []  # the guards detach their listener when they go: keep them
    for name in names:
        service = iox2.ServiceName.new(f"{SHM_PREFIX}/{name}")
        pubsub = node.service_builder(service).publish_subscribe(_picture(shape)) \
            .open_or_create()
        event = node.service_builder(service).event().open_or_create()
        listener = event.listener_builder().create()
        guard = waitset.attach_notification(listener)
        guards.append(guard)
        streams[iox2.WaitSetAttachmentId.from_guard(guard)] = (
            name, pubsub.subscriber_builder().create(), listener)
    timeout = iox2.Duration.from_millis(200)
    while not stop.is_set():
        woken, _ = waitset.wait_and_process_with_timeout(timeout)
        for attachment in woken:
            name, subscriber, listener = streams[attachment]
            while listener.try_wait():
                pass
            while (sample := subscriber.receive()) is not None:
                picture = sample.payload().contents
                view = np.ctypeslib.as_array(picture.pixels)
                tally.frame(name, picture.seq, picture.t_ns, view[0])
                sample.delete()


CONSUMERS = {"multi": consume_multi, "asyncio": consume_asyncio, "uvloop": consume_uvloop,
             "threads": consume_threads, "iceoryx2": consume_iceoryx2}


# -- one system, from the main process --------------------------------------------------------

def run_system(mp, system: str, streams: int, producers: int, fps: float, seconds: float,
               broker: str) -> dict:
    names = [f"many{os.getpid()}-{system}-{i}" for i in range(streams)]
    queue, go, stop = mp.Queue(), mp.Event(), mp.Event()
    deadline = time.time() + 2 * STARTUP_TIMEOUT + seconds + 30
    procs: list = []
    shape = (480, 640, 3)
    load = os.getloadavg()
    try:
        for p in range(producers):
            procs.append(start_process(mp, child_entry, producer_process, queue, f"producer{p}",
                                       system, names[p::producers], shape, fps, broker, stop,
                                       deadline))
        collect(queue, "up", producers, procs, STARTUP_TIMEOUT)
        procs.append(start_process(mp, child_entry, consumer_process, queue, "consumer", system,
                                   names, broker, go, seconds, deadline))
        collect(queue, "ready", 1, procs, STARTUP_TIMEOUT)
        go.set()
        result = collect(queue, "result", 1, procs, seconds + 30)["consumer"]
    finally:
        stop.set()
        stop_all(procs, STOP_TIMEOUT, patience=5.0)
        queue.close()
    lat = result["latencies"]
    frames = len(lat)
    return {"system": system, "frames": frames, "lost": result["lost"],
            "offered": streams * fps * result["elapsed"],
            "cpu_ms": 1e3 * result["cpu"] / max(1, frames),
            "cores": result["cpu"] / result["elapsed"],
            "p50": float(np.percentile(lat, 50)) / 1e6 if frames else None,
            "p99": float(np.percentile(lat, 99)) / 1e6 if frames else None,
            "load": (load[0], os.getloadavg()[0])}


def _row(r: dict) -> list[str]:
    def ms(v):
        return "-" if v is None else f"{v:.2f}"
    return [r["system"], f"{r['frames']:,} / {r['offered']:,.0f}", f"{r['lost']:,}",
            f"{r['cpu_ms']:.3f}",
            f"{r['cores']:.2f}", ms(r["p50"]), ms(r["p99"]),
            f"{r['load'][0]:.2f} → {r['load'][1]:.2f}"]


COLUMNS = ["system", "frames delivered / offered", "lost", "consumer CPU ms/frame",
           "consumer cores", "latency p50 ms", "latency p99 ms", "load (1 min) before → after"]


@click.command()
@click.option("--streams", default=32, show_default=True)
@click.option("--producers", default=4, show_default=True, help="producer processes")
@click.option("--fps", default=25.0, show_default=True)
@click.option("--seconds", default=10.0, show_default=True, help="measured, per system")
@click.option("--systems", default=",".join(SYSTEMS), show_default=True,
              callback=parse_systems(SYSTEMS))
@click.option("--markdown", is_flag=True, help="print the table as Markdown")
def main(streams: int, producers: int, fps: float, seconds: float, systems: list[str],
         markdown: bool) -> None:
    """One process consumes many 640x480 streams: CPU per frame and latency, per way."""
    runtime_dir = tempfile.mkdtemp(prefix="fbbench-many-")
    os.environ["FRAMEBUS_SHM_PREFIX"] = SHM_PREFIX  # the children inherit both
    os.environ["FRAMEBUS_RUNTIME_DIR"] = runtime_dir
    address = f"tcp://127.0.0.1:{free_port()}"
    broker = ThreadBroker(address)
    broker.start()
    mp = get_context("spawn")
    rows = []
    console.print(f"{streams} streams of 640x480 bgr24 at {fps:g} fps, {producers} producer "
                  f"processes, {seconds:g} s per system, {os.cpu_count()} cores; "
                  f"uptime: {_uptime()}")
    try:
        for system in systems:
            missing = {"iceoryx2": "iceoryx2", "uvloop": "uvloop"}.get(system)
            if missing and not _importable(missing):
                rows.append([system, f"not installed (pip install {missing})", *["-"] * 6])
                continue
            r = run_system(mp, system, streams, producers, fps, seconds, address)
            rows.append(_row(r))
            console.print("  " + " | ".join(rows[-1]), highlight=False)
    finally:
        broker.stop()
        sweep_rings(SHM_PREFIX)
        shutil.rmtree(runtime_dir, ignore_errors=True)
    if markdown:
        print(markdown_table(COLUMNS, rows, left=["system"]))
    else:
        from rich.table import Table

        table = Table(*COLUMNS)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"uptime after: {_uptime()}")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _uptime() -> str:
    with open("/proc/loadavg") as f:
        return "load average " + ", ".join(f.read().split()[:3])


if __name__ == "__main__":
    main()
