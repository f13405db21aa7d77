"""Login throttling (issue 9 item 11): the policy with a fake clock, then over real HTTP."""
from __future__ import annotations

import httpx
import pytest

from app.web_security import LoginThrottle
from tests.app.fakes import launch_test_app, make_context

AUTH = ("alice", "correct horse")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _throttle(clock: Clock, **kw) -> LoginThrottle:
    async def app(scope, receive, send):  # never called in the policy tests
        raise AssertionError("not used")

    return LoginThrottle(app, clock=clock, **kw)


def test_policy_refuses_after_max_failures_with_growing_delay():
    clock = Clock()
    th = _throttle(clock, max_failures=5, base_delay_s=2.0, max_delay_s=60.0)
    for _ in range(4):
        th.record("1.2.3.4", ok=False)
    assert th.retry_after("1.2.3.4") == 0.0  # four failures: still allowed
    th.record("1.2.3.4", ok=False)
    assert th.retry_after("1.2.3.4") == pytest.approx(2.0)
    th.record("1.2.3.4", ok=False)
    assert th.retry_after("1.2.3.4") == pytest.approx(4.0)
    for _ in range(10):
        th.record("1.2.3.4", ok=False)
    assert th.retry_after("1.2.3.4") == pytest.approx(60.0)  # capped
    assert th.retry_after("5.6.7.8") == 0.0  # other clients are unaffected
    clock.t += 61
    assert th.retry_after("1.2.3.4") == 0.0  # the delay runs out


def test_policy_success_resets_and_old_failures_are_forgotten():
    clock = Clock()
    th = _throttle(clock, max_failures=3, window_s=100.0)
    th.record("a", ok=False)
    th.record("a", ok=False)
    th.record("a", ok=True)
    th.record("a", ok=False)
    th.record("a", ok=False)
    assert th.retry_after("a") == 0.0  # the success reset the count
    clock.t += 101  # beyond the window: the two failures are forgotten
    th.record("a", ok=False)
    th.record("a", ok=False)
    assert th.retry_after("a") == 0.0
    th.record("a", ok=False)
    assert th.retry_after("a") > 0


def test_policy_remembers_a_bounded_number_of_clients():
    th = _throttle(Clock(), max_failures=1, max_clients=3)
    for i in range(10):
        th.record(f"10.0.0.{i}", ok=False)
    assert len(th._clients) == 3
    assert th.retry_after("10.0.0.9") > 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("throttle") / "data", auth_enabled=True)
    srv, url = launch_test_app(ctx, auth=AUTH)
    yield url
    srv.close()
    ctx.registry.close()


def _client(source: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (any 127.x.y.z is this machine)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def test_repeated_bad_logins_get_429_and_another_client_still_logs_in(server):
    url = server
    attacker = _client("127.0.0.1")
    codes = []
    for i in range(30):
        r = attacker.post(url + "login", data={"username": "alice", "password": f"guess-{i}"})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert "too many failed logins" in r.json()["detail"]
    assert codes[:5] == [400] * 5, codes
    assert set(codes[5:]) == {429}, codes
    # While refused, even the right password is not tried, and a forged address does not help.
    assert attacker.post(url + "login", data={"username": "alice", "password": AUTH[1]}).status_code == 429
    forged = attacker.post(url + "login", data={"username": "alice", "password": AUTH[1]},
                           headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"})
    assert forged.status_code == 429
    # Another client (another source address) is not affected.
    other = _client("127.0.0.2")
    r = other.post(url + "login", data={"username": "alice", "password": AUTH[1]})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert any(k.startswith("access-token") for k in r.cookies)
    # Its session works: the config is served with the cookie and refused without it.
    assert other.get(url + "config").status_code == 200
    assert _client("127.0.0.3").get(url + "config").status_code == 401
    attacker.close()
    other.close()


def test_behind_a_trusted_proxy_each_forwarded_client_is_throttled_alone(tmp_path):
    from app.server import parse_proxies

    ctx = make_context(tmp_path / "data", auth_enabled=True)
    srv, url = launch_test_app(ctx, auth=AUTH, proxies=parse_proxies("127.0.0.5"))
    proxy, direct = _client("127.0.0.5"), _client("127.0.0.6")
    try:
        def login(client, password, forwarded=None):
            headers = {"X-Forwarded-For": forwarded} if forwarded else {}
            return client.post(url + "login", data={"username": "alice", "password": password}, headers=headers)

        # The proxy forwards one attacker: the attacker is refused after five failures...
        codes = [login(proxy, f"guess-{i}", "203.0.113.1").status_code for i in range(7)]
        assert codes == [400] * 5 + [429] * 2, codes
        # ...and prepending a made-up address does not help: the proxy's own entry is the last one.
        assert login(proxy, AUTH[1], "198.51.100.99, 203.0.113.1").status_code == 429
        # The other users behind the same proxy still log in.
        r = login(proxy, AUTH[1], "203.0.113.2")
        assert r.status_code == 200 and r.json() == {"success": True}
        # A peer that is not a trusted proxy is its own address, whatever it forwards.
        codes = [login(direct, f"guess-{i}", f"203.0.113.{50 + i}").status_code for i in range(6)]
        assert codes == [400] * 5 + [429], codes
    finally:
        proxy.close()
        direct.close()
        srv.close()
        ctx.registry.close()


def test_forwarded_allow_ips_takes_addresses_and_networks_only():
    from app.server import parse_proxies

    assert parse_proxies(None) == [] and parse_proxies(" ") == []
    assert parse_proxies("127.0.0.1, 10.0.0.0/8,::1") == ["127.0.0.1", "10.0.0.0/8", "::1"]
    for bad in ("*", "proxy.local", "10.0.0.0/99"):
        with pytest.raises(ValueError, match=r"--forwarded-allow-ips: expected IP addresses or networks"):
            parse_proxies(bad)


def test_serve_refuses_a_wildcard_proxy_before_it_opens_anything(tmp_path, capsys):
    from app.cli.main import main

    data = tmp_path / "data"
    assert main(["serve", "--data", str(data), "--forwarded-allow-ips", "*"]) == 2
    assert "--forwarded-allow-ips: expected IP addresses or networks" in capsys.readouterr().err
    assert not data.exists()
