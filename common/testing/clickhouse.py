"""Real ClickHouse servers for tests and benchmarks (:mod:`common.testing.clickhouse_server`) with SQL queries over
the native protocol (clickhouse-driver, the ``export`` extra). :func:`shard_pair` makes two servers that both know
the cluster ``mempulse_shards`` (one shard each), the layout the exporter's Distributed tables are tested on.
"""

from __future__ import annotations

from pathlib import Path

from clickhouse_driver import Client

from common.testing.clickhouse_server import CLUSTER, ClickHouseProcess, clickhouse_binary, shard_ports

__all__ = ["CLUSTER", "ClickHouseServer", "clickhouse_binary", "shard_pair"]


class ClickHouseServer(ClickHouseProcess):
    """A :class:`ClickHouseProcess` that answers SQL."""

    def query(self, sql: str, params: object = None) -> list[tuple[object, ...]]:
        """Runs one statement on a fresh connection and returns its rows."""
        client = Client(self.host, port=self.port, connect_timeout=3, send_receive_timeout=60)
        try:
            return list(client.execute(sql, params))
        finally:
            client.disconnect()


def shard_pair(root: Path) -> tuple[ClickHouseServer, ClickHouseServer]:
    """Two servers (not started) that both define the cluster :data:`CLUSTER`: shard 1 = the first, 2 = the
    second."""
    shards = shard_ports()
    return (ClickHouseServer(root / "shard1", tcp_port=shards[0][1], shards=shards),
            ClickHouseServer(root / "shard2", tcp_port=shards[1][1], shards=shards))
