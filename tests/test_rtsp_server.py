"""The test suite's RTSP server, read the way framebus's decoder workers read cameras: with
PyAV, over RTSP/TCP. A live stream at the expected size and rate, an error or end of stream
soon after the server is killed (never a hang), and the same URL readable again after a
restart on the same port."""

from __future__ import annotations

import signal
import socket
import time

import av
import numpy as np
import pytest
from conftest import require_rtsp

from framebus.testing.rtsp import PYAV_OPTIONS, RtspServer

FPS = 25


def open_rtsp(url: str) -> av.container.InputContainer:
    # PYAV_OPTIONS' `timeout` bounds each socket read in FFmpeg; PyAV's own (open, read)
    # timeout is a second bound, on the whole open and on each read.
    return av.open(url, options=PYAV_OPTIONS, timeout=(10, 5))


def first_frames(container, count: int) -> list[tuple[float, av.VideoFrame]]:
    """The first `count` decoded frames, each with the monotonic time it arrived."""
    frames = []
    for frame in container.decode(video=0):
        frames.append((time.monotonic(), frame))
        if len(frames) == count:
            return frames
    raise AssertionError(f"the stream ended after {len(frames)} frames")


def test_live_stream_decodes_at_size_and_rate(rtsp_server):
    t0 = time.monotonic()
    with open_rtsp(rtsp_server.url) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = first_frames(container, 2 * FPS)
    print(f"first frame {frames[0][0] - t0:.2f} s after opening")
    assert frames[0][0] - t0 < 5, "no picture within 5 s of connecting"
    assert frames[0][1].key_frame, "the stream did not start on a key frame"
    assert {(f.width, f.height) for _, f in frames} == {(320, 240)}

    # Live, in real time. The server starts its pipeline for this first client, so frame i
    # cannot exist before i/25 s after opening began; FFmpeg's probing during open delivers the
    # first ones in a burst, then they come as they are made, 1/25 s apart in presentation
    # time (FFmpeg gives the very first frame no pts).
    for i, (arrived, _) in enumerate(frames):
        assert arrived - t0 > i / FPS - 0.1, f"frame {i} came {arrived - t0:.2f} s after open"
    assert frames[-1][0] - t0 < len(frames) / FPS + 3, "the stream is slower than 25 fps"
    pts = [float(f.pts * f.time_base) for _, f in frames if f.pts is not None]
    assert len(pts) >= len(frames) - 1
    assert np.allclose(np.diff(pts), 1 / FPS, atol=0.005), pts

    # A moving pattern, not a still picture.
    a, b = (f.to_ndarray(format="gray") for _, f in (frames[-FPS], frames[-1]))
    assert np.abs(a.astype(int) - b).sum() > 0


def test_reader_notices_killed_server_then_reads_it_again_after_restart(rtsp_server):
    url = rtsp_server.url
    with open_rtsp(url) as container:
        first_frames(container, 5)
        rtsp_server.kill()
        killed = time.monotonic()
        # Whatever was already buffered may still be decoded; then an error or the end.
        try:
            for _ in container.decode(video=0):
                assert time.monotonic() - killed < 5, "frames still coming 5 s after SIGKILL"
        except (av.FFmpegError, OSError):
            pass
        noticed = time.monotonic() - killed
    print(f"reader noticed the killed server after {noticed:.2f} s")
    assert noticed < 5

    started = time.monotonic()
    rtsp_server.start()
    assert rtsp_server.url == url
    with open_rtsp(url) as container:
        at, frame = first_frames(container, 1)[0]
        assert (frame.width, frame.height) == (320, 240)
    to_picture = at - started
    print(f"restarted server: first frame {to_picture:.2f} s after start()")
    assert to_picture < 10


def test_clients_reconnect_to_a_running_server(rtsp_server):
    # A shared media: the second client joins a running pipeline, or restarts it once the
    # first has left, and gets a picture either way.
    with open_rtsp(rtsp_server.url) as one:
        first_frames(one, 3)
        with open_rtsp(rtsp_server.url) as two:
            first_frames(two, 3)
    with open_rtsp(rtsp_server.url) as three:
        first_frames(three, 3)


def test_sigterm_stops_the_server_cleanly_and_ends_the_stream(rtsp_server):
    with open_rtsp(rtsp_server.url) as container:
        first_frames(container, 3)
        assert rtsp_server.stop() == 0, rtsp_server.stderr()
        stopped = time.monotonic()
        try:
            for _ in container.decode(video=0):
                assert time.monotonic() - stopped < 5
        except (av.FFmpegError, OSError):
            pass
    assert "stopping (SIGTERM)" in rtsp_server.stderr()


def test_server_exits_when_its_parent_goes_away(rtsp_server):
    # Its standard input is a pipe from the test process: closed, as when that dies.
    rtsp_server.proc.stdin.close()
    assert rtsp_server.proc.wait(10) == 0
    assert "standard input closed" in rtsp_server.stderr()


def test_open_times_out_on_a_silent_server():
    # FFmpeg's `timeout` option alone (no PyAV timeout) ends the wait for an RTSP answer.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        options = dict(PYAV_OPTIONS, timeout="1000000")
        started = time.monotonic()
        with pytest.raises((av.FFmpegError, OSError)):
            av.open(f"rtsp://127.0.0.1:{port}/live", options=options)
        assert 0.8 < time.monotonic() - started < 4


def test_start_fails_clearly_when_the_port_is_taken():
    require_rtsp()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RtspServer(port=taken.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="cannot listen") as error:
                server.start()
            assert "exited with status 1" in str(error.value)
            assert not server.running()
        finally:
            server.close()


def test_signals_reach_only_a_running_server():
    require_rtsp()
    server = RtspServer()
    try:
        server.start()
        pid = server.proc.pid
        server.kill()
        assert server.proc.returncode == -signal.SIGKILL
        server.kill()  # again: a no-op, never a signal to a reused pid
        server.start()
        assert server.proc.pid != pid and server.running()
    finally:
        server.close()
    assert server.proc is None
