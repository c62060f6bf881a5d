"""``./scripts/demo --export clickhouse``: a local ClickHouse and ``mempulse-export`` beside the demo's stack, and
the export's position and lag for the status line (read from the exporter's Prometheus metrics).

Opt-in: the default demo runs neither and needs no ClickHouse. The server is Debian's ``clickhouse-server``
(:mod:`common.testing.clickhouse_server`, no ClickHouse client in the demo itself); the exporter is the real
``python -m processd.export`` (it needs the ``export`` extra, which scripts/demo installs when asked for it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import TracebackType

import httpx

from common.envconfig import ConfigError
from common.testing.clickhouse_server import ClickHouseProcess, clickhouse_binary
from common.testing.netutil import free_port
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.stack import REPO_ROOT

EXPORT_TARGETS = ("clickhouse",)
_SERIES = ("mempulse_export_lag_seconds", "mempulse_export_exported_seq", "mempulse_export_head_seq")


def check_export_prerequisites() -> None:
    """Raises a one-line ConfigError saying what to install when the export cannot run here."""
    if clickhouse_binary() is None:
        raise ConfigError("--export clickhouse needs a ClickHouse server: apt-get install clickhouse-server "
                          "(or set MEMPULSE_CLICKHOUSE_BIN)")
    if importlib.util.find_spec("clickhouse_driver") is None:
        raise ConfigError("--export clickhouse needs the export extra: .venv/bin/pip install -e '.[export]'")


def parse_export_metrics(text: str) -> dict[str, float]:
    """The export series the status line shows, from a Prometheus text exposition (missing ones left out)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in _SERIES:
            found[name] = float(value)
    return found


def export_status(metrics: dict[str, float]) -> str:
    """The status line's export part: ``export lag 0.31 s, seq 1234/1240`` (``export starting`` before a batch)."""
    exported = int(metrics.get("mempulse_export_exported_seq", 0))
    head = int(metrics.get("mempulse_export_head_seq", 0))
    if "mempulse_export_lag_seconds" not in metrics or not exported:
        return f"export starting (seq {exported}/{head})"
    return f"export lag {metrics['mempulse_export_lag_seconds']:.2f} s, seq {exported}/{head}"


class DemoExport:
    """ClickHouse on free ports under ``root`` and an exporter tailing ``processd_addr`` into it."""

    def __init__(self, root: Path, processd_addr: str, log_dir: Path) -> None:
        self.clickhouse = ClickHouseProcess(root)
        self.metrics_port = free_port()
        argv = python_module_argv("processd.export", "--processd", processd_addr, "--clickhouse",
                                  self.clickhouse.address, "--database", "mempulse", "--metrics-port",
                                  str(self.metrics_port))
        self.exporter = ManagedProcess("mempulse-export", argv, log_dir / "export.log", env=child_env(),
                                       cwd=REPO_ROOT, ready=self._metrics_up, ready_timeout_s=60)

    def _metrics_up(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).status_code == 200

    def __enter__(self) -> DemoExport:
        try:
            self.clickhouse.start()
            self.exporter.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops the exporter, then ClickHouse. Idempotent."""
        self.exporter.stop()
        self.clickhouse.stop()

    def metrics(self) -> dict[str, float]:
        """The exporter's current export series ({} when it does not answer)."""
        try:
            return parse_export_metrics(httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).text)
        except httpx.HTTPError:
            return {}

    def status(self) -> str:
        if not self.exporter.alive:
            return f"export STOPPED (exit {self.exporter.returncode}, see {self.exporter.log_path})"
        return export_status(self.metrics())

    def banner(self) -> str:
        return (f"Export: ClickHouse {self.clickhouse.address} (native; http {self.clickhouse.http_port}), database "
                f"mempulse, exporter log {self.exporter.log_path}; e.g. clickhouse-client --port "
                f"{self.clickhouse.port} -q 'SELECT chain_id, count() FROM mempulse.events GROUP BY chain_id'")
