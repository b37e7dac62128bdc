"""The ring's ordered accesses: where the seqlock needs acquire and release.

Three operations on an aligned 8-byte word of a shared mapping, by address:

- ``begin(address, value)``: the writer's odd stamp, ordered before the stores that follow;
- ``publish(address, value)``: a store-release (the even stamp, the head);
- ``load(address)``: an acquire fence, then a load-acquire (every stamp check).

They come from a small C extension (``_order.c``, C11 atomics), built when framebus is
installed. Where it is missing (a source tree run without building, say) the plain numpy
accesses stand in, but only on x86-64, whose memory model (TSO) already orders them as
the seqlock needs. On any other CPU framebus refuses to run without it rather than risk
a torn frame: an ARM core reorders plain stores and loads.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
from collections.abc import Callable
from typing import Any

from ..errors import RingError

#: Machines whose plain aligned 8-byte loads and stores are ordered as the ring needs.
TSO_MACHINES = frozenset({"x86_64", "amd64", "AMD64", "i686", "i386"})

begin: Callable[[int, int], None]
publish: Callable[[int, int], None]
load: Callable[[int], int]

try:
    # By name, not "from . import": the compiled module has no source, and an import of the
    # package itself from here would be a cycle (tests/test_layout.py).
    _order: Any = importlib.import_module(f"{__package__}._order")
except ImportError:  # pragma: no cover - depends on how framebus was installed
    _order = None

#: Whether the compiled, explicitly ordered accesses are in use.
COMPILED = _order is not None


def _word(address: int) -> ctypes.c_int64:
    if not address or address % 8:
        raise ValueError("not the address of an aligned 8-byte word")
    return ctypes.c_int64.from_address(address)


def _plain_store(address: int, value: int) -> None:
    _word(address).value = value


def _plain_load(address: int) -> int:
    return _word(address).value


def require_ordering(machine: str | None = None) -> None:
    """Raise RingError if this CPU needs the compiled accesses and they are missing."""
    machine = machine or platform.machine()
    if not COMPILED and machine not in TSO_MACHINES:
        raise RingError(
            f"framebus's ring needs its compiled memory-ordering helper on {machine} "
            "(a weakly ordered CPU), and framebus.shm._order is not built: reinstall "
            "framebus with a C compiler present (pip install --force-reinstall framebus)")


if _order is not None:
    begin, publish, load = _order.begin, _order.publish, _order.load
else:  # pragma: no cover - x86-64 source trees only, see require_ordering()
    begin, publish, load = _plain_store, _plain_store, _plain_load
