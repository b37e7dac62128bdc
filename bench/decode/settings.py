"""The decode benchmark's settings, shared by all its pieces: the test video's format, the
criteria, the timeouts, and the console progress goes to."""

from __future__ import annotations

from rich.console import Console

WIDTH, HEIGHT, FPS = 1920, 1080, 25
PRESET, CRF = "veryfast", 23
#: A key frame every this many frames, as a camera sends: 2 s.
GOP = 2 * FPS
FORMATS = ("bgr24", "yuv420p")
#: Whole passes over the looping file that a framebus throughput run times.
MEASURED_PASSES = 2
#: Ring depth of the throughput runs: a mode-"all" subscriber must never be lapped.
THROUGHPUT_SLOTS = 32
SUBS_PER_STREAM = 2
#: Capacity criteria: every subscriber gets >= 96% of the stream's rate, and no frame is
#: older than this when read.
MIN_FPS = 0.96 * FPS
MAX_AGE_MS = 100.0
CAPACITY_GOAL = 6
#: After every subscriber of a capacity level has its first frame: let the start-up burst
#: (3N Python processes importing numpy, PyAV, ZeroMQ on two cores) settle before measuring.
WARM_UP = 2.0
STARTUP_TIMEOUT = 60.0
RECV_TIMEOUT = 0.05
#: How often capacity subscribers send their live figures to the main process.
TICK = 1.0

# Progress lines unwrapped, so a log of them stays one line per event.
err = Console(stderr=True, soft_wrap=True)
