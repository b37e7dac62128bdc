"""Benchmark: the broker under a real site's load (issue 14, section 3).

N simulated producers heartbeat while M subscribers resolve, up to 100 hosts x 32 streams.
Each scale runs a fresh broker, ``python -m framebus broker`` on a private loopback port
(with ``--max-streams`` set to the scale when the broker has that option), and:

  registers  the scale's streams, each from a DEALER socket of its own speaking the real
             protocol, claiming a host that is not this one: the broker cannot ask the
             kernel about their pids, so liveness is by heartbeat alone;
  steady     heartbeats every 0.5 s (as framebus/config.py says) from a few producer
             processes, while subscriber processes (real BrokerClients) look registered
             streams up at a paced rate; measured: lookup latency, heartbeats offered,
             sent and answered, late and unanswered, the broker's CPU from /proc/PID/stat
             (utime+stime over the phase) and its RSS;
  deaths     up to 1,000 simulated producers stop beating at once; `list` is polled until
             the broker shows every one of them dead.

When the broker refuses some of a scale's streams ("full": today's MAX_STREAMS is 256), the
table says how many and measures the streams it took; two more columns then show what the
cap hides: (rate), the streams it took beating at the heartbeat rate of all the streams
asked, and (cap lifted), all of them against a broker started with framebus.broker's
MAX_STREAMS raised in its own process. Issue 14's targets are printed PASS or MISS, from the
largest scale; the benchmark exits 0 either way. Next to the figures: the load average, the
load's own CPU, and how long the broker waited for a CPU (a 2-core machine shared with
others: latency tails there are mostly that).

From the repository root:

    .venv/bin/python -m bench.broker [--quick] [--streams 256,800,1600,3200] [--hosts H]
                                     [--seconds 10] [--subscribers 2] [--lookup-rate 100]
                                     [--kill 1000] [--no-rate-rows] [--no-lifted-rows]
                                     [--markdown]

The pieces: load.py (the spawned producers and subscribers), run.py (one scale from the main
process: the broker, the phases, the death watch), report.py (figures, table, targets,
notes) and __main__.py (the command line).
"""
