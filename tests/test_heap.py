"""framebus.support.heap: frames received over TCP reuse the last frame's memory.

Each case runs in a fresh interpreter, since mallopt's settings last as long as the
process: a process that receives 1080p frames through libzmq (over real loopback TCP,
into the buffers libzmq mallocs in its I/O thread) counts its page faults.
"""

import json
import os
import subprocess
import sys

import pytest

from framebus.support import heap

FRAME = 1920 * 1080 * 3
FRAMES = 30

RECEIVER = f"""
import json, resource, sys
import zmq
from framebus.support import heap

kept = heap.keep_buffers({FRAME}) if sys.argv[1] == "keep" else False
context = zmq.Context()
pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
port = pull.bind_to_random_port("tcp://127.0.0.1")
push.connect(f"tcp://127.0.0.1:{{port}}")
payload = bytes({FRAME})

held = []

def one():
    # As a subscriber: the next frame arrives while the caller holds the last one.
    push.send_multipart([b"slot", bytes(200), b"raw", payload], copy=False)
    held.append(pull.recv_multipart(copy=False))
    if len(held) > 2:
        del held[0]

one(); one(); one()  # the first frames' memory is new in any case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({FRAMES}):
    one()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"kept": kept, "faults": faults}}))
push.close(0); pull.close(0); context.term()
"""

PAGES = FRAME // os.sysconf("SC_PAGE_SIZE")


def receive(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", RECEIVER, mode], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return json.loads(out)


needs_glibc = pytest.mark.skipif(heap._MALLOPT is None, reason="the C library is not glibc")


@needs_glibc
def test_frames_received_reuse_memory_once_kept():
    plain, kept = receive("plain"), receive("keep")
    # Without it glibc maps every frame's buffer afresh (the premise: were it not so, the
    # second figure would prove nothing).
    assert plain == {"kept": False, "faults": plain["faults"]}
    assert plain["faults"] > 2 * PAGES, plain
    assert kept["kept"] is True
    assert kept["faults"] < PAGES // 4, kept  # not one frame's worth in 30 frames


@needs_glibc
def test_settings_only_rise_and_refuse_frames_beyond_glibcs_limit():
    script = ("from framebus.support import heap; import json; print(json.dumps(["
              "heap.keep_buffers(2**20), heap.keep_buffers(2**19), heap._kept, "
              f"heap.keep_buffers({heap.MMAP_THRESHOLD_MAX}), heap._kept]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == [True, True, 2**20, False, 2**20]


def test_the_environment_turns_it_off():
    script = "from framebus.support import heap; print(heap.keep_buffers(2**20))"
    env = {**os.environ, heap.ENV: "0"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True, env=env).stdout
    assert out.strip() == "False"


def test_an_unknown_dtype_is_no_error():
    assert heap.keep_frames((4, 4), "no-such-dtype") is False
