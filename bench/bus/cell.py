"""The bus benchmark's settings and its unit of measurement, the cell: one frame size,
subscriber count and system."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from bench.common import SLOTS

SYSTEMS = ("framebus", "iceoryx2", "zmq", "imagezmq")
DEFAULT_SIZES = "640x480,1920x1080,3840x2160"
PACED_FPS = 30.0
#: High-water mark (messages) of the raw pyzmq sockets: as many frames as the framebus ring
#: holds. The default, 1000, would let a flat-out 4K stream queue gigabytes and seconds of
#: latency. imagezmq is left as it ships (1000): its socket binds before it can be tuned.
ZMQ_HWM = SLOTS
#: After the flat-out phase, subscribers get this long to take frames still in flight
#: before they stop; frames that have not arrived by then count as dropped.
GRACE = 0.5
STARTUP_TIMEOUT = 30.0
RECV_TIMEOUT = 0.05
SHM_PREFIX = "fbbench"
#: A pause between the paced and the flat-out phase. Without it the last paced frame is
#: replaced at once by the first flat-out one, and a framebus subscriber, which keeps only
#: the newest descriptor, rightly skips it.
PHASE_GAP = 0.2

err = Console(stderr=True)


# -- what one cell measures ----------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    system: str
    width: int
    height: int
    subs: int
    seconds: float
    stream: str  # framebus stream name, unique to this run and cell
    broker: str  # framebus broker endpoint

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def __str__(self) -> str:
        return f"{self.system} {self.size}, {subscribers(self.subs)}"


def subscribers(count: int) -> str:
    return f"{count} sub" if count == 1 else f"{count} subs"
