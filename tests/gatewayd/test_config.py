"""gatewayd configuration: CLI flags, MEMPULSE_* env, defaults, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.envconfig import ConfigError
from gatewayd.config import GatewayConfig, load_config


def test_defaults_bind_loopback_and_keep_auth_and_cors_off() -> None:
    cfg = load_config([], env={})
    assert (cfg.listen_host, cfg.listen_port, cfg.processd_target) == ("127.0.0.1", 8080, "127.0.0.1:50051")
    assert not cfg.auth_enabled and cfg.cors_origins == () and cfg.workers == 1


def test_flags_beat_env_beat_defaults(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nfile-key-1\n\nfile-key-2\n")
    env = {
        "MEMPULSE_GATEWAYD_LISTEN": "127.0.0.1:9000",
        "MEMPULSE_GATEWAYD_RATE_LIMIT_RPS": "5",
        "MEMPULSE_GATEWAYD_API_KEYS": "env-a, env-b",
        "MEMPULSE_GATEWAYD_CORS_ORIGINS": "https://a.example,https://b.example",
    }
    cfg = load_config(
        ["--rate-limit-rps", "7.5", "--api-keys-file", str(keys), "--processd", "10.0.0.1:1", "--cache-ttl-ms", "0"],
        env={**env, "MEMPULSE_GATEWAYD_SNAPSHOT_CACHE_TTL_MS": "1000"},
    )
    assert cfg.cache_ttl_ms == 0 and cfg.snapshot_cache_ttl_ms == 1000
    assert cfg.listen_port == 9000 and cfg.rate_limit_rps == 7.5 and cfg.processd_target == "10.0.0.1:1"
    assert cfg.api_keys == {"env-a", "env-b", "file-key-1", "file-key-2"}
    assert cfg.cors_origins == ("https://a.example", "https://b.example")
    assert "env-a" not in repr(cfg)  # keys never end up in logs via repr


@pytest.mark.parametrize(
    "argv,env",
    [
        (["--listen", "nohost"], {}),
        (["--listen", "127.0.0.1:70000"], {}),
        (["--processd", "x"], {}),
        (["--rate-limit-rps", "-1"], {}),
        (["--auth-failure-limit-per-min", "-1"], {}),
        ([], {"MEMPULSE_GATEWAYD_AUTH_FAILURE_BURST": "0"}),
        (["--max-header-bytes", "100"], {}),
        (["--workers", "0"], {}),
        ([], {"MEMPULSE_GATEWAYD_GRPC_TIMEOUT_MS": "soon"}),
        (["--api-keys-file", "/nonexistent/keys"], {}),
        ([], {"MEMPULSE_GATEWAYD_API_KEYS": "a b"}),
        (["--cache-ttl-ms", "-1"], {}),
        ([], {"MEMPULSE_GATEWAYD_SNAPSHOT_CACHE_TTL_MS": "999999"}),
    ],
)
def test_bad_config_raises_config_error(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(argv, env=env)


def test_config_is_frozen() -> None:
    cfg = GatewayConfig()
    with pytest.raises(AttributeError):
        cfg.listen_port = 1  # type: ignore[misc]


def test_cli_bad_config_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatewayd", "--listen", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gatewayd: error:") and "99999" in lines[0]


def test_cli_help_documents_flags() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gatewayd", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0
    for flag in [
        "--listen",
        "--processd",
        "--api-keys-file",
        "--rate-limit-rps",
        "--rate-limit-burst",
        "--auth-failure-limit-per-min",
        "--cors-origins",
        "--max-request-bytes",
        "--max-header-bytes",
        "MEMPULSE_GATEWAYD_API_KEYS",
    ]:
        assert flag in proc.stdout


def test_access_log_masks_unknown_query_values() -> None:
    import logging

    from gatewayd.__main__ import RedactQueryFilter

    record = logging.LogRecord("sanic.access", logging.INFO, __file__, 1, "", None, None)
    record.request = "GET http://h/transactions?chain_id=137&api_key=secret123&limit=5&token="
    assert RedactQueryFilter().filter(record)
    assert record.request == "GET http://h/transactions?chain_id=137&api_key=***&limit=5&token=***"
