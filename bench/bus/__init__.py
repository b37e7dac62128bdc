"""Benchmark: framebus against raw pyzmq and imagezmq, one producer to N local subscribers.

Every cell of the benchmark is one (frame size, subscriber count, system). A cell starts a
producer process and N subscriber processes, publishes at 30 fps until every subscriber has
received a frame (warm-up), then runs two phases, one after the other:

  paced     30 fps, like a live camera: latency when nothing is overloaded;
  flat out  as fast as the producer can: delivered rate, drops, latency under load.

Each frame carries the producer's clock (time.time_ns(), one host, so one clock). The
subscribers only log (seq, timestamps) per frame; the main process does the arithmetic,
prints one table row per cell, then the targets (ratios between cells of this run).

From the repository root:

    .venv/bin/python -m bench.bus [--seconds 3] [--sizes 640x480,1920x1080,3840x2160]
                                  [--subs 1,4] [--systems framebus,zmq,imagezmq] [--markdown]

The pieces: cell.py (the settings, the cell), systems.py (senders and receivers),
children.py (the spawned producer and subscribers), run.py (running a cell; the broker and
namespace the main process owns), report.py (figures, tables, targets, notes) and
__main__.py (the command line).
"""
