"""The relay: the server side of the network path, serving one host's streams to
subscribers on other hosts.

``relay`` answers credits, ``feed`` reads each wanted stream from shared memory. The
subscriber's side is framebus/paths/tcp.py; their messages are framebus/protocol/relay.py;
the CurveZMQ keys that guard every endpoint beyond loopback are framebus/keys.py.
"""
