"""Access to the bundled real mainnet calls (``common/testing/fixtures/mainnet_calls``; see its README for the
source and license: flashbots/mev-inspect-py block fixtures, MIT)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

MAINNET_CALLS_DIR = Path(__file__).resolve().parent / "fixtures" / "mainnet_calls"


@dataclass(frozen=True, slots=True)
class MainnetCall:
    """One top-level call of a real mainnet block, as recorded in the fixture."""

    block: int
    position: int
    tx_hash: str
    sender: str
    to: str | None
    value: int
    gas: int
    input: str
    base_fee: int | None
    effective_gas_price: int | None


def _from_row(row: dict) -> MainnetCall:
    return MainnetCall(
        block=int(row["block"]),
        position=int(row["position"]),
        tx_hash=row["tx_hash"],
        sender=row["from"],
        to=row.get("to"),
        value=int(row["value"], 16),
        gas=int(row["gas"], 16),
        input=row["input"],
        base_fee=row.get("base_fee"),
        effective_gas_price=row.get("effective_gas_price"),
    )


def iter_mainnet_calls(directory: Path = MAINNET_CALLS_DIR) -> Iterator[MainnetCall]:
    """Yields every bundled call, block files in block order, calls in block order."""
    for path in sorted(directory.glob("*.jsonl")):
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield _from_row(orjson.loads(line))


def load_mainnet_calls(directory: Path = MAINNET_CALLS_DIR) -> list[MainnetCall]:
    """All bundled calls as a list (about 2,500)."""
    return list(iter_mainnet_calls(directory))
