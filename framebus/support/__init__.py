"""Small helpers that several parts of framebus need, each written once.

``backoff``: capped exponential backoff (the decoder's reconnects, the supervisor's
restarts); ``rates``: rate meters (decode and publish rates, a consumer's figures);
``children``: starting and stopping child processes (the command line, the supervisor).
"""
