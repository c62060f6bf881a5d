"""The demo's live status (``./scripts/demo``, :mod:`common.testing.demo`): each chain's figures read from gatewayd's
``/dashboard/snapshot`` (:func:`parse_snapshot`), its rate over a short window (:class:`RateMeter`), the valued
opportunities of its recent transactions (:class:`ValuedTracker`), and the lines drawn over the previous ones in
a terminal (:func:`format_status`, :func:`redraw`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from common.chains import chain_name
from common.testing.stack import Stack
from common.testing.traffic import TrafficStats


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """What the status line shows for one chain, taken from one ``/dashboard/snapshot`` answer."""

    chain_id: int
    stored: int
    #: Transactions lost: ingestd's drops (dedup hits excluded) plus envelopes processd rejected.
    dropped: int
    #: Distinct transactions ingestd saw (the drop ratio's denominator).
    seen: int
    #: The snapshot's lifecycle figures (pending, included, replaced, dropped); None without them (lifecycle off).
    lifecycle: tuple[int, int, int, int] | None = None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


#: Drop reasons that are not a loss (a transaction announced again, by the same or another source).
NOT_A_LOSS = frozenset({"dedup"})
#: ingestd reports its block drops as ``block_<reason>`` among the chain's drops: not transactions lost.
BLOCK_DROP_PREFIX = "block_"


def _tx_loss(reason: Any) -> bool:
    return reason not in NOT_A_LOSS and not str(reason).startswith(BLOCK_DROP_PREFIX)


def _dropped(ingest: Any) -> int:
    """Sum of ingest losses: ``dropped`` as a ``{reason: count}`` map (gatewayd's shape), a list of
    ``{reason, count}``, or a number; dedup hits are not losses."""
    if not isinstance(ingest, dict):
        return 0
    drops = ingest.get("dropped", 0)
    if isinstance(drops, list):
        return sum(_int(d.get("count")) for d in drops if isinstance(d, dict) and _tx_loss(d.get("reason")))
    if isinstance(drops, dict):
        return sum(_int(v) for k, v in drops.items() if _tx_loss(k))
    return _int(drops)


def parse_snapshot(snapshot: Any) -> dict[int, ChainStatus]:
    """Per-chain counters from a ``/dashboard/snapshot`` JSON document (missing fields count as 0)."""
    chains = snapshot.get("chains", []) if isinstance(snapshot, dict) else []
    if isinstance(chains, dict):  # keyed by chain id
        chains = [{"chain_id": k, **v} for k, v in chains.items() if isinstance(v, dict)]
    out: dict[int, ChainStatus] = {}
    for item in chains:
        if not isinstance(item, dict):
            continue
        cid = _int(item.get("chain_id"))
        ingest = item.get("ingest") or {}
        rejected = item.get("rejected")
        n_rejected = sum(_int(v) for v in rejected.values()) if isinstance(rejected, dict) else 0
        life = item.get("lifecycle")
        out[cid] = ChainStatus(chain_id=cid, stored=_int(item.get("tx_count")), dropped=_dropped(ingest) + n_rejected,
                               seen=_int(ingest.get("seen")) if isinstance(ingest, dict) else 0,
                               lifecycle=_lifecycle(life))
    return out


#: The snapshot's lifecycle figures each chain's status line shows, in order.
LIFECYCLE_FIGURES = ("pending", "included", "replaced", "dropped")


def _lifecycle(life: Any) -> tuple[int, int, int, int] | None:
    """A chain's ``lifecycle`` figures of the snapshot (None when it has none)."""
    if not isinstance(life, dict):
        return None
    pending, included, replaced, dropped = (_int(life.get(k)) for k in LIFECYCLE_FIGURES)
    return pending, included, replaced, dropped


class RateMeter:
    """tx/s per chain over a sliding window of (time, stored) samples (bounded: ``window`` samples)."""

    def __init__(self, window: int = 5) -> None:
        self._samples: dict[int, deque[tuple[float, int]]] = {}
        self._window = window

    def add(self, now: float, statuses: dict[int, ChainStatus]) -> dict[int, float]:
        rates: dict[int, float] = {}
        for cid, st in statuses.items():
            samples = self._samples.setdefault(cid, deque(maxlen=self._window + 1))
            samples.append((now, st.stored))
            t0, n0 = samples[0]
            rates[cid] = (st.stored - n0) / (now - t0) if now > t0 else 0.0
        return rates


#: Native coin of a chain in the status line (the wrapped native token the valuation prices profits in).
NATIVE_SYMBOLS = {1: "ETH", 137: "MATIC", 10: "ETH", 8453: "ETH", 42161: "ETH", 56: "BNB"}
#: Opportunities asked for per chain and poll (``/opps/recent``'s largest page).
VALUED_PAGE = 200


@dataclass(slots=True)
class ValuedTally:
    """One chain's valued opportunities with a net profit seen by the demo, and the best net profit (wei)."""

    count: int = 0
    best_wei: int = 0
    #: Highest seq_id counted: an opportunity is counted once, when a poll first returns it.
    last_seq: int = 0


class ValuedTracker:
    """Counts valued opportunities from polls of ``/opps/recent?min_profit_wei=1&chain_id=`` (bounded: one tally
    per chain). A poll returns the window's best :data:`VALUED_PAGE`, so opportunities that were never among
    them between two polls are not counted (the count is a lower bound when more than that arrive per poll)."""

    def __init__(self) -> None:
        self.tallies: dict[int, ValuedTally] = {}

    def add(self, chain_id: int, opportunities: Any) -> None:
        """Takes one poll's ``opportunities`` list of ``chain_id``."""
        tally = self.tallies.setdefault(chain_id, ValuedTally())
        newest = tally.last_seq
        for o in opportunities if isinstance(opportunities, list) else ():
            if not isinstance(o, dict) or not o.get("valued"):
                continue
            seq, net = _int(o.get("seq_id")), _int(o.get("net_profit_wei"))
            if seq > tally.last_seq:
                tally.count += 1
                newest = max(newest, seq)
            tally.best_wei = max(tally.best_wei, net)
        tally.last_seq = newest

    def poll(self, stack: Stack, chain_ids: list[int]) -> None:
        """One ``/opps/recent?min_profit_wei=1`` per chain."""
        for cid in chain_ids:
            body = stack.get_json("/opps/recent", chain_id=cid, min_profit_wei=1, limit=VALUED_PAGE)
            self.add(cid, body.get("opportunities") if isinstance(body, dict) else None)


def valued_text(chain_id: int, tally: ValuedTally | None) -> str:
    """`` 12 valued, best 0.0312 ETH``: the chain's valued opportunities and best net profit in its native coin."""
    if tally is None:
        return ""
    best = f"{tally.best_wei / 10**18:.4f} {NATIVE_SYMBOLS.get(chain_id, 'native')}" if tally.count else "-"
    return f" {tally.count} valued, best {best}"


def format_status(chain_ids: list[int], statuses: dict[int, ChainStatus], rates: dict[int, float],
                  traffic: dict[int, TrafficStats], elapsed_s: float,
                  valued: dict[int, ValuedTally] | None = None) -> list[str]:
    """The status: one line per chain (tx/s, stored, its transactions' lifecycle: pending / included / replaced /
    dropped, and with swaps its valued opportunities and best net profit), then one line of totals (stored, lost
    in ingest, generated)."""
    lines = []
    for cid in chain_ids:
        st = statuses.get(cid)
        stored = st.stored if st else 0
        life = st.lifecycle if st else None
        figures = " / ".join(f"{n} {name}" for n, name in zip(life, LIFECYCLE_FIGURES, strict=True)) if life \
            else "lifecycle off"
        lines.append(f"[{elapsed_s:5.0f}s] {chain_name(cid) + f'({cid})':<14} {rates.get(cid, 0.0):5.0f} tx/s "
                     f"{stored:>7} stored | {figures}"
                     + (f" |{valued_text(cid, valued.get(cid, ValuedTally()))}" if valued is not None else ""))
    total = sum(st.stored for st in statuses.values())
    dropped = sum(st.dropped for st in statuses.values())
    seen = sum(st.seen for st in statuses.values())
    ratio = f" ({100.0 * dropped / seen:.2f}%)" if seen else ""
    sent = sum(t.accepted for t in traffic.values())
    behind = sum(t.behind for t in traffic.values())
    # Skipped sends mean anvil (not mempulse) is the limit: say so, or a lower tx/s looks like a loss.
    lag = f" ({behind} skipped: anvil cannot take the target rate)" if behind else ""
    lines.append(f"[{elapsed_s:5.0f}s] total {total} stored, {dropped} lost in ingest{ratio}, {sent} generated{lag}")
    return lines


def redraw(lines: list[str], drawn: int, width: int) -> str:
    """What rewrites the ``drawn`` status lines printed last (0: none yet) with ``lines`` on a terminal, each cut to
    ``width`` (a wrapped line could not be redrawn in place)."""
    up = f"\x1b[{drawn - 1}F" if drawn > 1 else ""
    return up + "\r" + "\n".join("\x1b[K" + line[:width] for line in lines)
