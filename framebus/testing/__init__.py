"""Reusable test parts, installed with the package: nothing here is imported by framebus itself,
and nothing here needs pytest (the test suite's fixtures over them are in tests/conftest.py).

- ``netns``: two real hosts on one machine (network namespaces, each with its own /dev/shm,
  runtime directory and name, joined by a veth): ``TwoHosts``; one host is ``host.Host``, and
  ``linux`` holds the commands and /proc lookups they use. Needs root.
- ``rtsp``: launches ``rtsp_server.py``, a live H.264 RTSP server on GStreamer, run by Debian's
  /usr/bin/python3 (it imports no framebus): ``RtspServer``, ``rtsp_available()``.
- ``media``: H.264 test clips whose frames carry their index in their pixels, with a camera's
  GOP (a key frame every second, exactly).
- ``hostile``, ``schemas``, ``probers``: hypothesis strategies of hostile input derived from
  the wire messages' types, and probes that send it to a real broker or relay.
"""
