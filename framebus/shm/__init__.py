"""The shared-memory ring: slots of frames in one POSIX segment."""

from .layout import Geometry, Header
from .ring import RingReader, RingWriter, read_header, reclaim

__all__ = ["Geometry", "Header", "RingReader", "RingWriter", "read_header", "reclaim"]
