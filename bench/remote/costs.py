"""Where a remote frame's time goes: the remote path's pieces, each measured alone."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import cv2
import numpy as np
import zmq
from rich.console import Console

from bench.common import STOP_TIMEOUT, loop_rate
from bench.remote.cell import JPEG_QUALITY, STARTUP_TIMEOUT, paced_rate
from bench.remote.run import start_child
from framebus.paths.tcp import decode_jpeg
from framebus.remote.feed import encode_jpeg as relay_jpeg
from framebus.support.children import stop_all
from framebus.testsrc import TestPattern


def frame_server_process(queue, shape: tuple[int, ...], stop) -> None:
    """A ROUTER that answers each request with one raw frame, as the relay does (zero-copy)."""
    pixels = TestPattern(shape).frame(0)
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind("tcp://127.0.0.1:*")
    queue.put(("up", "server", router.last_endpoint.decode()))
    header = bytes(200)  # about a descriptor's size
    try:
        while not stop.is_set():
            if router.poll(100):
                identity, _ = router.recv_multipart()
                router.send_multipart([identity, b"frame", header, b"raw", pixels], copy=False)
    finally:
        router.close(0)
        context.term()


def wire_rate(endpoint: str, shape: tuple[int, ...], in_flight: int, seconds: float) -> float:
    """Frames/s a DEALER gets keeping *in_flight* requests outstanding (the relay's credits)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)
    request = bytes(120)  # about a `want`'s size
    try:
        for _ in range(in_flight):
            dealer.send(request)
        dealer.recv_multipart(copy=False)  # connected and warm
        dealer.send(request)
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            parts = dealer.recv_multipart(copy=False)
            np.frombuffer(parts[-1].buffer, np.uint8).reshape(shape)
            count += 1
            dealer.send(request)
        return count / elapsed
    finally:
        dealer.close(0)
        context.term()


def _per_frame_ms(step: Callable[[], object], seconds: float) -> float:
    return 1000.0 / loop_rate(step, seconds)


def path_costs(width: int, height: int, seconds: float, mp) -> dict[str, float]:
    """The remote path's pieces for one frame size, each alone (ms per frame, frames/s)."""
    shape = (height, width, 3)
    image = TestPattern(shape).frame(0)
    reused = np.empty_like(image)
    jpeg = np.frombuffer(relay_jpeg(image, "bgr24", JPEG_QUALITY), np.uint8)
    payload = memoryview(jpeg.tobytes())  # as a remote subscriber holds it
    costs = {
        "copy out, new array (relay)": _per_frame_ms(lambda: image.copy(), seconds),
        "copy out, reused buffer": _per_frame_ms(lambda: np.copyto(reused, image), seconds),
        "JPEG encode q90 (relay)": _per_frame_ms(
            lambda: relay_jpeg(image, "bgr24", JPEG_QUALITY), seconds),
        "JPEG encode q90, OpenCV": _per_frame_ms(
            lambda: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]),
            seconds),
        "JPEG decode (subscriber)": _per_frame_ms(lambda: decode_jpeg(payload), seconds),
        "JPEG decode, OpenCV": _per_frame_ms(
            lambda: cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), seconds),
        "JPEG size KB": jpeg.size / 1000,
    }
    queue, stop = mp.Queue(), mp.Event()
    server = start_child(mp, frame_server_process, queue, "server", shape, stop)
    try:
        role_kind, _, endpoint = queue.get(timeout=STARTUP_TIMEOUT)
        if role_kind != "up":
            raise RuntimeError(f"frame server failed:\n{endpoint}")
        for k in (1, 2, 4):
            costs[f"wire fps, {k} request(s) in flight"] = wire_rate(endpoint, shape, k, seconds)
    finally:
        stop.set()
        stop_all([server], STOP_TIMEOUT, patience=8.0)
        queue.close()
    return costs


def print_costs(console: Console, costs: dict[str, dict[str, float]]) -> None:
    console.print("\n[bold]The remote path's pieces, each measured alone[/] (before the cells: "
                  "ms per frame, or frames/s of a ROUTER answering each request with one raw "
                  "frame over loopback, as the relay does)")
    for size, c in costs.items():
        parts = [f"{k} {v:.2f} ms" for k, v in c.items() if not k.startswith(("wire", "JPEG s"))]
        parts.append(f"JPEG {c['JPEG size KB']:,.0f} KB")
        wires = [f"{k.split(', ')[1]}: {v:,.0f}" for k, v in c.items() if k.startswith("wire")]
        console.print(f"  {size}: " + "; ".join(parts), highlight=False)
        console.print(f"  {size}: wire fps, " + ", ".join(wires), highlight=False)
        w, h = map(int, size.split("x"))
        fps = paced_rate(w, h)
        encode, decode = (c["JPEG encode q90 (relay)"], c["JPEG decode (subscriber)"])
        console.print(f"  {size}: where a JPEG stream's CPU goes at {fps:g} fps: the relay's "
                      f"encode {encode * fps / 10:.0f}% of a core, each consumer's decode "
                      f"{decode * fps / 10:.0f}%: 3 fast consumers and the relay need "
                      f"{(3 * decode + encode) * fps / 10:.0f}% of the machine's "
                      f"{100 * (os.cpu_count() or 1)}%", highlight=False)
