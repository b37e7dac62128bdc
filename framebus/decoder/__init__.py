"""Decoder workers: PyAV decodes a source straight into a stream's ring.

``source`` tells files, network streams, devices and the test pattern apart and
opens them; ``convert`` lands each decoded picture in a slot; ``worker`` runs the
loop: pacing, thinning, reconnecting, figures. What a worker does is a
:class:`~framebus.spec.DecodeSpec`.
"""

from ..errors import SourceError
from ..spec import DecodeSpec
from .convert import Converter
from .source import Source
from .worker import DecodeWorker

__all__ = ["Converter", "DecodeSpec", "DecodeWorker", "Source", "SourceError"]
