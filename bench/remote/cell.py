"""The remote benchmark's settings and its unit of measurement, the cell: one frame size,
system and set of consumers."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rich.console import Console

SYSTEMS = ("framebus-raw", "framebus-jpeg", "imagezmq", "zenoh", "netgear", "local")
DEFAULT_SIZES = "640x480,1920x1080"
JPEG_QUALITY = 90
SLOW_PERIOD = 0.5  # the slow consumer sleeps this long after each frame: 2 fps
WARMUP_FPS = 30.0
#: After the phases the producer goes on at this rate until the consumers have stopped, so
#: no consumer waits for a frame that never comes (NetGear's recv() has no timeout).
TAIL_FPS = 10.0
#: Between the phases, so the last paced frame is not replaced at once by a flat-out one.
PHASE_GAP = 0.3
#: After the flat-out phase, consumers get this long to take frames still in flight.
GRACE = 0.5
STARTUP_TIMEOUT = 30.0
#: Long enough that a framebus remote subscriber never gives up a credit mid-frame: a recv()
#: that times out abandons its outstanding request (RemotePath.abandon) and asks again.
RECV_TIMEOUT = 1.0
#: imagezmq's SUB queue is 1000 frames as shipped: four consumers falling behind at 1080p
#: would hold 25 GB. It is lowered to this (bench.bus's raw zmq figure) by reconnecting.
IMAGEZMQ_RCVHWM = 8
#: A Zenoh subscriber keeps the newest this many samples (bench.bus's raw zmq queue, as
#: imagezmq's); the key every Zenoh cell publishes on (each cell has its own session).
ZENOH_QUEUE = 8
ZENOH_KEY = "framebus-bench/frames"
NETGEAR_TIMEOUT = 5  # seconds without a message before a NetGear receiver gives up
STAMP = struct.Struct("<qq")  # seq, producer clock (ns): NetGear's first 16 bytes of pixels

err = Console(stderr=True)


def paced_rate(width: int, height: int) -> float:
    """The fixed rate of the paced phase: a fast camera of that size."""
    return 100.0 if width * height <= 1280 * 720 else 60.0


# -- what one cell runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    transport: str = "tcp"  # "tcp": over the network path; "shm": framebus's local path
    slow: bool = False


SOLO = (Consumer(),)
FOUR = (Consumer(), Consumer(), Consumer(), Consumer(slow=True))
SHM_ALONE = (Consumer("shm"),)
SHM_LOADED = (Consumer("shm"), Consumer(), Consumer(), Consumer(), Consumer())
SCENARIO_NAMES = {SOLO: "1", FOUR: "4 (1 slow)", SHM_ALONE: "1 shm",
                  SHM_LOADED: "1 shm + 4 tcp"}


@dataclass(frozen=True)
class Cell:
    system: str  # one of SYSTEMS but "local": those cells are framebus-raw with an shm consumer
    width: int
    height: int
    consumers: tuple[Consumer, ...]
    seconds: float
    stream: str  # framebus stream name, unique to the run and cell
    broker: str
    ports: tuple[int, ...] = ()  # netgear: the port each consumer binds
    #: The flat-out phase's rate cap (0: none, as fast as the producer can), the same for
    #: every system: what a path carries when its producer is not also spinning a core.
    flat_fps: float = 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def paced_fps(self) -> float:
        return paced_rate(self.width, self.height)

    @property
    def scenario(self) -> str:
        return SCENARIO_NAMES.get(self.consumers, f"{len(self.consumers)}")

    @property
    def local(self) -> bool:
        return any(c.transport == "shm" for c in self.consumers)

    @property
    def framebus(self) -> bool:
        return self.system.startswith("framebus")

    def __str__(self) -> str:
        return f"{self.size} {self.system}, {self.scenario}"
