"""Stream names, and the shared-memory and socket names derived from them.

A stream name ends up in a POSIX shared-memory name and in a socket path, so
it is held to a small alphabet: no name can reach outside the bus's own
segments and sockets.
"""

from __future__ import annotations

import re

from .errors import InvalidName

MAX_NAME_LENGTH = 64
#: What a valid stream name matches, in full (framebus/protocol/fields.py uses it too).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME = re.compile(NAME_PATTERN)


def validate_stream_name(name: object) -> str:
    """Return *name* if it is a valid stream name, else raise :class:`InvalidName`.

    Valid: 1 to 64 characters among letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit.
    """
    if not isinstance(name, str):
        raise InvalidName(f"stream name must be a string, not {type(name).__name__}")
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise InvalidName(f"stream name must have 1 to {MAX_NAME_LENGTH} characters, "
                          f"got {len(name)}")
    if not _NAME.fullmatch(name):
        raise InvalidName(
            f"invalid stream name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def is_valid_stream_name(name: object) -> bool:
    try:
        validate_stream_name(name)
    except InvalidName:
        return False
    return True


def topic(name: str) -> bytes:
    """The ZeroMQ topic of a stream.

    The trailing NUL makes the prefix match exact: a subscriber of ``cam1``
    must not receive ``cam10``.
    """
    return name.encode("ascii") + b"\0"
