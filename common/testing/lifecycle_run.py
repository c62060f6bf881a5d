"""Issue 16's proof by execution: the transaction lifecycle mempulse reports, for every transaction a traffic
generator sent, against what the node says (:mod:`common.testing.lifecycle_truth`), through kill -9s and a reorg.

:func:`run` starts a stack (:mod:`common.testing.stack`) on mining anvils, sends replayed traffic with speed-ups
and cancels, and meanwhile, at set points of the traffic time: evicts pending transactions mempulse has stored
(``anvil_dropTransaction``; ingestd's re-check reports them gone), kill -9s processd and ingestd (each restarted at
once), and reorganises one chain (``anvil_reorg``: the newest ``reorg_depth`` blocks replaced by blocks with the
same transactions, so every hash stays mined, at the same height, in a block with another hash). Then it stops
the traffic, lets the chains mine until the pools stop shrinking, drops what stays (nonce gaps: anvil leaves
them pending forever), asks the node for its truth and gatewayd for mempulse's (``/transactions/{hash}``), until
they agree or ``settle_timeout_s`` passes, and returns the figures (:class:`RunResult`).

Semantics, where the node and mempulse cannot see the same thing:

- a transaction processd never stored (``404``) that a block processd stored lists is **private flow**: it was
  sent while ingestd was down and mined before its restart's backfill. It is reported from the block (number,
  index, receipt status: ``/events?kinds=block``), counted as ``private``, and compared like the others;
- a transaction mempulse never saw and no stored block lists, sent while ingestd was down (from a second before
  the kill, what ingestd had received but not delivered dies with it, to a few seconds after the restart's pool
  backfill), that the node says was replaced or dropped is
  **unobservable**: it left the pool before any of mempulse's sources could see it. So is one, never mined,
  whose nonce is above its sender's final nonce: it sat behind a nonce gap (an evicted or anvil-dropped earlier
  nonce of its sender) until anvil dropped it or the run did at the end, and anvil does not announce a
  transaction it cannot mine on ``newPendingTransactions``, so no mempool watcher sees it. Both are counted
  (``unobservable``: ``downtime`` / ``behind_gap``), not mismatches; anything else missing is a mismatch;
- no daemon bug is counted apart any more: a speed-up or cancel the node accepted while it was mining the original,
  which it then mined (docs/reliability.md bug 19), and a transaction stored after the block that includes it
  (bug 20), are fixed and count as mismatches like any other;
- inclusion latency: for each included transaction that ingestd saw live (sent outside a downtime), mempulse's
  ``inclusion_latency_ms`` against the block's timestamp minus the generator's send time; the error must be
  within one block time (``latency_errors_ms``). A backfilled transaction's first seen is the backfill's time. A
  block stamped before the send (anvil's clock runs behind after ``anvil_reorg``) is a latency of 0 on both sides,
  as processd clamps it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common.testing.lifecycle_faults import batch_rpc, evict, fund_funder, kill9, reorg, rpc
from common.testing.lifecycle_truth import SentRecord, compare, node_truth, summary
from common.testing.replay import SentTx
from common.testing.stack import ChainSpec, Stack, StackConfig

log = logging.getLogger(__name__)

#: After a restart, how long sends still count as unseen (the pool backfill runs once the subscription is up); and
#: before the kill, for what ingestd had received and not yet delivered (lost with it, by design: nothing unacked).
_DOWN_MARGIN_S = 3.0
_DOWN_MARGIN_BEFORE_S = 1.0
@dataclass(frozen=True)
class RunConfig:
    """What :func:`run` does. Times are seconds into the traffic (``traffic_s`` long); None = not done."""

    chains: tuple[ChainSpec, ...] = (ChainSpec(1, rate_tx_s=25, block_time_s=1, replace_share=0.1),
                                     ChainSpec(137, rate_tx_s=25, block_time_s=1, replace_share=0.1))
    traffic_s: float = 30.0
    evict_at_s: float | None = 4.0
    evictions_per_chain: int = 5
    kill_processd_at_s: float | None = 9.0
    kill_ingestd_at_s: float | None = 15.0
    reorg_at_s: float | None = 21.0
    reorg_chain: int = 137
    reorg_depth: int = 2
    #: ingestd's pending re-check interval (evictions are reported after two null answers).
    recheck_interval_ms: int = 500
    #: ingestd's block_backfill_depth: the blocks mined while it was down reach processd after its restart.
    block_backfill_depth: int = 64
    #: Keep the traffic going past ``traffic_s`` (up to twice as long) until the generators sent this many.
    min_records: int = 0
    drain_timeout_s: float = 60.0
    #: The wait ends as soon as mempulse agrees with the node, so a long bound costs nothing on a good run; on a
    #: 2-core machine under heavy load the last nonce-passed and evicted settlements took up to ~2 minutes.
    settle_timeout_s: float = 150.0
    #: Threads asking gatewayd about the transactions.
    query_threads: int = 8
    log_dir: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """The figures of one run (``as_json()`` is the artifact)."""

    records: int = 0
    by_chain: dict[int, dict[str, int]] = field(default_factory=dict)
    truth_counts: dict[str, int] = field(default_factory=dict)
    replacements: int = 0
    evicted: list[str] = field(default_factory=list)
    #: hash -> what mempulse reports for each evicted transaction (its status, and reason when dropped).
    evicted_reported: dict[str, str] = field(default_factory=dict)
    reorgs: list[dict[str, Any]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    left_in_pool_dropped: int = 0
    #: chain id -> sender -> its nonce at the end (records above it sat behind a nonce gap: module doc).
    final_nonces: dict[int, dict[str, int]] = field(default_factory=dict)
    private: int = 0
    unobservable: dict[str, int] = field(default_factory=dict)
    mismatches: dict[str, list[str]] = field(default_factory=dict)
    mismatch_examples: list[dict[str, Any]] = field(default_factory=list)
    reported_reasons: dict[str, int] = field(default_factory=dict)
    latency_errors_ms: list[int] = field(default_factory=list)
    latency_checked: int = 0
    latency_over_block_time: int = 0
    #: The first 20 latency errors over one block time: hash, chain, error, send and first-seen times.
    latency_outliers: list[dict[str, Any]] = field(default_factory=list)
    snapshot_lifecycle: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The artifact's document: counts, mismatches with up to 20 examples, the latency error distribution."""
        errs = sorted(self.latency_errors_ms)

        def pct(q: float) -> int | None:
            return errs[min(len(errs) - 1, int(q * len(errs)))] if errs else None

        return {"records": self.records, "by_chain": {str(k): v for k, v in self.by_chain.items()},
                "truth": self.truth_counts, "replacements": self.replacements,
                "replacement_share": round(self.replacements / self.records, 4) if self.records else 0.0,
                "evicted": len(self.evicted), "reorgs": self.reorgs, "kills": self.kills,
                "left_in_pool_dropped": self.left_in_pool_dropped, "private": self.private,
                "unobservable": self.unobservable,
                "mismatches": len(self.mismatches),
                "mismatch_fields": _field_counts(self.mismatches), "mismatch_examples": self.mismatch_examples[:20],
                "reported_drop_reasons": self.reported_reasons,
                "latency": {"checked": self.latency_checked, "over_one_block_time": self.latency_over_block_time,
                            "error_ms_min": errs[0] if errs else None, "error_ms_p50": pct(0.5),
                            "error_ms_p99": pct(0.99), "error_ms_max": errs[-1] if errs else None,
                            "outliers": self.latency_outliers},
                "snapshot_lifecycle": self.snapshot_lifecycle, "timings_s": self.timings_s}


