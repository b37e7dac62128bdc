"""One wake-up per frame for a local reader: an eventfd of its own that the writer bumps.

A reader makes an eventfd and hands it to the writer over a Unix-domain socket the
Publisher listens on (``<runtime dir>/<stream>.wake``, mode 0600 in the 0700 runtime
directory, or 0660 for ``$FRAMEBUS_GROUP`` like the descriptor socket; SCM_RIGHTS), naming
the ring it reads by its token. After each frame the writer adds 1 to every registered
eventfd, non-blocking: it never waits, and a full counter is ignored. The connection stays
open and silent; when it ends (the reader closed it, died, or was SIGKILLed) the writer's
listener thread, asleep in poll() on the connections, hears it at once and retires that
eventfd, so a dead reader costs the writer nothing. The writer ends every connection when
its ring is replaced: its readers then come back for the new one.

The reader, woken, takes the frame's facts from the ring's slot table. Its rule, which makes
a lost wake-up impossible: read (and so reset) the counter, then look at the ring's head,
and only then sleep on the eventfd. A frame committed after the look bumps the counter
after the read; one committed before it is seen by the look. Docs: docs/ring.md.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import socket
import struct
import threading
from pathlib import Path

from .. import config

log = logging.getLogger(__name__)

HELLO = b"FBWAKE1"
#: The writer's answers to a hello.
OK, REFUSED = b"OK", b"NO"
#: Readers one writer wakes at most; more are refused (they keep the ZeroMQ descriptors).
MAX_READERS = 256
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def wake_file(stream: str) -> Path:
    """The socket file on which the producer of *stream* takes its readers' eventfds."""
    return config.runtime_dir() / f"{stream}.wake"


def _new_eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def _is_eventfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


def _peer_may(conn: socket.socket) -> bool:
    """Whether the peer may be woken: this user or root, or with $FRAMEBUS_GROUP anyone the
    socket file's mode let in (the group's members: they may read the ring too)."""
    _, uid, _ = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return uid in (os.getuid(), 0) or config.share_group() is not None


