"""The valuation's input: pool reserves as a plain mapping, and the protocol of whatever provides them.

The analysis runs in worker processes and must be a function of its inputs (replaying the log reproduces every
result), so the reserves a batch's valuation uses are gathered by the pipeline *before* the analysis, from a
:class:`ReserveSource`, and sent with the batch as a :data:`Reserves` mapping. With no source configured the
mapping is empty and every opportunity falls back to the heuristic score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~6x to build, and one is built per swap
class PoolReserves:
    """A Uniswap V2-style pair's reserves at ``block_number`` (``getReserves()``), tokens sorted as the pair's."""

    chain_id: int
    #: The pair contract's 20-byte address.
    pair: bytes
    token0: bytes
    token1: bytes
    reserve0: int
    reserve1: int
    block_number: int


#: (chain id, 20-byte pair address) -> its reserves: the valuation's whole view of the chain's state.
Reserves = Mapping[tuple[int, bytes], PoolReserves]

#: A :class:`PoolReserves` as plain values (what goes through the analysis workers' pipes in ``marshal``).
WireReserves = tuple[int, bytes, bytes, bytes, int, int, int]


class ReserveSource(Protocol):
    """Where the pipeline reads reserves from (the pool-state view); None when the pair is unknown."""

    def lookup(self, chain_id: int, pair: bytes) -> PoolReserves | None:
        """The latest known reserves of ``pair`` on ``chain_id``."""
        ...


def to_wire(reserves: Iterable[PoolReserves]) -> tuple[WireReserves, ...]:
    """Reserves as tuples of ints and bytes (``marshal``-able), sorted so equal inputs give equal bytes."""
    return tuple(sorted((r.chain_id, r.pair, r.token0, r.token1, r.reserve0, r.reserve1, r.block_number)
                        for r in reserves))


def from_wire(rows: Iterable[WireReserves]) -> dict[tuple[int, bytes], PoolReserves]:
    """The :data:`Reserves` mapping of :func:`to_wire`'s rows."""
    return {(row[0], row[1]): PoolReserves(*row) for row in rows}
