"""`framebus up`'s site file: what it holds as loaded, and every error in it refused with the
table and the key it names, before anything starts."""

from pathlib import Path

import pytest
from conftest import broker_answers
from up_helpers import make_keys, write_site

import framebus
from framebus import sitefile

EXAMPLE = Path(__file__).parent.parent / "examples" / "framebus.toml"


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


BAD_SERVICES = {
    "broker-unknown-key": ('[broker]\nbnid = ["tcp://127.0.0.1:5999"]',
                           ("[broker]: unknown key(s) ['bnid']; known: address, bind, curve_keys, "
                            "max_streams, max_relays")),
    "broker-bind-not-a-list": ('[broker]\nbind = "tcp://127.0.0.1:5999"',
                               ("[broker]: bind = 'tcp://127.0.0.1:5999' is not valid; expected "
                                "a non-empty list")),
    "broker-bind-not-tcp": ('[broker]\nbind = ["ipc:///tmp/b"]',
                            "[broker]: bind: 'ipc:///tmp/b' is not valid; expected a tcp://"),
    "broker-bind-beyond-loopback": ('[broker]\nbind = ["tcp://192.0.2.1:5999"]',
                                    ("[broker]: bind: tcp://192.0.2.1:5999 is beyond loopback, "
                                     "which the broker serves only with CurveZMQ: set curve_keys")),
    "broker-bind-is-the-address": ('[broker]\naddress = "BROKER"\nbind = ["BROKER"]',
                                   "[broker]: bind: BROKER is the address"),
    "broker-address-not-tcp": ('[broker]\naddress = "udp://127.0.0.1:5999"',
                               "[broker]: address = 'udp://127.0.0.1:5999' is not valid"),
    "broker-cap-not-an-int": ("[broker]\nmax_streams = 0",
                              "[broker]: max_streams = 0 is not valid; expected an integer >= 1"),
    "broker-no-keys": ('[broker]\ncurve_keys = "nokeys"', "[broker]: curve_keys: no key file"),
    "broker-not-a-string": ("broker = 5999", "broker must be an address"),
    "relay-not-a-table": ('relay = "tcp://127.0.0.1:5998"', "[relay] must be a table"),
    "relay-unknown-key": ("[relay]\nport = 5998",
                          ("[relay]: unknown key(s) ['port']; known: bind, advertise, curve_keys, "
                           "packet_buffer, packet_buffer_mib")),
    "relay-packet-buffer-zero": ("[relay]\npacket_buffer = 0",
                                 ("[relay]: packet_buffer = 0 is not valid; expected an integer "
                                  "from 1 to 1048576")),
    "relay-packet-buffer-too-big": ("[relay]\npacket_buffer_mib = 1e9",
                                    "[relay]: packet_buffer_mib = 1000000000.0 is not valid"),
    "relay-bind-empty": ("[relay]\nbind = []",
                         "[relay]: bind = [] is not valid; expected a non-empty list"),
    "relay-bind-no-port": ('[relay]\nbind = ["tcp://127.0.0.1"]',
                           "[relay]: bind: 'tcp://127.0.0.1' is not valid"),
    "relay-bind-beyond-loopback": ('[relay]\nbind = ["tcp://0.0.0.0:5998"]',
                                   ("[relay]: bind: tcp://0.0.0.0:5998 is beyond loopback, which "
                                    "the relay serves only with CurveZMQ: set curve_keys")),
    "relay-advertise-not-tcp": ('[relay]\nadvertise = "10.0.0.5:5998"',
                                "[relay]: advertise = '10.0.0.5:5998' is not valid"),
    "relay-on-the-broker": ('[relay]\nbind = ["BROKER"]', "[relay]: bind: BROKER is the broker's"),
    "relay-wildcard-unadvertised": ('[relay]\nbind = ["tcp://0.0.0.0:5998"]\ncurve_keys = "keys"',
                                    ("[relay]: bound to tcp://0.0.0.0:5998, the relay cannot tell "
                                     "other hosts its address: set advertise")),
}


@pytest.mark.parametrize("text,expected", BAD_SERVICES.values(), ids=BAD_SERVICES.keys())
def test_bad_broker_and_relay_tables_are_refused_before_anything_starts(
        procs, broker_address, tmp_path, text, expected):
    make_keys(tmp_path / "keys")  # a relative curve_keys is taken from the site file's directory
    site = tmp_path / "site.toml"
    write_site(site, {"cam1": {"source": "testsrc"}}, text.replace("BROKER", broker_address))
    proc = procs.framebus("up", str(site))
    _, err = proc.communicate(timeout=20)
    expected = expected.replace("BROKER", broker_address)
    assert proc.returncode == 1 and expected in err, err
    assert str(site) in err, "the error names the file"
    assert "started" not in err and not broker_answers(broker_address)


