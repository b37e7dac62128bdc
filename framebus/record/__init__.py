"""Recording from packets: compressed packets copied into MP4 or MKV files, with no
decoding and no encoding (issue 12, section 3).

``template`` makes the PyAV stream a muxer needs from a codec's parameters alone;
``remux`` writes the files: fragmented MP4 (a killed recorder leaves a playable file),
a new file when the codec parameters change, files cut at a key frame per period.
"""

from .remux import PacketLike, Remuxer, SegmentFile

__all__ = ["PacketLike", "Remuxer", "SegmentFile"]
