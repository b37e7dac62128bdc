"""The console's API: /metrics (read by prometheus_client's own parser), /api/streams, its
refusal to serve beyond loopback without a login, HTTPS from the key directory, and its
[web] table in the site file, run by `framebus up`."""

from __future__ import annotations

import http.client
import shutil
import signal
import ssl
import subprocess
import urllib.request

import pytest
from conftest import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families
from up_helpers import write_site
from web_console import Console, pattern

from framebus import sitefile
from framebus.errors import SiteError
from framebus.web.auth import make_token


def test_metrics_parse_with_prometheus_clients_parser_and_hold_every_figure(
        procs, broker, stream_name):
    decoded, plain = f"{stream_name}-dec", f"{stream_name}-pat"
    procs.framebus("decode", "testsrc", "--name", decoded, "--size", "160x120", "--fps", "10")
    pattern(procs, plain)
    console = Console.start(procs)

    def figures():
        rows = console.streams()
        return rows if {decoded, plain} <= rows.keys() and all(
            rows[n]["fps"] > 0 and rows[n]["age"] is not None for n in (decoded, plain)) \
            else None

    rows = wait_until(figures, 20, what="both streams' figures")
    assert rows[decoded]["decode"] in ("always", "demand") and rows[decoded]["dropped"] == 0
    assert rows[plain]["geometry"] == "160x120x3" and rows[plain]["alive"] is True
    families = {f.name: f for f in text_string_to_metric_families(console.get("/metrics"))}
    samples = {(s.name, s.labels.get("stream")): s for f in families.values()
               for s in f.samples}
    host = rows[plain]["host"]
    for name in (decoded, plain):
        for series in ("framebus_fps", "framebus_subscribers", "framebus_producer_alive",
                       "framebus_last_frame_age_seconds", "framebus_stream_info"):
            assert samples[series, name].labels["host"] == host, series
        assert samples["framebus_producer_alive", name].value == 1.0
        assert 3 < samples["framebus_fps", name].value < 20
    assert families["framebus_dropped"].type == "counter"
    assert samples["framebus_dropped_total", decoded].value == 0
    assert ("framebus_dropped_total", plain) not in samples  # a test pattern counts none
    assert samples["framebus_decode_fps", decoded].value > 0
    assert samples["framebus_stream_info", plain].labels["geometry"] == "160x120x3"
    assert samples["framebus_broker_up", None].value == 1.0


def _upgrade(console: Console, path: str, **headers: str) -> int:
    """The status of a WebSocket handshake at *path* (101: accepted)."""
    connection = http.client.HTTPConnection("127.0.0.1", int(console.url.rsplit(":", 1)[1]),
                                            timeout=5)
    try:
        connection.request("GET", path, headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **headers})
        return connection.getresponse().status
    finally:
        connection.close()


def test_another_sites_page_cannot_reach_the_console_through_a_browser(procs, broker):
    """WebSockets know no CORS, and on loopback no login stops them: the console refuses
    one opened from another origin, and a Host that is not a loopback name (DNS
    rebinding), on every route, the live views' too."""
    console = Console.start(procs)
    host = console.url.removeprefix("http://")
    assert _upgrade(console, "/api/events", Origin=console.url) == 101
    assert _upgrade(console, "/api/events") == 101  # not from a page: no Origin
    assert _upgrade(console, "/api/events", Origin="http://evil.example") == 403
    assert _upgrade(console, "/live/cam1", Origin="http://evil.example") == 403
    port = host.rsplit(":", 1)[1]
    assert console.status("/api/streams", Host=f"evil.example:{port}") == 421
    assert console.status("/preview/cam1.jpg", Host=f"evil.example:{port}") == 421
    assert console.status("/api/streams", Host=f"localhost:{port}") == 200


def test_it_refuses_to_serve_beyond_loopback_without_a_login(tmp_path):
    from click.testing import CliRunner

    from framebus.cli.web import web

    def refusal(*args: str) -> str:
        # In this process: each refusal comes before anything is served.
        result = CliRunner().invoke(web, list(args))
        assert result.exit_code != 0, result.output
        return result.output

    port = f"{free_port()}"
    err = refusal("--bind", f"0.0.0.0:{port}")
    assert "0.0.0.0 is beyond loopback: the console serves it only with a login" in err
    keys = tmp_path / "keys"
    keys.mkdir()
    assert f"no {keys}/web.token" in refusal("--bind", f"0.0.0.0:{port}", "--keys", str(keys))
    (keys / "web.token").write_text("a password of the site's own\n")
    (keys / "web.token").chmod(0o644)
    assert "readable by others: chmod 600 it" in refusal("--bind", f"0.0.0.0:{port}",
                                                         "--keys", str(keys))
    (keys / "web.token").write_text("too short\n")
    (keys / "web.token").chmod(0o600)
    assert "fewer than 16 characters" in refusal("--bind", f"0.0.0.0:{port}", "--keys",
                                                 str(keys))
    assert "--make-token needs --keys DIR" in refusal("--make-token")
    assert "is not HOST:PORT" in refusal("--bind", "8080")


