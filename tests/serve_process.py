"""``launch.py serve`` as a user starts it: a subprocess on 127.0.0.1, for tests over real HTTP."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.app.fakes import free_port
from tests.conftest import ROOT


@contextmanager
def serving(data_dir: Path, env: dict, *, limit_s: float = 180.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Starts ``launch.py serve --data DATA --port P``, waits until ``/api/v1/health`` answers,
    yields ``(base_url, process)``, and stops the server (terminate, then kill) afterwards.

    Raises:
        AssertionError: the server exited or did not answer within ``limit_s`` (its output is shown).
    """
    port = free_port()
    proc = subprocess.Popen([sys.executable, "launch.py", "serve", "--data", str(data_dir), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + limit_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}: {proc.stdout.read()[-3000:]!r}")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{base} did not answer within {limit_s:.0f} s"
            time.sleep(0.25)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