def _field_counts(diff: Mapping[str, list[str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for fields in diff.values():
        for f in fields:
            out[f] = out.get(f, 0) + 1
    return out


def stack_config(cfg: RunConfig) -> StackConfig:
    """The stack of a run: the chains, ingestd re-checking and backfilling blocks, gatewayd without a rate limit."""
    env = {"MEMPULSE_INGESTD_PENDING_RECHECK_INTERVAL_MS": str(cfg.recheck_interval_ms),
           "MEMPULSE_INGESTD_BLOCK_BACKFILL_DEPTH": str(cfg.block_backfill_depth), **cfg.extra_env}
    return StackConfig(chains=cfg.chains, env=env, gatewayd_args=("--rate-limit-rps", "0"), start_traffic=False,
                       log_dir=cfg.log_dir)


class SendClock:
    """Send time (unix ms) of every accepted transaction (the generators' ``on_accepted``); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent_ms: dict[str, int] = {}

    def __call__(self, accepted: list[SentTx], sent_ns: int) -> None:
        with self._lock:
            for s in accepted:
                self.sent_ms.setdefault(s.tx_hash.lower(), sent_ns // 1_000_000)


# ---- the two views -----------------------------------------------------------------------------------------------

def block_listing(stack: Stack, chain_id: int) -> dict[str, dict[str, Any]]:
    """hash -> (block number, index, receipt status) of every transaction of the blocks processd stored for
    ``chain_id`` (``/events?kinds=block``, in seq order: the newest block at a height wins, as after a reorg)."""
    out: dict[str, dict[str, Any]] = {}
    by_height: dict[int, set[str]] = {}
    cursor = 0
    while True:
        page = stack.get_json("/events", chain_id=chain_id, kinds="block", from_seq_id=cursor, limit=200)
        for event in page["events"]:
            block = event["block"]
            for h in by_height.pop(block["number"], set()):  # an orphaned block's transactions (a reorg)
                out.pop(h, None)
            hashes = set()
            for tx in block["txs"]:
                status = {"ok": 1, "reverted": 0}.get(tx["status"])
                out[tx["hash"].lower()] = {"block_number": block["number"], "index": tx["index"],
                                           "receipt_status": status}
                hashes.add(tx["hash"].lower())
            by_height[block["number"]] = hashes
        if not page["events"]:
            return out
        cursor = page["next_from_seq_id"]


def reported(detail: Mapping[str, Any]) -> dict[str, Any]:
    """mempulse's view of one transaction (``/transactions/{hash}``) in lifecycle_truth's shape, plus the drop
    reason and inclusion latency."""
    tx = detail.get("transaction") or {}
    out: dict[str, Any] = {"status": detail.get("status"), "block_number": None, "index": None,
                           "receipt_status": None, "replaced_by": None, "first_seen_ms": tx.get("first_seen_unix_ms")}
    last: dict[str, Any] = {}
    for event in detail.get("history") or []:
        last[event["kind"]] = event
    if out["status"] == "included" and "tx_included" in last:
        inc = last["tx_included"]["tx_included"]
        out.update(block_number=inc["block_number"], index=inc["index"],
                   receipt_status={"ok": 1, "reverted": 0}.get(inc["status"]), latency_ms=inc["inclusion_latency_ms"])
    elif out["status"] == "replaced" and "tx_replaced" in last:
        out["replaced_by"] = last["tx_replaced"]["tx_replaced"]["by_hash"].lower()
    elif out["status"] == "dropped" and "tx_dropped" in last:
        out["reason"] = last["tx_dropped"]["tx_dropped"]["reason"]
    return out


def query_reported(stack: Stack, records: Iterable[SentRecord], threads: int) -> dict[str, dict[str, Any]]:
    """mempulse's view of ``records`` from gatewayd (hashes it does not store are left out)."""
    recs = list(records)
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(rec: SentRecord) -> tuple[str, dict[str, Any] | None]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=stack.gateway_url, timeout=30.0)
            clients.append(client)
        resp = client.get(f"/transactions/{rec.tx_hash}", params={"chain_id": rec.chain_id})
        if resp.status_code == 404:
            return rec.tx_hash.lower(), None
        resp.raise_for_status()
        return rec.tx_hash.lower(), reported(resp.json())

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return {h: view for h, view in pool.map(one, recs) if view is not None}
    finally:
        for client in clients:
            client.close()


def _downtimes(kills: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    return [(k["down_unix_s"] - _DOWN_MARGIN_BEFORE_S, k["ready_unix_s"] + _DOWN_MARGIN_S) for k in kills
            if k["name"].startswith("ingestd")]


def _in_downtime(sent_ms: int | None, downtimes: Sequence[tuple[float, float]]) -> bool:
    return sent_ms is not None and any(a * 1000 <= sent_ms <= b * 1000 for a, b in downtimes)


def _views(stack: Stack, records: Sequence[SentRecord], truth: Mapping[str, Mapping[str, Any]],
           sent_ms: Mapping[str, int], downtimes: Sequence[tuple[float, float]],
           final_nonces: Mapping[int, Mapping[str, int]], threads: int,
           ) -> dict[str, dict[str, Any]]:
    """mempulse's view of ``records``, a never-stored one completed from the stored blocks (``private``) or, when it
    left the pool unseen during an ingestd downtime, marked ``unobservable`` (module doc)."""
    view = query_reported(stack, records, threads)
    missing = [r for r in records if r.tx_hash.lower() not in view]
    listings = {cid: block_listing(stack, cid) for cid in {r.chain_id for r in missing}}
    for rec in missing:
        key = rec.tx_hash.lower()
        listed = listings[rec.chain_id].get(key)
        if listed is not None:
            view[key] = {"status": "included", **listed, "replaced_by": None, "private": True}
        elif truth[key]["status"] in ("replaced", "dropped") and _in_downtime(sent_ms.get(key), downtimes):
            view[key] = {**truth[key], "unobservable": "downtime"}
        elif (truth[key]["status"] in ("replaced", "dropped")
              and rec.nonce > final_nonces[rec.chain_id].get(rec.sender.lower(), rec.nonce)):
            view[key] = {**truth[key], "unobservable": "behind_gap"}
    return view


# ---- the run -----------------------------------------------------------------------------------------------------

def run(cfg: RunConfig, on_stack: Callable[[Stack], None] | None = None) -> RunResult:
    """One run (module doc). ``on_stack`` is called with the started stack (a test's hook to look at it)."""
    res, clock = RunResult(), SendClock()
    started = time.monotonic()
    with Stack(stack_config(cfg)) as stack:
        if on_stack is not None:
            on_stack(stack)
        for spec in cfg.chains:  # lifecycle tracking begins at each chain's first stored block
            stack.wait_for(functools.partial(_has_block, stack, spec.chain_id), 60,
                           f"a first block of chain {spec.chain_id} stored")
        for spec in cfg.chains:
            fund_funder(stack.anvils[spec.chain_id].http_url)
        res.timings_s["start"] = round(time.monotonic() - started, 1)
        stack.start_generators(on_accepted=clock)
        _timeline(stack, cfg, res)
        stack.stop_generators()
        for gen in stack.generators.values():
            if gen.error is not None:
                raise RuntimeError(f"traffic generator of chain {gen.chain_id} failed: {gen.error}")
        records = [r for gen in stack.generators.values() for r in gen.records()]
        res.timings_s["traffic"] = round(time.monotonic() - started, 1)
        _drain(stack, cfg, res)
        res.timings_s["drain"] = round(time.monotonic() - started, 1)
        _settle(stack, cfg, res, records, clock.sent_ms)
        res.timings_s["settle"] = round(time.monotonic() - started, 1)
        snapshot = stack.get_json("/dashboard/snapshot", tx_limit=1, opp_limit=1, feature_limit=1)
        res.snapshot_lifecycle = {str(c["chain_id"]): c.get("lifecycle") for c in snapshot["chains"]}
        stack.check_alive()
    return res


def _has_block(stack: Stack, chain_id: int) -> bool:
    return bool(stack.get_json("/blocks/recent", chain_id=chain_id, limit=1)["blocks"])


def _timeline(stack: Stack, cfg: RunConfig, res: RunResult) -> None:
    """The faults at their points of the traffic time, then the rest of the traffic."""
    start = time.monotonic()
    steps: list[tuple[float, Callable[[], None]]] = []

    def do_evict() -> None:
        for spec in cfg.chains:
            res.evicted += evict(stack, spec.chain_id, cfg.evictions_per_chain)

    if cfg.evict_at_s is not None and cfg.evictions_per_chain:
        steps.append((cfg.evict_at_s, do_evict))
    if cfg.kill_processd_at_s is not None:
        steps.append((cfg.kill_processd_at_s, lambda: res.kills.append(kill9(stack, "processd"))))
    if cfg.kill_ingestd_at_s is not None:
        steps.append((cfg.kill_ingestd_at_s, lambda: res.kills.append(kill9(stack, "ingestd"))))
    if cfg.reorg_at_s is not None:
        steps.append((cfg.reorg_at_s, lambda: res.reorgs.append(reorg(stack, cfg.reorg_chain, cfg.reorg_depth))))
    for at_s, action in sorted(steps, key=lambda s: s[0]):
        time.sleep(max(0.0, at_s - (time.monotonic() - start)))
        stack.check_alive()
        action()
        log.info("lifecycle run: step at %.0fs done (%.1fs)", at_s, time.monotonic() - start)
    time.sleep(max(0.0, cfg.traffic_s - (time.monotonic() - start)))
    while (sum(len(gen.records()) for gen in stack.generators.values()) < cfg.min_records
           and time.monotonic() - start < 2 * cfg.traffic_s):
        time.sleep(1.0)


def _pool_size(url: str) -> int:
    status = rpc(url, "txpool_status", [])
    return int(status["pending"], 16) + int(status["queued"], 16)


def _drain(stack: Stack, cfg: RunConfig, res: RunResult) -> None:
    """Lets every chain mine until its pool is empty or stops shrinking for three blocks, then drops what stays
    (transactions behind a nonce gap: an evicted or anvil-dropped earlier nonce; they would stay pending forever)."""
    for spec in cfg.chains:
        url = stack.anvils[spec.chain_id].http_url
        deadline = time.monotonic() + cfg.drain_timeout_s
        previous, stable = _pool_size(url), 0
        while previous and stable < 3 and time.monotonic() < deadline:
            time.sleep(spec.block_time_s)
            size = _pool_size(url)
            stable = stable + 1 if size >= previous else 0
            previous = size
        if previous:
            rpc(url, "anvil_dropAllTransactions", [])
            res.left_in_pool_dropped += previous
            log.info("lifecycle run: chain %s: dropped the %d transactions left in the pool", spec.chain_id, previous)
        time.sleep(spec.block_time_s)  # a last block, so every chain's state is final


def _final_nonces(url: str, senders: Iterable[str]) -> dict[str, int]:
    """sender -> its mined nonce count now."""
    order = sorted({x.lower() for x in senders})
    return {x: int(n, 16) for x, n in zip(order, batch_rpc(url, [("eth_getTransactionCount", [x, "latest"])
                                                               for x in order]), strict=True)}


def _settle(stack: Stack, cfg: RunConfig, res: RunResult, records: Sequence[SentRecord],
            sent_ms: Mapping[str, int]) -> None:
    """The node's truth, then mempulse's view until they agree (or ``settle_timeout_s``); the figures into ``res``."""
    truth: dict[str, dict[str, Any]] = {}
    for spec in cfg.chains:
        truth.update(node_truth(stack.anvils[spec.chain_id].http_url,
                                [r for r in records if r.chain_id == spec.chain_id]))
    res.records, res.truth_counts = len(truth), summary(truth)
    res.replacements = sum(1 for r in records if r.kind != "original")
    for spec in cfg.chains:
        res.by_chain[spec.chain_id] = summary({r.tx_hash.lower(): truth[r.tx_hash.lower()] for r in records
                                               if r.chain_id == spec.chain_id})
    downtimes = _downtimes(res.kills)
    by_hash = {r.tx_hash.lower(): r for r in records}
    res.final_nonces = {spec.chain_id: _final_nonces(stack.anvils[spec.chain_id].http_url,
                                                     [r.sender for r in records if r.chain_id == spec.chain_id])
                        for spec in cfg.chains}
    deadline = time.monotonic() + cfg.settle_timeout_s
    view = _views(stack, records, truth, sent_ms, downtimes, res.final_nonces, cfg.query_threads)
    diff = compare(truth, view)
    while diff and time.monotonic() < deadline:
        time.sleep(1.0)
        again = [r for r in records if r.tx_hash.lower() in diff]
        view.update(_views(stack, again, truth, sent_ms, downtimes, res.final_nonces, cfg.query_threads))
        diff = compare(truth, view)
    res.mismatches = diff
    slots: dict[tuple[int, str, int], list[str]] = {}
    for r in records:
        slots.setdefault((r.chain_id, r.sender.lower(), r.nonce), []).append(r.tx_hash.lower())
    res.mismatch_examples = [
        {"hash": h, "fields": f, "kind": by_hash[h].kind, "chain_id": by_hash[h].chain_id, "nonce": by_hash[h].nonce,
         "truth": truth[h], "reported": view.get(h), "sent_unix_ms": sent_ms.get(h),
         "same_slot": [{"hash": o, "kind": by_hash[o].kind, "truth": truth[o], "reported": view.get(o),
                        "sent_unix_ms": sent_ms.get(o)}
                       for o in slots[(by_hash[h].chain_id, by_hash[h].sender.lower(), by_hash[h].nonce)] if o != h]}
        for h, f in list(diff.items())[:20]]
    res.private = sum(1 for v in view.values() if v.get("private"))
    for v in view.values():
        if v.get("unobservable"):
            res.unobservable[v["unobservable"]] = res.unobservable.get(v["unobservable"], 0) + 1
    for v in view.values():
        if v.get("reason"):
            res.reported_reasons[v["reason"]] = res.reported_reasons.get(v["reason"], 0) + 1
    res.evicted_reported = {h: f"{view.get(h, {}).get('status')}:{view.get(h, {}).get('reason')}"
                            for h in res.evicted}
    _latency(stack, cfg, res, records, truth, view, sent_ms, downtimes)


def _latency(stack: Stack, cfg: RunConfig, res: RunResult, records: Sequence[SentRecord],
             truth: Mapping[str, Mapping[str, Any]], view: Mapping[str, Mapping[str, Any]],
             sent_ms: Mapping[str, int], downtimes: Sequence[tuple[float, float]]) -> None:
    """mempulse's inclusion latency against block timestamp minus send time (transactions seen live only)."""
    chain_of = {spec.chain_id: spec for spec in cfg.chains}
    stamps = {cid: _block_timestamps(stack.anvils[cid].http_url,
                                     {truth[r.tx_hash.lower()]["block_number"] for r in records
                                      if r.chain_id == cid and truth[r.tx_hash.lower()]["status"] == "included"})
              for cid in chain_of}
    for rec in records:
        h, cid = rec.tx_hash.lower(), rec.chain_id
        got, sent = view.get(h) or {}, sent_ms.get(h)
        if got.get("latency_ms") is None or sent is None or _in_downtime(sent, downtimes):
            continue
        if truth[h]["block_number"] != got["block_number"]:
            continue  # a mismatch, counted as one
        # (a block stamped before the send, anvil's clock after a reorg, is a latency of 0, as processd has it)
        want = max(0, stamps[cid][truth[h]["block_number"]] * 1000 - sent)
        err = int(got["latency_ms"]) - want
        res.latency_checked += 1
        res.latency_errors_ms.append(err)
        if abs(err) > chain_of[cid].block_time_s * 1000:
            res.latency_over_block_time += 1
            if len(res.latency_outliers) < 20:
                res.latency_outliers.append({"hash": h, "chain_id": cid, "error_ms": err, "sent_unix_ms": sent,
                                             "first_seen_unix_ms": got.get("first_seen_ms"),
                                             "block_number": got["block_number"], "latency_ms": got["latency_ms"]})


def _block_timestamps(url: str, numbers: Iterable[int]) -> dict[int, int]:
    """number -> timestamp (unix s) of those blocks, in JSON-RPC batches of 100."""
    nums = sorted(numbers)
    out: dict[int, int] = {}
    with httpx.Client(timeout=30.0) as client:
        for start in range(0, len(nums), 100):
            chunk = nums[start:start + 100]
            body = [{"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [hex(n), False]}
                    for i, n in enumerate(chunk)]
            by_id = {item["id"]: item["result"] for item in client.post(url, json=body).json()}
            out.update({n: int(by_id[i]["timestamp"], 16) for i, n in enumerate(chunk)})
    return out
