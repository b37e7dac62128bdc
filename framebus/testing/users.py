"""Real Unix users and groups for tests that must run as somebody else (root only).

A test of what another user can do runs a real process of a real second user: made with
useradd/groupadd for the test, removed after it, unless it already existed.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def system_user(name: str) -> Iterator[tuple[int, int]]:
    """A system user *name* without a home or a login shell: its (uid, gid)."""
    made = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", name], check=True, capture_output=True)
        made = True
    entry = pwd.getpwnam(name)
    try:
        yield entry.pw_uid, entry.pw_gid
    finally:
        if made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


@contextmanager
def system_group(name: str) -> Iterator[int]:
    """A system group *name*: its gid."""
    made = False
    try:
        grp.getgrnam(name)
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        made = True
    try:
        yield grp.getgrnam(name).gr_gid
    finally:
        if made:
            subprocess.run(["groupdel", name], check=False, capture_output=True)
