"""The framebus command as a user runs it."""

import re

from conftest import leftover_segments


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
