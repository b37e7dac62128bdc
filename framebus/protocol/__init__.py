"""Every message framebus sends on a wire, each declared once (documented in docs/protocol.md).

``descriptor`` the frame descriptor, ``broker`` the broker's requests and replies with
StreamInfo, ``relay`` the messages between a relay and its remote subscribers, ``fields``
the field types they share, with their limits, and the one strict way to decode them.
"""
