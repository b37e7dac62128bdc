"""The web console's bench (issue 13): latency over MSE, the cost of viewers, page load.
Run ``python -m bench.web [--quick]`` from the repository root; see __main__.py."""
