"""The benchmarks, each a package run from the repository root as ``python -m bench.NAME``:
bench.bus (one producer to local subscribers, against pyzmq and imagezmq), bench.decode
(decoding 1080p H.264, against PyAV and OpenCV), bench.remote (frames over loopback TCP,
against imagezmq and NetGear); what they share is bench.common."""
