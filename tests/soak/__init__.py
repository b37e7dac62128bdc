"""Soak and chaos: a real site runs under faults for a while, then is judged on its promises.

From the repository root (root, for the namespaces):

    sudo .venv/bin/python -m tests.soak --seconds 120 --seed 7    # a short run
    sudo .venv/bin/python -m tests.soak --seconds 1800 --seed 11 --json soak.json
    .venv/bin/python -m tests.soak --markdown soak.json           # its tables, for the README

tests/test_soak.py runs a short one (50 s, seed 7) in `make test`.

A whole site runs in a network namespace of its own (site.py; its processes, agents.py):
`framebus up` with the broker, the relay and four decoders (test pattern, a looping H.264
file twice, a GStreamer RTSP camera), a producer that lies in its descriptors, nine readers
that check every frame by content, two of them on a second host through the relay. For
--seconds, a seeded chaos loop (chaos.py) kills, stops and starves them and feeds the
broker and the relay garbage. Then the whole site is SIGKILLed and started again, and
finally stopped cleanly (run.py). The table at the end (report.py) says, per promise,
whether it held; the exit status is 1 if one did not, 2 if the soak could not run here
(it needs root, for the namespaces, and GStreamer's RTSP server: `make test` installs it).

The processes the site runs beside framebus's own are modules here too, each run as
``python -m tests.soak.NAME`` from the repository root: reader.py checks every frame it
is given, liar.py is a producer whose descriptors are mostly lies, fuzz.py sends the
broker or the relay malformed requests, watch.py reports what the broker knows. The test
parts they use (the hosts, the RTSP camera, the clips, the hostile inputs) come from
framebus.testing.
"""

