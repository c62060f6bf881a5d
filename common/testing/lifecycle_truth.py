"""The node's truth about the transactions a traffic generator sent (issue 16): what anvil says happened to each,
as plain records that an end-to-end test compares with what mempulse reports.

:func:`node_truth` asks the node, in JSON-RPC batches, for each sent transaction's receipt and, without one, for the
transaction itself and its sender's mined nonce:

- a receipt: ``included`` (block number, index, receipt status 1 ok / 0 reverted);
- no receipt, and the node still has it (``eth_getTransactionByHash`` without a block): ``pending``;
- unknown to the node and not mined, and another transaction took its (sender, nonce) in a block: ``replaced``
  (``replaced_by`` = that transaction's hash when it is among the records, else ``""``: replaced by a transaction
  the generator did not send);
- unknown to the node, its nonce not used yet, and a later record with its (sender, nonce) (a speed-up or cancel
  the node accepted, so it took this one's place in the pool; whatever became of it then: anvil may drop it when
  mining, and it is judged on its own) or another record of that slot pending in the node: ``replaced`` by that
  one;
- unknown to the node, not mined, its nonce not used and not held by a pending record: ``dropped``.

The shape (what :func:`compare` takes on both sides)::

    hash -> {"status": "included" | "replaced" | "dropped" | "pending",
             "block_number": int | None, "index": int | None, "receipt_status": int | None,
             "replaced_by": str | None}

Hashes are ``0x`` lower-case hex. A replacement that was itself replaced or dropped is judged the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

STATUSES = ("included", "replaced", "dropped", "pending")
_BATCH = 200


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One transaction the generator sent: hash, chain, sender, nonce, fee (gas price or max fee, wei) and kind
    (``original``, ``speedup``, ``cancel``)."""

    tx_hash: str
    chain_id: int
    sender: str
    nonce: int
    fee: int
    kind: str = "original"


def load_records(path: str) -> list[SentRecord]:
    """The records ``scripts/generate --records-out FILE`` wrote (one JSON object per line)."""
    with open(path, "rb") as f:
        return [SentRecord(**orjson.loads(line)) for line in f if line.strip()]


def _truth(status: str, block_number: int | None = None, index: int | None = None,
           receipt_status: int | None = None, replaced_by: str | None = None) -> dict[str, Any]:
    return {"status": status, "block_number": block_number, "index": index, "receipt_status": receipt_status,
            "replaced_by": replaced_by}


def _batch(client: httpx.Client, url: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """The results of ``calls`` (JSON-RPC batches of at most 200), in order; an error item raises."""
    out: list[Any] = []
    for start in range(0, len(calls), _BATCH):
        chunk = calls[start:start + _BATCH]
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)]
        resp = client.post(url, json=body)
        resp.raise_for_status()
        by_id = {item["id"]: item for item in resp.json()}
        for i in range(len(chunk)):
            item = by_id.get(i)
            if item is None or "error" in item:
                raise RuntimeError(f"{chunk[i][0]} failed: {item}")
            out.append(item.get("result"))
    return out


def node_truth(http_url: str, records: Iterable[SentRecord], timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """What the node at ``http_url`` says happened to each record (module docstring for the shape)."""
    recs = list({r.tx_hash.lower(): r for r in records}.values())
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=timeout_s) as client:
        receipts = _batch(client, http_url, [("eth_getTransactionReceipt", [r.tx_hash]) for r in recs])
        #: (sender, nonce) -> hash of the included transaction among the records
        included_at: dict[tuple[str, int], str] = {}
        rest: list[SentRecord] = []
        for rec, receipt in zip(recs, receipts, strict=True):
            if isinstance(receipt, dict) and receipt.get("blockNumber") is not None:
                out[rec.tx_hash.lower()] = _truth("included", int(receipt["blockNumber"], 16),
                                                  int(receipt["transactionIndex"], 16), int(receipt["status"], 16))
                included_at[(rec.sender.lower(), rec.nonce)] = rec.tx_hash.lower()
            else:
                rest.append(rec)
        if not rest:
            return out
        txs = _batch(client, http_url, [("eth_getTransactionByHash", [r.tx_hash]) for r in rest])
        senders = sorted({r.sender.lower() for r in rest})
        mined_nonce = dict(zip(senders, (int(n, 16) for n in _batch(
            client, http_url, [("eth_getTransactionCount", [s, "latest"]) for s in senders])), strict=True))
    pending_at = {(r.sender.lower(), r.nonce): r.tx_hash.lower() for r, tx in zip(rest, txs, strict=True)
                  if isinstance(tx, dict)}
    next_in_slot = _next_in_slot(recs)
    for rec, tx in zip(rest, txs, strict=True):
        key, slot = rec.tx_hash.lower(), (rec.sender.lower(), rec.nonce)
        if isinstance(tx, dict):
            out[key] = _truth("pending")
        elif mined_nonce[rec.sender.lower()] > rec.nonce:
            out[key] = _truth("replaced", replaced_by=included_at.get(slot, ""))
        elif key in next_in_slot or slot in pending_at:
            out[key] = _truth("replaced", replaced_by=next_in_slot.get(key) or pending_at[slot])
        else:
            out[key] = _truth("dropped")
    return out


def _next_in_slot(records: Sequence[SentRecord]) -> dict[str, str]:
    """hash -> the hash of the next record (in send order) with the same (sender, nonce): what replaced it."""
    last: dict[tuple[str, int], str] = {}
    out: dict[str, str] = {}
    for r in records:
        slot = (r.sender.lower(), r.nonce)
        if slot in last:
            out[last[slot]] = r.tx_hash.lower()
        last[slot] = r.tx_hash.lower()
    return out


def compare(truth: Mapping[str, Mapping[str, Any]], reported: Mapping[str, Mapping[str, Any]],
            fields: Sequence[str] = ("status", "block_number", "index", "receipt_status", "replaced_by"),
            ) -> dict[str, list[str]]:
    """Where ``reported`` (mempulse's view, same shape) differs from ``truth``: hash -> the differing fields
    (``missing`` when mempulse does not report the hash at all). A ``replaced_by`` of ``""`` in the truth (replaced
    by a transaction the generator did not send) matches any reported value. Empty when they agree."""
    diff: dict[str, list[str]] = {}
    for tx_hash, want in truth.items():
        got = reported.get(tx_hash)
        if got is None:
            diff[tx_hash] = ["missing"]
            continue
        wrong = [f for f in fields if want.get(f) != got.get(f)
                 and not (f == "replaced_by" and want.get(f) == "")]
        if wrong:
            diff[tx_hash] = wrong
    return diff


def summary(truth: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """How many transactions have each status."""
    counts = dict.fromkeys(STATUSES, 0)
    for t in truth.values():
        counts[t["status"]] += 1
    return counts
