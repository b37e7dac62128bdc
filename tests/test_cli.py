"""The framebus command as a user runs it."""

import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import broker_answers, leftover_segments, wait_until

import framebus
from framebus.shm.segment import pid_alive


def test_demo_shows_frames_flowing_and_cleans_up(procs, broker_address):
    demo = procs.framebus("demo", "--duration", "4", "--size", "320x240", "--name", "clidemo")
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    figures = re.findall(r"clidemo: (\d+) frames, ([\d.]+) fps", err)
    assert figures, err
    frames, fps = int(figures[-1][0]), float(figures[-1][1])
    assert frames >= 45 and 20 < fps < 40
    assert "0 rejected" in err
    assert not leftover_segments()


def test_ls_without_a_broker_says_so(procs, broker_address):
    ls = procs.framebus("ls")
    out, err = ls.communicate(timeout=20)
    assert ls.returncode == 1
    assert "not reachable" in err and "framebus broker" in err


def test_ls_lists_nothing_on_an_empty_broker(procs, broker):
    ls = procs.framebus("ls", "--json")
    out, err = ls.communicate(timeout=20)
    assert ls.returncode == 0 and out.strip() == "[]"


def test_testsrc_refuses_a_bad_name_and_size(procs, broker):
    bad = procs.framebus("testsrc", "../x")
    _, err = bad.communicate(timeout=20)
    assert bad.returncode != 0 and "invalid stream name" in err
    bad = procs.framebus("testsrc", "ok", "--size", "big")
    _, err = bad.communicate(timeout=20)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in err


def test_broker_refuses_a_taken_address(procs, broker):
    second = procs.framebus("broker", "--bind", broker.address)
    _, err = second.communicate(timeout=20)
    assert second.returncode == 1 and "cannot bind" in err


# -- what the command line loads ----------------------------------------------------------

HEAVY = ("cv2", "av")


def _imported(*args: str) -> set[str]:
    """The top-level modules a fresh interpreter imports running *args*."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True,
                          text=True, timeout=60)
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_import_framebus_loads_neither_opencv_nor_pyav():
    check = ("import framebus, sys; "
             f"loaded = [m for m in {HEAVY!r} if m in sys.modules]; "
             "assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not set(HEAVY) & _imported("-c", "import framebus")


def test_help_and_ls_load_neither_opencv_nor_pyav_nor_any_client(broker_address):
    for args in (["--help"], ["ls"], ["ls", "--help"]):
        modules = _imported("-m", "framebus", *args)
        assert "framebus.cli" in modules, args
        assert not set(HEAVY) & modules, (args, set(HEAVY) & modules)
        assert not {m for m in modules if m.startswith("framebus.clients.")}, args
        assert "framebus.decoder" not in modules and "framebus.cli.site" not in modules


def test_every_lazy_command_loads_and_its_listed_help_is_its_own():
    import click

    from framebus.cli import COMMANDS, main

    assert set(main.list_commands(click.Context(main))) == set(COMMANDS)
    for name, (_, listed) in COMMANDS.items():
        command = main.load(name)
        assert command.get_short_help_str(1000) == \
            click.Command(name, help=listed).get_short_help_str(1000), name


def test_decode_options_are_the_specs():
    """Every field of the decode spec is an option of `framebus decode` (source its
    argument), with the spec's default and help."""
    from framebus.cli.site import decode
    from framebus.spec import fields

    params = {p.name: p for p in decode.params}
    for field in fields():
        param = params[field.name]
        assert param.required == field.required, field.name
        if not field.required:
            assert param.default == field.default, field.name
        if field.name != "source":
            assert param.opts == [field.option] and param.help == field.help
    assert set(params) == {f.name for f in fields()} | {"broker"}


# -- stopping as a terminal does ---------------------------------------------------------

def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _streaming(name):
    try:
        return any(s.name == name and s.alive and s.fps > 0 for s in framebus.streams(timeout=0.5))
    except framebus.BrokerUnavailable:
        return False


# Runs framebus on the pty it is given as its controlling terminal, as a shell would.
_ON_A_TERMINAL = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                  "os.execv(sys.executable, [sys.executable, '-m', 'framebus', *sys.argv[1:]])")


def test_ctrl_c_in_a_terminal_stops_the_demo_and_leaves_nothing(broker_address, stream_name):
    """The README's first command, stopped as a user does: ^C typed on its terminal, which
    sends SIGINT to the terminal's whole foreground process group."""
    master, slave = pty.openpty()
    demo = subprocess.Popen([sys.executable, "-c", _ON_A_TERMINAL, "demo", "--size", "320x240",
                             "--name", stream_name], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    output = bytearray()

    def drain():  # a terminal reads what is written to it, or the writer blocks
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process has closed the terminal
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_until(lambda: _streaming(stream_name), 30, what="the demo's stream to flow")
        assert os.tcgetpgrp(master) == demo.pid, "the demo leads the terminal's foreground"
        kids = _children_of(demo.pid)
        assert len(kids) == 2, "a broker and a decoder"
        os.write(master, b"\x03")  # ^C
        assert demo.wait(20) == 0, bytes(output).decode(errors="replace")
        reader.join(5)
        text = bytes(output).decode(errors="replace")
        assert "Traceback" not in text, text
        assert not leftover_segments(), text
        assert not any(pid_alive(pid) for pid in kids)
        assert not _group_alive(demo.pid)
        assert not broker_answers(broker_address), "the broker the demo started is stopped"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for pid in _children_of(demo.pid):
            os.kill(pid, signal.SIGKILL)
        os.close(master)


def test_a_decoder_interrupted_then_terminated_still_unlinks_its_ring(procs, broker, stream_name):
    """What the demo's decoder met before it ran in a session of its own: the terminal's
    SIGINT, then its parent's SIGTERM in the middle of the cleanup."""
    worker = procs.framebus("decode", "testsrc", "--name", stream_name, "--size", "160x120")
    wait_until(lambda: _streaming(stream_name), 20, what="the decoder's stream to flow")
    for _ in range(3):
        worker.send_signal(signal.SIGINT)
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    _, err = worker.communicate()
    assert "Traceback" not in err, err
    assert not leftover_segments()
