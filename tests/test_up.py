"""`framebus up`: a real supervisor process running a real broker and real decoders."""

import os
import signal
import threading
import time

import framebus
from framebus.shm.segment import pid_alive

import media
from conftest import broker_answers, leftover_segments, wait_until


def write_site(path, streams: dict[str, dict]) -> None:
    lines = []
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


class Watch(threading.Thread):
    """Receives a stream in the background and records the longest silence."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.name, self.stop = name, threading.Event()
        self.frames, self.longest_gap, self.error = 0, 0.0, None

    def run(self):
        try:
            with framebus.Subscriber(self.name) as sub:
                sub.recv(timeout=15)
                last = time.monotonic()
                while not self.stop.is_set():
                    try:
                        sub.recv(timeout=0.2)
                    except framebus.Timeout:
                        pass
                    else:
                        self.frames += 1
                        last = time.monotonic()
                    self.longest_gap = max(self.longest_gap, time.monotonic() - last)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.error = exc


def test_up_restarts_a_killed_decoder_and_the_other_stream_never_stops(
        procs, broker_address, stream_name, tmp_path):
    video = media.encode(tmp_path / "clip.mp4", 50, fps=25)
    a, b = stream_name + "a", stream_name + "b"
    site = tmp_path / "site.toml"
    write_site(site, {a: {"source": "testsrc", "size": "64x48", "fps": 50},
                      b: {"source": str(video), "loop": True}})
    up = procs.framebus("up", str(site))
    first = wait_until(alive(a), 20, what=f"{a} to run")
    wait_until(alive(b), 10, what=f"{b} to run")
    watch_a, watch_b = Watch(a), Watch(b)
    watch_a.start(), watch_b.start()
    try:
        wait_until(lambda: watch_a.frames > 10 and watch_b.frames > 10, 15,
                   what="both streams to reach their subscribers")
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        again = wait_until(lambda: (i := alive(a)()) and i.pid != first.pid and i, 10,
                           what=f"{a} to come back")
        frames_then = watch_a.frames
        wait_until(lambda: watch_a.frames > frames_then + 10, 10,
                   what="the same subscriber to get frames of the restarted decoder")
        assert time.monotonic() - killed < 5
        assert again.pid != first.pid
    finally:
        watch_a.stop.set(), watch_b.stop.set()
        watch_a.join(), watch_b.join()
    assert watch_a.error is None and watch_b.error is None
    assert watch_b.longest_gap < 0.5, "the other stream never stopped"
    assert up.poll() is None
    procs.stop(up, signal.SIGTERM)
    _, err = up.communicate()
    assert "died (killed by SIGKILL)" in err and "everything stopped" in err
    assert not leftover_segments()
    assert not broker_answers(broker_address), "the broker up started is stopped too"


def test_sighup_applies_only_what_changed(procs, broker_address, stream_name, tmp_path):
    keep, drop, add = stream_name + "k", stream_name + "d", stream_name + "n"
    site = tmp_path / "site.toml"
    write_site(site, {keep: {"source": "testsrc", "size": "32x24", "fps": 20},
                      drop: {"source": "testsrc", "size": "32x24", "fps": 20}})
    up = procs.framebus("up", str(site))
    kept = wait_until(alive(keep), 20, what="the first streams")
    wait_until(alive(drop), 10, what="the second stream")
    write_site(site, {keep: {"source": "testsrc", "size": "32x24", "fps": 20},
                      add: {"source": "testsrc", "size": "48x32", "fps": 20}})
    up.send_signal(signal.SIGHUP)
    added = wait_until(alive(add), 10, what="the added stream")
    assert added.shape == (32, 48, 3)
    wait_until(lambda: drop not in infos(), 10, what="the removed stream to go")
    assert infos()[keep].pid == kept.pid, "an unchanged stream is left running"

    site.write_text("[streams.bad]\nsauce = 'testsrc'\n")  # a typo: refused, nothing stops
    up.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert alive(keep)() and alive(add)()
    procs.stop(up, signal.SIGINT)
    _, err = up.communicate()
    assert "reload refused" in err and "sauce" in err
    assert not pid_alive(kept.pid) and not leftover_segments()


def test_a_bad_site_file_is_refused_with_a_clear_error(procs, broker_address, tmp_path):
    cases = {
        "[streams.cam1]\nsource = 'testsrc'\nfsp = 10\n": "unknown option(s) ['fsp']",
        "[streams.cam1]\nsize = '640x480'\n": "needs a source",
        "[streams.'../x']\nsource = 'testsrc'\n": "invalid stream name",
        "[streams.cam1]\nsource = 'testsrc'\nformat = 'bgr'\n": "format = 'bgr' is not valid",
        "[streams.cam1\n": "not valid TOML",
        "": "no streams",
    }
    for text, expected in cases.items():
        site = tmp_path / "site.toml"
        site.write_text(text)
        proc = procs.framebus("up", str(site))
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1 and expected in err, (text, err)
    proc = procs.framebus("up", str(tmp_path / "missing.toml"))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "cannot read" in err
