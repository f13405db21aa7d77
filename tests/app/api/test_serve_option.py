"""``launch.py serve --api-token`` / ``$AGL_API_TOKEN`` reach the web app (the option of issue 15)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--api-token", "cli-token"], "env-token", "cli-token"),  # the option wins
    ([], "env-token", "env-token"),
    ([], None, None),
    ([], "", None),  # an empty variable is no token
])
def test_api_token_from_option_or_environment(tmp_path, monkeypatch, argv, env, expected):
    import app.server
    from app.cli.main import build_parser

    seen = {}

    def fake_create_web_app(ctx, **kwargs):
        seen.update(kwargs)
        return object(), None

    monkeypatch.setattr(app.server, "create_web_app", fake_create_web_app)
    monkeypatch.setattr(app.server, "serve", lambda *a, **k: None)
    monkeypatch.delenv("AGL_AUTH", raising=False)
    if env is None:
        monkeypatch.delenv("AGL_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("AGL_API_TOKEN", env)
    args = build_parser().parse_args(["serve", "--data", str(tmp_path / "data"), "--port", "1", *argv])
    assert args.func(args) == 0
    assert seen["api_token"] == expected and seen["auth"] is None
