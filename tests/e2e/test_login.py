"""``serve --auth`` in a real browser: Gradio's login page, a wrong password, the lock-out after
repeated failures (the throttle here: 2 failures, then 3 s), then the right password."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.ui.app import LOGIN_NOTICE
from tests.app.fakes import launch_test_app, make_context
from tests.e2e.ui_helpers import fresh_page

AUTH = ("alice", "correct horse")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("login") / "data", auth_enabled=True)
    web, url = launch_test_app(ctx, auth=AUTH, throttle={"max_failures": 2, "base_delay_s": 3.0})
    yield url
    web.close()
    ctx.registry.close()


def test_login_page_refuses_a_wrong_password_then_opens_the_workbench(browser, auth_server, artifacts_dir: Path):
    with fresh_page(browser) as page:
        page.goto(auth_server)
        user = page.get_by_label("username")
        user.wait_for()
        assert page.get_by_role("tab", name="Auto-label").count() == 0  # nothing of the app before a login
        user.fill(AUTH[0])
        page.get_by_label("password").fill("wrong password")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect Credentials").wait_for()
        page.screenshot(path=str(artifacts_dir / "login_refused.png"))
        assert page.get_by_role("tab", name="Auto-label").count() == 0
        assert page.get_by_text(LOGIN_NOTICE).is_visible()  # the lock-out is announced up front

        def attempt(password: str) -> None:
            user.fill(AUTH[0])  # Gradio clears both fields after a refusal: type them again, as a person does
            page.get_by_label("password").fill(password)
            with page.expect_response(lambda r: r.url.endswith("/login")) as response:
                page.get_by_role("button", name="Login").click()
            codes.append(response.value.status)

        codes = [400]
        attempt("another wrong one")  # the second failure: this address is now refused for 3 s
        attempt(AUTH[1])  # even the right password waits
        locked_at = time.monotonic()
        assert codes == [400, 400, 429], codes
        page.wait_for_timeout(500)
        assert page.get_by_role("tab", name="Auto-label").count() == 0
        page.wait_for_timeout(max(0.0, 3.3 - (time.monotonic() - locked_at)) * 1000)
        attempt(AUTH[1])
        page.get_by_role("tab", name="Auto-label").wait_for()
        assert codes[-1] == 200
        page.get_by_role("tab", name="Review").wait_for()
        page.screenshot(path=str(artifacts_dir / "login_workbench.png"))
        assert any(c["name"].startswith("access-token") for c in page.context.cookies())
