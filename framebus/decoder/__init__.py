"""Decoder workers: PyAV decodes a source straight into a stream's ring.

``source`` tells files, network streams, devices and the test pattern apart and
opens them; ``convert`` lands each decoded picture in a slot; ``worker`` runs the
loop: pacing, thinning, reconnecting, figures.
"""

from .convert import Converter
from .source import Source, SourceError
from .worker import DecodeOptions, DecodeWorker

__all__ = ["Converter", "DecodeOptions", "DecodeWorker", "Source", "SourceError"]
