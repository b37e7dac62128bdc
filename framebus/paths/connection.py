"""A subscriber's connection to one relay: a DEALER, CurveZMQ beyond loopback, and the
monitor that tells a refused key (framebus/paths/tcp.py for pixels, and
framebus/remote/packet_reader.py for packets, read through it)."""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import AccessDenied
from ..keys import secure_client
from ..protocol import relay as wire

_HANDSHAKE_FAILED: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused this client's key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "did not speak the same security protocol",
}


class RelayConnection:
    """A DEALER connected to one relay, and the monitor that tells a refused key."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.endpoint = endpoint
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.rcvhwm = 4  # a frame per credit: nothing ever queues here
        self._monitor: zmq.Socket | None = None
        try:
            secure_client(self.socket, endpoint)
            self._monitor = self.socket.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
            self.socket.connect(endpoint)
        except BaseException:
            self.close()
            raise

    def check_handshake(self) -> None:
        """Raise AccessDenied if the relay refused the connection's security handshake."""
        monitor = self._monitor
        while monitor is not None and not monitor.closed and monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event in _HANDSHAKE_FAILED:
                raise AccessDenied(
                    f"the relay at {self.endpoint} {_HANDSHAKE_FAILED[event]}: ask its "
                    "operator to add this client's public key to its authorized keys")

    def close(self) -> None:
        """Say goodbye and close. Idempotent."""
        if self.socket.closed:
            return
        try:
            self.socket.send(wire.BYE, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        if self._monitor is not None:
            self.socket.disable_monitor()
            self._monitor.close(linger=0)
        self.socket.close(linger=0)
