"""Fixtures of the processd tests: a real in-process ProcessdServer on a free port with LMDB in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from processd.api.server import ProcessdServer
from tests.processd._helpers import make_config


@pytest.fixture
async def server_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ProcessdServer]]]:
    """Starts ProcessdServers (``await server_factory(data_dir=..., **config)``); all stopped at teardown."""
    servers: list[ProcessdServer] = []

    async def start(data_dir: Path | None = None, **overrides: Any) -> ProcessdServer:
        srv = ProcessdServer(make_config(data_dir or tmp_path / "lmdb", **overrides))
        servers.append(srv)
        return await srv.start()

    yield start
    for srv in servers:
        await srv.stop(grace_s=0.5)


@pytest.fixture
async def server(server_factory: Callable[..., Awaitable[ProcessdServer]]) -> ProcessdServer:
    """One running ProcessdServer with default limits."""
    return await server_factory()
