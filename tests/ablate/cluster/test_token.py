"""The token a local Ray uses is made once, whole, even by drivers that start at once."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ablate.cluster.access import ensure_local_token, read_token

MAKE_AND_READ = (
    "from ablate.cluster.access import ensure_local_token, read_token\n"
    "ensure_local_token()\n"
    "print(read_token()[0])\n"
)


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A machine Ray has never run on: no ~/.ray, no token in the environment."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_drivers_starting_at_once_on_a_fresh_machine_share_one_whole_token(fresh_home):
    procs = [
        subprocess.Popen([sys.executable, "-c", MAKE_AND_READ], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    seen = {p.communicate(timeout=120)[0].strip() for p in procs}
    token = (fresh_home / ".ray" / "auth_token").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)  # as Ray makes one
    assert seen == {token}
    assert [p.name for p in (fresh_home / ".ray").iterdir()] == ["auth_token"]  # no drafts left
    assert (fresh_home / ".ray" / "auth_token").stat().st_mode & 0o077 == 0


def test_a_token_there_is_kept(fresh_home):
    (fresh_home / ".ray").mkdir()
    (fresh_home / ".ray" / "auth_token").write_text("ours")
    ensure_local_token()
    assert read_token() == ("ours", str(fresh_home / ".ray" / "auth_token"))


@pytest.mark.parametrize(
    "env", [{"RAY_AUTH_TOKEN": "abc"}, {"RAY_AUTH_TOKEN_PATH": "/x"}, {"RAY_AUTH_MODE": "disabled"}]
)
def test_a_token_given_elsewhere_or_authentication_off_is_left_to_ray(fresh_home, monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ensure_local_token()
    assert not (fresh_home / ".ray").exists()
