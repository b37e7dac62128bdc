"""A PyAV stream that carries a codec's parameters, to add an output stream from.

PyAV makes an output stream either with an encoder (``add_stream``: opening it would
run libx264 and overwrite the source's extradata with its own) or from a template
stream (``add_stream_from_template``: parameters copied, nothing opened). A recorder
has only the parameters (codec name, extradata, size), so it makes the template: the
header of a Matroska file with one track, written here and opened by PyAV's own
demuxer from memory (well under a millisecond, no encoder, no file).
"""

from __future__ import annotations

import io
from typing import Any

import av

#: FFmpeg codec name -> Matroska CodecID.
CODEC_IDS = {
    "h264": "V_MPEG4/ISO/AVC", "hevc": "V_MPEGH/ISO/HEVC", "mjpeg": "V_MJPEG",
    "vp8": "V_VP8", "vp9": "V_VP9", "av1": "V_AV1", "mpeg4": "V_MPEG4/ISO/ASP",
    "mpeg2video": "V_MPEG2",
}


class UnsupportedCodec(ValueError):
    """A codec this recorder cannot copy into a file."""


def _element(ident: int, payload: bytes) -> bytes:
    # Sizes always as 8-byte EBML integers: simple, and valid for any payload.
    return (ident.to_bytes((ident.bit_length() + 7) // 8, "big") + b"\x01"
            + len(payload).to_bytes(7, "big") + payload)


def _uint(ident: int, value: int) -> bytes:
    return _element(ident, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def matroska_header(codec: str, extradata: bytes, width: int, height: int) -> bytes:
    """An EBML header, and a segment with one video track and an empty cluster."""
    try:
        codec_id = CODEC_IDS[codec]
    except KeyError:
        raise UnsupportedCodec(f"cannot record {codec!r} packets (can: "
                               f"{', '.join(sorted(CODEC_IDS))})") from None
    ebml = _element(0x1A45DFA3, _uint(0x4286, 1) + _uint(0x42F7, 1) + _uint(0x42F2, 4)
                    + _uint(0x42F3, 8) + _element(0x4282, b"matroska") + _uint(0x4287, 4)
                    + _uint(0x4285, 2))
    video = _element(0xE0, _uint(0xB0, width) + _uint(0xBA, height))
    track = _element(0xAE, _uint(0xD7, 1) + _uint(0x73C5, 1) + _uint(0x83, 1)
                     + _element(0x86, codec_id.encode())
                     + (_element(0x63A2, extradata) if extradata else b"") + video)
    info = _element(0x1549A966, _uint(0x2AD7B1, 1_000_000))
    cluster = _element(0x1F43B675, _uint(0xE7, 0))
    return ebml + _element(0x18538067, info + _element(0x1654AE6B, track) + cluster)


def template_stream(codec: str, extradata: bytes, width: int,
                    height: int) -> tuple[Any, Any]:
    """(container, its video stream) with these parameters; keep the container open while
    the stream is used as a template."""
    data = matroska_header(codec, extradata, width, height)
    container = av.open(io.BytesIO(data), format="matroska")
    return container, container.streams.video[0]
