"""Benchmark: decoding 1080p H.264, plain PyAV and OpenCV against `framebus decode`.

The benchmark first encodes its own test video (1080p H.264, libx264 yuv420p, 25 fps, a key
frame every 2 s as a camera sends, a moving busy picture with film grain, so decoding is
real work) into a temporary directory. Then:

  throughput  frames/s decoding the file as fast as possible, every system in a process of
              its own, --runs times, the systems interleaved so that other work on the
              machine spoils them alike:
                PyAV, decode only (threads AUTO): the reference of what decoding costs;
                PyAV, decode + frame.to_ndarray(format="bgr24"), the way people write it;
                cv2.VideoCapture(file).read() in a loop;
                `framebus decode FILE --fast` (the real command, a subprocess) into the bus,
                counted by one subscriber process in mode "all", per --formats.
  capacity    the number of 25 fps 1080p streams played in real time by
              `framebus decode FILE --loop --threads 1`, two subscriber processes each
              (mode "latest"), that this machine sustains: every subscriber >= 24 fps and no
              frame older than 100 ms when read. N = 2, 3, ... until a level fails.

framebus gets a private broker on a free loopback port, a shared-memory prefix and a socket
directory of its own, so that the cleanup (children, rings, sockets, the video) is exact,
on Ctrl-C and on failure too.

Why framebus is timed over passes of a looping file: a subscriber started before its producer
finds it through the broker, which it asks every 0.5 s, and ZeroMQ drops descriptors sent
before the subscription arrives. On a file that decodes in about a second, that is a good
part of the file gone before the subscriber joins (measured: 5 to 100 of 200 frames). So the
decoder runs with --fast --loop, and the subscriber times whole passes after the one in which
it joined: from the first frame of a pass to the first frame of the pass MEASURED_PASSES
later, checking that it received every frame in between.

From the repository root:

    .venv/bin/python -m bench.decode [--seconds 8] [--video-seconds 10] [--runs 3]
                                     [--max-streams 10] [--formats bgr24,yuv420p]
                                     [--skip-capacity] [--no-threads0] [--markdown]

The pieces: settings.py (the video's format, the criteria), video.py (the test video),
children.py (the spawned processes and CPU accounting), crew.py (what the main process
owns and cleans up), throughput.py, capacity.py, report.py (tables, targets, notes) and
__main__.py (the command line).
"""

