"""The ring's ordered accesses: compiled where framebus is installed, refused where unsafe."""

import subprocess
import sys

import numpy as np
import pytest

import framebus
from framebus.shm import order


def test_an_installed_framebus_has_the_compiled_helper():
    # `make test` installs framebus, which builds framebus/shm/_order.c; a silent fallback
    # here would leave an ARM install without its barriers.
    assert order.COMPILED, "framebus.shm._order was not built by the install"
    assert order.load is not order._plain_load


@pytest.mark.parametrize("machine", ["aarch64", "armv7l", "ppc64le", "riscv64"])
def test_a_weakly_ordered_cpu_without_the_helper_is_refused(monkeypatch, machine):
    monkeypatch.setattr(order, "COMPILED", False)
    with pytest.raises(framebus.RingError, match=machine):
        order.require_ordering(machine)


def test_x86_without_the_helper_runs_on_plain_accesses(monkeypatch):
    monkeypatch.setattr(order, "COMPILED", False)
    order.require_ordering("x86_64")  # TSO orders them: no error


def test_the_helper_refuses_a_null_or_misaligned_address():
    word = np.zeros(2, np.int64)
    address = word.ctypes.data
    for bad in (0, address + 1, address + 4):
        with pytest.raises(ValueError, match="aligned 8-byte word"):
            order.load(bad)
        with pytest.raises(ValueError, match="aligned 8-byte word"):
            order.publish(bad, 1)


def test_stores_and_loads_reach_the_word():
    word = np.zeros(2, np.int64)
    order.begin(word.ctypes.data, 7)
    order.publish(word.ctypes.data + 8, -(2**63))
    assert word.tolist() == [7, -(2**63)]
    assert order.load(word.ctypes.data) == 7
    assert order.load(word.ctypes.data + 8) == -(2**63)


def test_a_closed_ring_raises_instead_of_reading_freed_memory():
    code = (
        "import numpy as np\n"
        "from framebus.shm.layout import Geometry\n"
        "from framebus.shm.ring import RingWriter\n"
        "import os\n"
        "w = RingWriter.create(f'test-order-closed-{os.getpid()}', "
        "Geometry((4, 4, 3), np.dtype('uint8'), 'bgr24'), 2)\n"
        "w.close()\n"
        "for probe in (lambda: w.head, lambda: w.holds(0, 0)):\n"
        "    try:\n"
        "        probe()\n"
        "    except (ValueError, IndexError):\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('a closed ring answered')\n"
    )
    # In a child: a wrong answer here would be a segfault, which must not take pytest down.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
