#!/usr/bin/python3
"""A live H.264 RTSP server for the test suite, on GStreamer's RTSP server.

Run by Debian's own /usr/bin/python3 (it needs python3-gi and GStreamer from Debian's
packages; the project's virtualenv has neither), and so it imports nothing of framebus:

    /usr/bin/python3 framebus/testing/rtsp_server.py --port 8554 --path /live --size 320x240 \
        --fps 25

serves a moving test pattern as H.264 at rtsp://127.0.0.1:8554/live (loopback only). All
clients share one encoder. A key frame every second, with SPS/PPS before each, lets a client
that (re)connects decode within a second. Once it listens it prints one line,
`ready rtsp://127.0.0.1:PORT/PATH`; with --port 0 the kernel picks the port and that line
tells which. SIGTERM or SIGINT stops it with exit status 0; with --stdin-watchdog it also
stops when its standard input closes, so it never outlives a test run that was killed.

With `--clip FILE.mp4 --mounts N` it serves instead a pre-encoded H.264 clip (an MP4, as
framebus.testing.media writes) at N mounts PATH0 .. PATH{N-1}, each its own pipeline of
demuxer and payloader and nothing else: no decoding, no encoding, so that one server can
stand for dozens of cameras without swamping the machine. The clip plays at its own timing
and ends (a clip long enough for the run is the caller's: bench/cameras.py makes one by
repeating a short clip's packets, without encoding).

`--check` only tells whether this machine can run it: exit status 0, or 1 with the reason.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

# What the pipeline needs, and the Debian package that has each element.
ELEMENTS = {
    "videotestsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "rtpbin": "gstreamer1.0-plugins-good",
    "qtdemux": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
}


def log(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)  # noqa: T201 (a program)


def load_gstreamer():
    """(Gst, GstRtspServer, GLib), or raise RuntimeError saying what is missing."""
    try:
        import gi  # type: ignore[import-not-found]  # Debian's python3-gi, not in the venv

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]
    except (ImportError, ValueError) as e:
        raise RuntimeError(f"GStreamer's RTSP server is not importable ({e}); "
                           "needs python3-gi and gir1.2-gst-rtsp-server-1.0") from None
    Gst.init(None)
    missing = sorted(f"{name} ({package})" for name, package in ELEMENTS.items()
                     if Gst.ElementFactory.find(name) is None)
    if missing:
        raise RuntimeError(f"missing GStreamer elements: {', '.join(missing)}")
    return Gst, GstRtspServer, GLib


def size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"size must be positive and even, got {text!r}")
    return width, height


def path(text: str) -> str:
    if not text.startswith("/") or len(text) < 2 or any(c in text for c in " ?#"):
        raise argparse.ArgumentTypeError(f"expected a path like /live, got {text!r}")
    return text


#: What the server shows. ball: a ball that moves every frame. bars: SMPTE colour bars that
#: scroll sideways 4 pixels a frame; each bar is the same from top to bottom within a band,
#: so a frame that mixes two frames (a tear) shows as rows that disagree.
PATTERNS = {"ball": "pattern=ball", "bars": "pattern=smpte horizontal-speed=4"}


def launch_line(width: int, height: int, fps: int, bitrate_kbps: int,
                pattern: str = "ball") -> str:
    # key-int-max=fps gives a key frame each second, and config-interval=1 repeats SPS/PPS
    # in-band, so a client joining late needs nothing else.
    return (
        f"( videotestsrc is-live=true {PATTERNS[pattern]} "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        f"bitrate={bitrate_kbps} "
        f"! video/x-h264,profile=constrained-baseline "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def clip_line(clip: str) -> str:
    # No decoder, no encoder: the file's packets demuxed, parsed (SPS/PPS put in-band
    # before each key frame, as a camera sends them) and payloaded. The RTSP server's
    # sinks sync on the clock, so the clip plays at its own timing.
    location = clip.replace("\\", "\\\\").replace('"', '\\"')
    return (f'( filesrc location="{location}" ! qtdemux ! h264parse config-interval=-1 '
            f"! rtph264pay name=pay0 pt=96 config-interval=-1 )")


def mount_paths(base: str, mounts: int, clip: str | None) -> list[str]:
    """One mount at *base*, as before; with a clip or several mounts, base0, base1, ..."""
    if mounts == 1 and clip is None:
        return [base]
    return [f"{base}{i}" for i in range(mounts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a live H.264 test pattern over RTSP "
                                                 "on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8554,
                        help="TCP port; 0 lets the kernel pick one (default 8554)")
    parser.add_argument("--path", type=path, default="/live", help="mount path (default /live)")
    parser.add_argument("--size", type=size, default=(320, 240),
                        help="WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")
    parser.add_argument("--bitrate", type=int, default=1000, help="kbit/s (default 1000)")
    parser.add_argument("--pattern", choices=sorted(PATTERNS), default="ball",
                        help="what it shows (default ball)")
    parser.add_argument("--clip", default=None,
                        help="serve this pre-encoded H.264 MP4 instead of encoding a pattern")
    parser.add_argument("--mounts", type=int, default=1,
                        help="how many mounts: PATH0..PATH{N-1} (default 1, at PATH itself "
                             "unless --clip)")
    parser.add_argument("--stdin-watchdog", action="store_true",
                        help="also stop when standard input reaches end of file")
    parser.add_argument("--check", action="store_true",
                        help="only check that GStreamer and its plugins are installed")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if not 1 <= args.mounts <= 256:
        parser.error(f"--mounts must be 1..256, got {args.mounts}")
    if args.clip is not None and not os.path.isfile(args.clip):
        parser.error(f"--clip: no such file: {args.clip}")
    if not 1 <= args.fps <= 240:
        parser.error(f"--fps must be 1..240, got {args.fps}")

    try:
        Gst, GstRtspServer, GLib = load_gstreamer()
    except RuntimeError as e:
        print(e, file=sys.stdout if args.check else sys.stderr, flush=True)
        return 1
    if args.check:
        return 0

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    width, height = args.size
    line = (clip_line(args.clip) if args.clip is not None
            else launch_line(width, height, args.fps, args.bitrate, args.pattern))
    for mount in mount_paths(args.path, args.mounts, args.clip):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(line)
        factory.set_shared(True)  # one pipeline for all clients, as a camera would be
        server.get_mount_points().add_factory(mount, factory)
    server.connect("client-connected", lambda _server, _client: log("client connected"))

    # attach() binds and listens before it returns; it returns 0 when it cannot
    # (e.g. the port is taken), having logged GStreamer's reason on stderr.
    if server.attach(None) == 0:
        log(f"cannot listen on 127.0.0.1:{args.port}")
        return 1
    loop = GLib.MainLoop()

    def stop(reason: str) -> bool:
        log(f"stopping ({reason})")
        loop.quit()
        return GLib.SOURCE_REMOVE

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, stop, signal.Signals(signum).name)
    if args.stdin_watchdog:
        def stdin_event(_channel, _condition) -> bool:
            # Readable: either end of file (the parent is gone) or stray input to drain.
            if not os.read(sys.stdin.fileno(), 4096):
                return stop("standard input closed")
            return GLib.SOURCE_CONTINUE

        GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                          GLib.IOCondition.IN | GLib.IOCondition.HUP, stdin_event)

    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}{args.path}", flush=True)  # noqa: T201
    loop.run()
    # Close the clients' connections so that they see the end of the stream at once.
    server.client_filter(lambda _server, _client: GstRtspServer.RTSPFilterResult.REMOVE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