def test_the_site_files_relay_default_and_example_are_the_real_ones(tmp_path):
    from framebus.remote.relay import DEFAULT_BIND

    assert sitefile.RELAY_DEFAULT_BIND == DEFAULT_BIND
    assert sitefile.load(EXAMPLE).relay is None
    # The commented example of a site serving other hosts, uncommented, with real keys.
    keys = make_keys(tmp_path / "keys")
    text = EXAMPLE.read_text()
    text = text.replace("\n# [broker]\n", "\n[broker]\n").replace("\n# [relay]\n", "\n[relay]\n")
    for key in ("address", "bind", "advertise", "curve_keys"):
        text = text.replace(f"\n# {key} = ", f"\n{key} = ")
    text = text.replace('"/etc/framebus/keys"', f'"{keys}"')
    (tmp_path / "site.toml").write_text(text)
    site = sitefile.load(tmp_path / "site.toml")
    assert site.broker.bind == ("tcp://10.0.0.5:5555",) and site.broker.curve_keys == str(keys)
    assert site.relay.advertise == "tcp://10.0.0.5:5556" and len(site.relay.bind) == 2


def test_the_brokers_caps_reach_its_command_line(tmp_path):
    site = tmp_path / "site.toml"
    write_site(site, {"cam1": {"source": "testsrc"}},
               '[broker]\nmax_streams = 4096\nmax_relays = 128')
    args = sitefile.load(site).broker.broker_args()
    assert args[-4:] == ["--max-streams", "4096", "--max-relays", "128"]
    write_site(site, {"cam1": {"source": "testsrc"}}, '[broker]')
    assert "--max-streams" not in sitefile.load(site).broker.broker_args()


def test_a_streams_command_line_gives_back_its_spec():
    """up runs each stream as `framebus decode ARGS`; parsed by decode's own options, the
    arguments are the stream's spec again, field for field."""
    from framebus.cli.site import decode
    from framebus.spec import DecodeSpec

    site = sitefile.parse({"streams": {
        "plain": {"source": "testsrc"},
        "every": {"source": "rtsp://192.0.2.1/s", "format": "yuv420p", "size": "320x240",
                  "fps": 7.5, "slots": 3, "loop": True, "fast": True, "transport": "udp",
                  "timeout": 0.5, "threads": 2},
    }})
    for spec in [*sitefile.load(EXAMPLE).streams.values(), *site.streams.values()]:
        args = spec.args()
        assert args[0] == "decode"
        ctx = decode.make_context("decode", args[1:] + ["--broker", "tcp://127.0.0.1:1"])
        options = {k: v for k, v in ctx.params.items() if k != "broker"}
        assert DecodeSpec.convert(options) == spec, args


BAD_STREAMS = {
    "fps = true": "[streams.cam1]: fps = True is not valid; expected a number > 0",
    "slots = 8.0": "[streams.cam1]: slots = 8.0 is not valid; expected an integer from 1 to 1024",
    'size = "640"': "[streams.cam1]: size = '640' is not valid; expected WIDTHxHEIGHT",
    'transport = "http"': ("[streams.cam1]: transport = 'http' is not valid; expected one of "
                           "tcp, udp"),
    "threads = 65": "[streams.cam1]: threads = 65 is not valid; expected an integer from 0 to 64",
    "loop = 1": "[streams.cam1]: loop = 1 is not valid; expected true or false",
    'name = "other"': "[streams.cam1]: unknown option(s) ['name']",
    'source = " "': "[streams.cam1]: source = ' ' is not valid",
}


@pytest.mark.parametrize("line,expected", BAD_STREAMS.items(), ids=BAD_STREAMS.keys())
def test_every_bad_stream_option_is_named_with_its_table(tmp_path, line, expected):
    site = tmp_path / "site.toml"
    source = "" if line.startswith("source") else "source = 'testsrc'\n"
    site.write_text(f"[streams.cam1]\n{source}{line}\n")
    with pytest.raises(framebus.SiteError) as caught:
        sitefile.load(site)
    assert str(caught.value).startswith(f"{site}: ") and expected in str(caught.value)
    # The same value in [defaults] is blamed on [defaults].
    if not line.startswith(("name", "source")):
        site.write_text(f"[defaults]\n{line}\n[streams.cam1]\nsource = 'testsrc'\n")
        with pytest.raises(framebus.SiteError, match=r"\[defaults\]: "):
            sitefile.load(site)