def test_with_a_login_beyond_loopback_it_warns_of_plain_http_or_serves_https(
        procs, broker, tmp_path):
    keys = tmp_path / "keys"
    token = make_token(keys).read_text().strip()
    port = free_port()
    plain = procs.framebus("web", "--bind", f"0.0.0.0:{port}", "--keys", str(keys))
    wait_until(lambda: plain.stderr.readline().find("plain HTTP beyond loopback") >= 0, 15,
               what="the plain HTTP warning")
    procs.stop(plain)
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate with")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(keys / "web.key"),
                    "-out", str(keys / "web.crt")], check=True, capture_output=True)
    console = Console(f"https://127.0.0.1:{port}",
                      procs.framebus("web", "--bind", f"127.0.0.1:{port}", "--keys", str(keys)))
    trusting = ssl.create_default_context(cafile=str(keys / "web.crt"))
    trusting.check_hostname = False
    request = urllib.request.Request(f"https://127.0.0.1:{port}/api/streams",
                                     headers={"Authorization": f"Bearer {token}"})

    def answers():
        try:
            with urllib.request.urlopen(request, timeout=2, context=trusting) as reply:
                return reply.status == 200
        except OSError:
            assert console.proc.poll() is None, console.proc.communicate()[1]
            return False

    wait_until(answers, 15, what="the console over HTTPS")


def test_the_site_files_web_table(tmp_path):
    def site(head: str):
        path = tmp_path / "site.toml"
        write_site(path, {"cam1": {"source": "testsrc"}}, head)
        return sitefile.load(path)

    assert site("").web is None
    assert site("[web]").web == sitefile.WebSpec("127.0.0.1:8080")
    bad = {'[web]\nport = 8080': "[web]: unknown key(s) ['port']; known: bind, keys",
           '[web]\nbind = "8080"': "[web]: bind = '8080' is not valid; expected HOST:PORT",
           '[web]\nbind = "0.0.0.0:8080"': "beyond loopback, which the console serves only "
                                          "with a login: set keys",
           '[web]\nbind = "0.0.0.0:8080"\nkeys = "nowhere"': "[web]: keys: no "}
    for head, expected in bad.items():
        with pytest.raises(SiteError, match=None) as refused:
            site(head)
        assert expected in str(refused.value), (head, refused.value)
    make_token(tmp_path / "keys")
    spec = site('[web]\nbind = "0.0.0.0:8081"\nkeys = "keys"').web
    assert spec == sitefile.WebSpec("0.0.0.0:8081", str(tmp_path / "keys"))
    assert spec.web_args("tcp://127.0.0.1:5555") == [
        "web", "--bind", "0.0.0.0:8081", "--keys", str(tmp_path / "keys"),
        "--broker", "tcp://127.0.0.1:5555"]


def test_up_runs_the_sites_console(procs, broker_address, tmp_path, stream_name):
    port = free_port()
    path = tmp_path / "site.toml"
    write_site(path, {stream_name: {"source": "testsrc", "size": "160x120", "fps": 10}},
               f'broker = "{broker_address}"\n[web]\nbind = "127.0.0.1:{port}"\n')
    up = procs.framebus("up", str(path))
    console = Console(f"http://127.0.0.1:{port}", up)

    def shown():
        return console.status("/") == 200 and console.streams().get(stream_name, {}).get("alive")

    wait_until(shown, 30, what="up's console to show its stream")
    # A changed [web] on SIGHUP: the console restarted where the table now says.
    moved = free_port()
    write_site(path, {stream_name: {"source": "testsrc", "size": "160x120", "fps": 10}},
               f'broker = "{broker_address}"\n[web]\nbind = "127.0.0.1:{moved}"\n')
    old, console.url = console.url, f"http://127.0.0.1:{moved}"
    up.send_signal(signal.SIGHUP)
    wait_until(shown, 30, what="up's console at its new address")
    with pytest.raises(OSError):
        urllib.request.urlopen(old, timeout=2)
    assert procs.stop(up) == 0
    with pytest.raises(OSError):  # up stopped its console with the rest
        urllib.request.urlopen(console.url, timeout=2)
