"""What the `framebus up` tests share (test_up.py, test_up_reload.py, test_up_sitefile.py):
writing a site file, keys for a site that serves other hosts, and looking at the running
site: its streams as the broker lists them, up's children, the relays, the test pattern."""

import os
import shutil
from pathlib import Path

import framebus
from framebus.keys import generate
from framebus.testsrc import TestPattern


def write_site(path, streams: dict[str, dict], head: str = "") -> None:
    """A site file: *head* (TOML for the broker and relay as they are), then the streams."""
    lines = [head] if head else []
    for name, options in streams.items():
        lines.append(f"[streams.{name}]")
        lines += [f"{key} = {value!r}".replace("'", '"') if not isinstance(value, bool)
                  else f"{key} = {str(value).lower()}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")


def infos():
    return {s.name: s for s in framebus.streams(timeout=0.5)}


def alive(name):
    def check():
        try:
            info = infos().get(name)
        except framebus.BrokerUnavailable:
            return None
        return info if info and info.alive and info.fps > 0 else None
    return check



def is_the_pattern(frame) -> bool:
    """Whether a frame of a decoder's testsrc holds exactly the pattern it says it is."""
    pixels = frame.copy()
    pattern = TestPattern(frame.shape)
    # The decoder draws frame pts; seq counts the same unless it skipped a late frame.
    return pattern.matches(pixels, frame.seq) or pattern.matches(pixels, frame.pts)


def child_pid(parent: int, command: str) -> int | None:
    """The pid of *parent*'s live child running `framebus COMMAND`, if there is one now."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and argv[1:4] == [b"-m", b"framebus", command.encode()]:
            return int(entry)
    return None


def relay_at(endpoint, pid=None):
    """The broker's entry for a live relay at *endpoint* (of process *pid*), else None."""
    try:
        with framebus.BrokerClient(timeout=0.5) as client:
            relays = client.relays()
    except framebus.BrokerUnavailable:
        return None
    return next((r for r in relays if r["endpoint"] == endpoint and r["alive"]
                 and pid in (None, r["pid"])), None)



def make_keys(directory: Path) -> Path:
    """A server key directory admitting one client, whose own key directory is DIR/client."""
    server_public, _ = generate("server", directory)
    client_public, _ = generate("client", directory / "client")
    (directory / "authorized").mkdir()
    shutil.copy(client_public, directory / "authorized" / "client.key")
    shutil.copy(server_public, directory / "client" / "server.key")
    return directory

