"""`framebus broker`, `framebus relay` and `framebus keygen`: the services and their keys."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import click

from .. import config
from ..errors import FramebusError
from ..options import broker_option
from ..protocol.broker import MAX_RELAYS, MAX_STREAMS
from ..remote.packet_limits import MAX_BYTES, MAX_PACKETS, MOST_MIB, MOST_PACKETS
from .common import fail

curve_keys_option = click.option(
    "--curve-keys", type=click.Path(file_okay=False), default=None,
    help="CurveZMQ key directory (server.key_secret, authorized/*.key); required to bind "
         "beyond loopback. Made with `framebus keygen`.")


@click.command()
@click.option("--bind", "binds", multiple=True, envvar="FRAMEBUS_BROKER",
              default=[config.DEFAULT_BROKER], show_default=True,
              help="Where to listen (also $FRAMEBUS_BROKER); repeat for several endpoints.")
@curve_keys_option
@click.option("--max-streams", type=click.IntRange(min=1), default=None,
              show_default=str(MAX_STREAMS),
              help="Most streams kept; a newcomer beyond them, all alive, is refused \"full\".")
@click.option("--max-relays", type=click.IntRange(min=1), default=None,
              show_default=str(MAX_RELAYS),
              help="Most relays (one per host) kept.")
@click.option("--trust-loopback", is_flag=True,
              help="Believe loopback clients' registrations unproven: streams of any host, "
                   "rings not checked. For simulated producers and one-user sites only.")
def broker(binds: tuple[str, ...], curve_keys: str | None, max_streams: int | None,
           max_relays: int | None, trust_loopback: bool) -> None:
    """Run the discovery and liveness service."""
    from ..broker import Broker

    _serve(lambda: Broker(list(binds), keys_dir=curve_keys, max_streams=max_streams,
                          max_relays=max_relays, trust_loopback=trust_loopback))


@click.command()
@click.option("--bind", "binds", multiple=True, default=["tcp://127.0.0.1:5556"],
              show_default=True, help="Where to serve remote subscribers; repeat for several.")
@click.option("--advertise", default=None,
              help="The address other hosts reach this relay at (needed when bound to 0.0.0.0).")
@click.option("--packet-buffer", type=click.IntRange(1, MOST_PACKETS),
              default=MAX_PACKETS, show_default=True,
              help="Most packets kept per packet stream for remote readers (recorders): how "
                   "far one may fall behind, or be away, and lose nothing.")
@click.option("--packet-buffer-mib", type=click.IntRange(1, MOST_MIB), default=MAX_BYTES >> 20,
              show_default=True, help="Most MiB kept per packet stream (64 streams at most).")
@curve_keys_option
@broker_option
def relay(binds: tuple[str, ...], advertise: str | None, packet_buffer: int,
          packet_buffer_mib: int, curve_keys: str | None, broker: str) -> None:
    """Serve this host's streams to subscribers on other hosts."""
    from ..remote.packet_limits import BufferLimits
    from ..remote.relay import Relay

    limits = BufferLimits(packet_buffer, packet_buffer_mib << 20)
    _serve(lambda: Relay(list(binds), broker=broker, keys_dir=curve_keys, advertise=advertise,
                         packet_buffer=limits))


def _serve(make_service: Callable[[], Any]) -> None:
    """Run a service until Ctrl-C or SIGTERM; a failure to start is one clear line.

    SIGHUP re-reads the authorized client keys, so a client can be admitted or
    turned away without a restart.
    """
    try:
        service = make_service()
    except FramebusError as exc:
        fail(exc)
    signal.signal(signal.SIGHUP, lambda *_: service.reload_keys())
    try:
        service.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()


@click.command()
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to write NAME.key and NAME.key_secret.")
def keygen(name: str, directory: str) -> None:
    """Make a CurveZMQ key pair: NAME.key (public) and NAME.key_secret (owner-only).

    A server (broker or relay bound beyond loopback) uses server.key_secret from its
    --curve-keys DIR and admits the client keys in DIR/authorized/. A client sets
    $FRAMEBUS_KEYS to a directory holding client.key_secret and the server's server.key.
    """
    from ..keys import generate

    try:
        public, secret = generate(name, directory)
    except FramebusError as exc:
        fail(exc)
    click.echo(f"public key: {public}\nsecret key: {secret} (keep it on this machine)")
