"""The network path: frames of one host's streams for subscribers on other hosts.

``relay`` serves them (reading rings like any local subscriber), ``receiver`` is
a Subscriber's side of it, ``wire`` their messages, ``keys`` the CurveZMQ keys
that guard every endpoint beyond loopback.
"""
