"""`framebus up` and SIGHUP: the site file re-read, and only what changed started, stopped or
restarted; a bad file refused while the site runs on."""

import signal
import time

from conftest import broker_answers, free_port, leftover_segments, wait_until
from up_helpers import alive, child_pid, infos, is_the_pattern, relay_at, write_site

import framebus
from framebus.shm.segment import pid_alive


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


def test_sighup_starts_restarts_and_stops_the_relay_and_keeps_the_broker(
        procs, broker_address, stream_name, tmp_path):
    first, second = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    streams = {stream_name: {"source": "testsrc", "size": "32x24", "fps": 20}}
    site = tmp_path / "site.toml"
    write_site(site, streams, f'broker = "{broker_address}"\n')
    up = procs.framebus("up", str(site))
    producer = wait_until(alive(stream_name), 20, what="the stream to run")
    broker = child_pid(up.pid, "broker")
    assert child_pid(up.pid, "relay") is None

    write_site(site, streams, f'broker = "{broker_address}"\n[relay]\nbind = ["{first}"]\n')
    up.send_signal(signal.SIGHUP)
    relay = wait_until(lambda: relay_at(first), 10, what="the added relay to serve")
    with framebus.Subscriber(stream_name, transport="tcp") as sub:
        assert is_the_pattern(sub.recv(timeout=10))

    # A changed [broker] is kept as it runs; a changed [relay] restarts the relay.
    extra = f"tcp://127.0.0.2:{free_port()}"
    write_site(site, streams, f'[broker]\naddress = "{broker_address}"\nbind = ["{extra}"]\n'
                              f'[relay]\nbind = ["{second}"]\n')
    up.send_signal(signal.SIGHUP)
    moved = wait_until(lambda: relay_at(second), 10, what="the changed relay to serve")
    assert moved["pid"] != relay["pid"] and not pid_alive(relay["pid"])
    assert child_pid(up.pid, "broker") == broker and not broker_answers(extra)

    write_site(site, streams, f'broker = "{broker_address}"\n')
    up.send_signal(signal.SIGHUP)
    wait_until(lambda: child_pid(up.pid, "relay") is None and not pid_alive(moved["pid"]), 10,
               what="the removed relay to stop")
    assert infos()[stream_name].pid == producer.pid, "the stream ran on through it all"
    procs.stop(up, signal.SIGINT)
    _, err = up.communicate()
    assert "reload: relay added" in err and "reload: relay changed; restarting it" in err
    assert "reload: relay removed" in err
    assert "a changed broker takes a restart of `framebus up`" in err
    assert not pid_alive(broker) and not leftover_segments()

