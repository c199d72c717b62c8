"""API key configuration: hashes only, constant-time matching, and the refusal to serve
other machines without keys."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from service.auth import AuthConfigError, KeyRing, check_startup, configured_hashes, hash_key
from service.contract.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_a_key_is_known_by_its_sha256_only() -> None:
    digest = hashlib.sha256(b"k1").hexdigest()
    ring = KeyRing(frozenset({digest}))
    assert hash_key("k1") == digest
    assert ring.owner("k1") == digest
    assert [ring.owner(k) for k in ("k2", "", None, digest)] == [None, None, None, None]


def test_hashes_come_from_the_setting_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# ops team\n{hash_key('b')}\n\n  {hash_key('c').upper()}  \n")
    settings = Settings(api_keys=f" {hash_key('a')} ,", api_keys_file=path)
    assert configured_hashes(settings) == {hash_key(k) for k in "abc"}


@pytest.mark.parametrize("value", ["not-a-hash", "ab" * 31, "g" * 64])
def test_a_malformed_hash_refuses_to_start(value: str) -> None:
    with pytest.raises(AuthConfigError, match="is not a sha256 hex digest"):
        configured_hashes(Settings(api_keys=value))


def test_an_unreadable_key_file_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read api_keys_file"):
        configured_hashes(Settings(api_keys_file=tmp_path / "missing"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:6379/0"])
def test_loopback_serves_without_keys(host: str, redis_url: str) -> None:
    assert not check_startup(Settings(redis_url=redis_url), host).enabled


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_another_host_without_keys_refuses_to_start(host: str) -> None:
    with pytest.raises(AuthConfigError, match="refusing to start embedded mode on"):
        check_startup(Settings(), host)
    assert check_startup(Settings(api_keys=hash_key("k")), host).enabled
    assert not check_startup(Settings(allow_anonymous=True), host).enabled


def test_serve_on_an_open_host_without_keys_exits_saying_why() -> None:
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"refusing to start embedded mode on '0.0.0.0' without API keys" in done.stderr


def test_the_hash_command_prints_what_the_setting_takes() -> None:
    command = [sys.executable, "-m", "service.auth", "k1", "k2"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout == f"{hash_key('k1')},{hash_key('k2')}\n"
