"""Compatibility layers: other libraries' client APIs on top of framebus.

- :mod:`framebus.compat.valkka`: Valkka's shared-memory client (``ShmemRGBClient``,
  ``SharedMemRingBufferRGB``, ``EventFd``), so that a program written for it runs on
  framebus when only its import line changes.

Nothing here is imported by ``import framebus``.
"""
