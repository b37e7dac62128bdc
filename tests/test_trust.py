"""framebus/trust.py's rules, on its own: a client key registers for one host only."""

import os
import socket

import pytest

from framebus.trust import Gatekeeper, Origin, Untrusted

HERE = "site-a"


def test_a_key_registers_for_the_first_host_it_registered_as_and_no_other():
    gate = Gatekeeper(HERE)
    laptop, camera_box = Origin("K" * 40), Origin("C" * 40)
    gate.check_host("box1", laptop, "stream 'cam1'")
    gate.check_host("box1", laptop, "stream 'cam2'")  # the same host again: fine
    with pytest.raises(Untrusted, match="registers for host 'box1' only, not 'box2'"):
        gate.check_host("box2", laptop, "stream 'cam3'")
    with pytest.raises(Untrusted, match="'box1' only"):
        gate.check_host(HERE, laptop, "the relay of host 'site-a'")
    gate.check_host("box2", camera_box, "stream 'cam4'")  # another key, another host


def test_a_client_without_a_key_registers_for_this_host_only():
    gate = Gatekeeper(HERE)
    gate.check_host(HERE, Origin(), "stream 'cam1'")
    with pytest.raises(Untrusted, match="without a key registers only for this host"):
        gate.check_host("box1", Origin(), "stream 'cam1'")


def test_trusting_loopback_lifts_the_checks_for_keyless_clients_only():
    gate = Gatekeeper(HERE, trust_loopback=True)
    gate.check_host("box1", Origin(), "stream 'sim1'")
    gate.check_ring("/framebus.nothing-here", b"t" * 16, 1, Origin())  # not even read
    gate.check_host("box1", Origin("K" * 40), "stream 'cam1'")
    with pytest.raises(Untrusted):
        gate.check_host("box2", Origin("K" * 40), "stream 'cam2'")
    with pytest.raises(Untrusted, match="cannot be read here"):
        gate.check_ring("/framebus.nothing-here", b"t" * 16, 1, Origin("K" * 40))


def test_a_relay_of_this_host_must_listen_where_it_says():
    gate = Gatekeeper(HERE)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        gate.check_relay(f"tcp://127.0.0.1:{port}", os.getpid(), Origin())  # it does
        with pytest.raises(Untrusted, match="does not listen"):
            gate.check_relay(f"tcp://127.0.0.1:{port}", os.getppid(), Origin())
    with pytest.raises(Untrusted, match="does not listen"):
        gate.check_relay(f"tcp://127.0.0.1:{port}", os.getpid(), Origin())  # closed now
