"""A real ClickHouse server as a child process: free loopback ports, its own config and data dir.

The server is Debian's ``clickhouse-server`` package (18.16 on Debian 12/13; scripts/_env.sh installs it at the
dev level when missing), found at ``MEMPULSE_CLICKHOUSE_BIN``, on ``PATH`` or in ``/usr/sbin``. Servers are
:class:`~common.testing.process.ManagedProcess` children: ``kill()`` + ``start()`` restarts one on the same ports
over the same data. This module needs no ClickHouse client (readiness is the HTTP interface's ``/ping``), so the
demo runs it on the runtime install; :mod:`common.testing.clickhouse` adds SQL queries for tests and benchmarks.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from common.testing.netutil import free_port
from common.testing.process import ManagedProcess

#: The cluster name :func:`shard_pair` configures.
CLUSTER = "mempulse_shards"


def clickhouse_binary() -> str | None:
    """Path of ``clickhouse-server``: ``MEMPULSE_CLICKHOUSE_BIN``, then ``PATH``, then ``/usr/sbin``; None if absent."""
    explicit = os.environ.get("MEMPULSE_CLICKHOUSE_BIN")
    if explicit:
        return explicit
    found = shutil.which("clickhouse-server")
    if found:
        return found
    return "/usr/sbin/clickhouse-server" if os.access("/usr/sbin/clickhouse-server", os.X_OK) else None


def _remote_servers(shards: Sequence[tuple[str, int]]) -> str:
    parts = "".join(f"<shard><replica><host>{escape(h)}</host><port>{p}</port></replica></shard>" for h, p in shards)
    return f"<remote_servers><{CLUSTER}>{parts}</{CLUSTER}></remote_servers>"


def _config(root: Path, tcp_port: int, http_port: int, shards: Sequence[tuple[str, int]]) -> str:
    return f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/server.log</log><errorlog>{root}/error.log</errorlog>
    <size>10M</size><count>2</count><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>64</max_concurrent_queries>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  {_remote_servers(shards) if shards else ""}
</yandex>
"""


_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"""


class ClickHouseProcess(ManagedProcess):
    """One ``clickhouse-server`` on 127.0.0.1 with its config and data under ``root``."""

    def __init__(self, root: Path, *, tcp_port: int | None = None, shards: Sequence[tuple[str, int]] = (),
                 binary: str | None = None) -> None:
        binary = binary or clickhouse_binary()
        if binary is None:
            raise FileNotFoundError("clickhouse-server not found (apt-get install clickhouse-server, or set "
                                    "MEMPULSE_CLICKHOUSE_BIN)")
        self.root = root
        self.host = "127.0.0.1"
        self.port = tcp_port or free_port()
        self.http_port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.xml").write_text(_config(root, self.port, self.http_port, shards))
        (root / "users.xml").write_text(_USERS)
        super().__init__(f"clickhouse:{self.port}", [binary, f"--config-file={root / 'config.xml'}"],
                         root / "stdout.log", cwd=root, ready=self._serving, ready_timeout_s=60, stop_timeout_s=30)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _serving(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/ping", timeout=1) as resp:
                return bool(resp.read().strip() == b"Ok.")
        except OSError:
            return False


def shard_ports() -> list[tuple[str, int]]:
    """(host, native port) of two servers-to-be that form the cluster :data:`CLUSTER`, one shard each."""
    return [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
