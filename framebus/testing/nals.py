"""The H.264 slices of a packet, whatever its framing, to compare pictures byte for byte.

An MP4 file's packets are length-prefixed NAL units (AVCC); an RTSP stream's, as FFmpeg
depayloads them, carry start codes (Annex B), with SPS and PPS repeated in-band before
each key frame; and a muxer converts one framing to the other. What a camera encoded, and
what a recording must keep bit for bit, is the coded slices: NAL unit types 1 (a slice)
and 5 (an IDR slice). Parameter sets, SEI and delimiters are framing, left out.
"""

from __future__ import annotations

SLICES = (1, 5)


def units(data: bytes) -> list[bytes]:
    """The NAL units of one packet, Annex B or 4-byte length-prefixed."""
    if data[:4] == b"\0\0\0\1" or data[:3] == b"\0\0\1":
        return _annex_b(data)
    out, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def _annex_b(data: bytes) -> list[bytes]:
    out = []
    starts = []
    i = data.find(b"\0\0\1")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\0\0\1", i + 3)
    for k, start in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        unit = data[start:end]
        # A 4-byte start code leaves its first zero at the end of the unit before; so can
        # trailing zero bytes, which are not part of the unit either.
        out.append(unit.rstrip(b"\0") if k + 1 < len(starts) else unit)
    return out


def slices(data: bytes) -> list[bytes]:
    """The coded slices of one packet, in order."""
    return [u for u in units(data) if u and u[0] & 0x1F in SLICES]