class WakeServer:
    """The writer's side: the listener, its thread, and the eventfds it bumps.

    Only the writer's thread calls wake(), and only it closes a retired eventfd, after its
    loop over them: the listener thread never closes one the writer might be writing to
    (a number closed under it could be reused by any file of the process).
    """

    def __init__(self, stream: str, token: bytes) -> None:
        self.path = wake_file(stream)
        self._token = token
        self.fds: tuple[int, ...] = ()  # the eventfds woken after each frame
        self._retired: list[int] = []  # off the list, for the writer to close
        self._lock = threading.Lock()
        self._conns: dict[int, tuple[socket.socket, int | None]] = {}  # fileno: (conn, efd)
        self._to_drop: set[int] = set()  # eventfds renew() retired: their connections end
        self._stop = False
        self._signal = _new_eventfd()  # tells the listener thread to look at the flags
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.path.unlink(missing_ok=True)  # a dead writer's (the ring said it is dead)
            self._listener.bind(str(self.path))
            os.chmod(self.path, 0o600)
            config.share(self.path, 0o660)  # the share group's too, with $FRAMEBUS_GROUP
            self._listener.listen(64)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            os.close(self._signal)
            raise
        self._thread = threading.Thread(target=self._run, name=f"framebus-wake-{stream}",
                                        daemon=True)
        self._thread.start()

    @property
    def readers(self) -> int:
        """Readers woken after each frame."""
        return len(self.fds)

    def wake(self) -> None:
        """After each frame: bump every reader's eventfd. Never waits."""
        for fd in self.fds:
            try:
                os.eventfd_write(fd, 1)
            except OSError:
                pass  # EAGAIN: the counter is full, the reader is awake anyway
        if self._retired:
            self._reap()

    def renew(self, token: bytes) -> None:
        """The ring was replaced (or what the readers took from its descriptors changed):
        end every connection, and take only readers of *token* from now on."""
        with self._lock:
            self._token = token
            self._retired.extend(self.fds)
            self._to_drop.update(self.fds)
            self.fds = ()
        os.eventfd_write(self._signal, 1)

    def close(self) -> None:
        """Stop the listener, end every connection, unlink the socket file."""
        self._stop = True
        os.eventfd_write(self._signal, 1)
        self._thread.join(2.0)
        for conn, _ in self._conns.values():
            conn.close()  # their eventfds are in fds or retired
        self._conns.clear()
        for fd in (*self.fds, *self._retired):
            os.close(fd)
        self.fds, self._retired = (), []
        self._listener.close()
        os.close(self._signal)
        self.path.unlink(missing_ok=True)

    def _reap(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for fd in retired:
            os.close(fd)

    # -- the listener thread ---------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._signal, select.POLLIN)
        while not self._stop:
            for fd, _ in poller.poll():
                if fd == self._signal:
                    self._flags(poller)
                elif fd == self._listener.fileno():
                    self._accept(poller)
                elif fd in self._conns:
                    self._readable(poller, fd)

    def _flags(self, poller: select.poll) -> None:
        try:
            os.eventfd_read(self._signal)
        except BlockingIOError:
            pass
        with self._lock:
            to_drop, self._to_drop = self._to_drop, set()
        for fd, (_, efd) in list(self._conns.items()):
            if efd in to_drop:
                self._drop(poller, fd, retire=False)  # renew() retired its eventfd

    def _accept(self, poller: select.poll) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("wake-up listener %s: %s", self.path, exc)
                return
            if len(self._conns) >= MAX_READERS or not _peer_may(conn):
                conn.close()
                continue
            conn.setblocking(False)
            self._conns[conn.fileno()] = (conn, None)
            poller.register(conn, select.POLLIN)

    def _readable(self, poller: select.poll, fd: int) -> None:
        conn, efd = self._conns[fd]
        if efd is not None:  # a registered reader says nothing: this is its end
            self._drop(poller, fd, retire=True)
            return
        try:
            message, fds, _, _ = socket.recv_fds(conn, 64, 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message, fds = b"", []
        efd = fds[0] if fds else None
        with self._lock:
            token = self._token
            if (message == HELLO + token and efd is not None and _is_eventfd(efd)
                    and len(self.fds) < MAX_READERS):
                fcntl.fcntl(efd, fcntl.F_SETFL, fcntl.fcntl(efd, fcntl.F_GETFL) | os.O_NONBLOCK)
                self._conns[fd] = (conn, efd)
                self.fds = (*self.fds, efd)
                answer = OK
            else:
                answer = REFUSED
        _send(conn, answer)
        if answer == REFUSED:
            for extra in fds:
                os.close(extra)
            self._drop(poller, fd, retire=False)

    def _drop(self, poller: select.poll, fd: int, retire: bool) -> None:
        conn, efd = self._conns.pop(fd)
        poller.unregister(fd)
        conn.close()
        if efd is not None and retire:
            with self._lock:
                if efd in self.fds:
                    self.fds = tuple(f for f in self.fds if f != efd)
                    self._retired.append(efd)


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.send(data)
    except OSError:
        pass  # gone already: dropped with its connection


class WakeChannel:
    """The reader's side: its eventfd, and the connection that says when the writer is gone.

    ``start()`` sends the hello without waiting; ``answer()`` tells, once the writer has
    replied, whether it took the eventfd.
    """

    def __init__(self, efd: int, conn: socket.socket) -> None:
        self.efd = efd
        self.conn = conn

    @classmethod
    def start(cls, stream: str, token: bytes) -> WakeChannel | None:
        """Connect to the writer of *stream* and offer it an eventfd for ring *token*; None
        if no writer listens there."""
        try:
            path = wake_file(stream)
        except OSError:
            return None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        efd = _new_eventfd()
        try:
            conn.setblocking(False)
            conn.connect(str(path))
            socket.send_fds(conn, [HELLO + token], [efd])
        except OSError as exc:
            conn.close()
            os.close(efd)
            if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN):
                log.debug("no wake-up from %s: %s", path, exc)
            return None
        return cls(efd, conn)

    def answer(self) -> bool | None:
        """True once the writer took the eventfd, False if it refused (or is gone), None
        while it has not answered yet."""
        try:
            reply = self.conn.recv(16)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return False
        return reply == OK

    def clear(self) -> None:
        """Reset the counter: call it before looking at the ring's head."""
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            pass

    def lost(self) -> bool:
        """Whether the writer ended the connection (it stopped, died, or replaced its ring)."""
        try:
            return self.conn.recv(16, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.conn.close()
        os.close(self.efd)
