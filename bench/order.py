"""What the ring's ordered accesses cost per frame, before and after they became atomics.

    python -m bench.order [--runs 5] [--number 200000]

Issue 14 made the seqlock's stamp and head accesses C11 acquire/release atomics
(framebus/shm/_order.c) so that the ring is correct on ARM. On x86-64 those compile to the
same plain MOVs as before; what remains is the cost of the call. "before" is the plain
numpy access the ring used until then, reproduced here as the baseline; "after" is the
ring's own begin()/commit() and holds()/head. Each figure is the best over --runs of the
mean of --number calls, on one 640x480 ring in /dev/shm.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable

import click
import numpy as np

from framebus.shm import order
from framebus.shm.layout import PTS, SEQ, STAMP, TIMESTAMP, Geometry
from framebus.shm.ring import RingReader, RingWriter, stamp_complete, stamp_writing

SEQ_NO = 5


def _plans(writer: RingWriter, reader: RingReader) -> list[tuple[str, Callable[[], object]]]:
    slot = writer.slot_of(SEQ_NO)
    meta, head = writer._meta, writer._head
    rmeta, rhead = reader._meta, reader._head

    def writer_before() -> None:
        meta[slot, STAMP] = stamp_writing(SEQ_NO)
        row = meta[slot]
        row[SEQ], row[PTS], row[TIMESTAMP] = SEQ_NO, 0, 0
        row[STAMP] = stamp_complete(SEQ_NO)
        head[0] = SEQ_NO + 1

    def writer_after() -> None:
        writer.begin(SEQ_NO)
        writer.commit(SEQ_NO, 0, 0)

    def reader_before() -> object:
        return int(rmeta[slot, STAMP]) == stamp_complete(SEQ_NO) and int(rhead[0])

    def reader_after() -> object:
        return reader.holds(slot, SEQ_NO) and reader.head

    return [("writer: begin + commit", writer_before), ("", writer_after),
            ("reader: holds + head", reader_before), ("", reader_after)]


@click.command()
@click.option("--runs", default=5, show_default=True)
@click.option("--number", default=200_000, show_default=True)
def main(runs: int, number: int) -> None:
    """Print ns per frame for each side, plain numpy (before) and ordered atomics (after)."""
    name = f"bench-order-{os.getpid()}"
    writer = RingWriter.create(name, Geometry((480, 640, 3), np.dtype("uint8"), "bgr24"), 4)
    reader = RingReader.open(name)
    try:
        print(f"compiled ordering helper: {order.COMPILED}")
        print(f"{'':24s} {'before (plain)':>15s} {'after (atomics)':>16s}")
        plans = _plans(writer, reader)
        for (label, before), (_, after) in zip(plans[::2], plans[1::2]):
            figures = [min(timeit.repeat(f, number=number, repeat=runs)) / number * 1e9
                       for f in (before, after)]
            print(f"{label:24s} {figures[0]:12.0f} ns {figures[1]:13.0f} ns")
    finally:
        reader.close()
        writer.close()


if __name__ == "__main__":
    main()
