"""Fixtures of the client tests: a real in-process processd (LMDB in tmp_path) seeded with synthetic transactions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._helpers import make_config

#: Transactions the seeded processd holds (chains 1, 137, 56 in turn: real mainnet calldata).
SEED_TXS = 90


@pytest.fixture
async def server_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ProcessdServer]]]:
    """Starts in-process ProcessdServers (``await server_factory(**config)``); all stopped at teardown."""
    servers: list[ProcessdServer] = []

    async def start(data_dir: Path | None = None, **overrides: Any) -> ProcessdServer:
        # analysis_workers=0: in-process preparation; the client does not care, and the machine is shared.
        srv = ProcessdServer(make_config(data_dir or tmp_path / "lmdb", **{"analysis_workers": 0, **overrides}))
        servers.append(srv)
        return await srv.start()

    yield start
    for srv in servers:
        await srv.stop(grace_s=0.5)


@pytest.fixture
async def seeded(server_factory: Callable[..., Awaitable[ProcessdServer]]) -> ProcessdServer:
    """A processd holding SEED_TXS synthetic transactions (seed 7)."""
    srv = await server_factory()
    await push_envelopes(srv.address, synthetic_envelopes(SEED_TXS, seed=7), batch_size=30)
    return srv
