"""The opportunity verifier (``scripts/verify_opportunities``): predicted sandwiches and backruns of a running
stack, each proven by execution on the chain (common/testing/verify.py), predicted vs realized to the wei.

    scripts/verify_opportunities --short                 # ~30 opportunities, under a minute
    scripts/verify_opportunities --count 500             # the issue 17 target run
    scripts/verify_opportunities --predictor processd    # processd's own valuations (the test command: --short)

Steps: start a stack (one anvil chain with the Uniswap V2 world, processd, gatewayd, ingestd, traffic with a
``--swap-share`` of router swaps, no block mining: the verifier is the only one that mines); fund the searcher
before any traffic; for processd's valuation, let ingestd read the pools at two warm-up blocks; collect the
opportunities processd reports (``GET /events?kinds=opp_detected``) and fetch each victim from the node while
it is pending; stop the traffic; turn each into predictions
(``--predictor reference``: exact V2 math on the reserves read now, common/testing/verify_reference.py;
``--predictor processd``: :func:`predictions_from_opportunity_json` on processd's valuation,
common/testing/verify_processd.py); execute each in its own snapshot (processd's only when no pair it read
changed after its state block); write ``artifacts/signal/verify.json`` (``verify_processd.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from common.testing.stack import REPO_ROOT, ChainSpec, Stack, StackConfig
from common.testing.uniswap import (
    DEFAULT_POOLS,
    DEFAULT_TOKENS,
    DEPLOYER,
    DEX_NAMES,
    Dex,
    Pool,
    UniswapWorldError,
    World,
    calldata,
    check_init_code_hash,
    create_address,
    pair_address,
    rpc_batch,
    trader_address,
)
from common.testing.verify import Outcome, Prediction, VictimTx, execute, fetch_victim, fund_searcher
from common.testing.verify_processd import StateReader, predictions_from_opportunity_json, skip_if_state_moved
from common.testing.verify_reference import Pools, predict_backrun, predict_sandwich

__all__ = ["main", "predictions_from_opportunity_json", "run", "summarize"]

log = logging.getLogger(__name__)

DEFAULT_OUT = REPO_ROOT / "artifacts" / "signal" / "verify.json"
#: --short writes here, so the test command's run does not overwrite the committed long run's artifact.
SHORT_OUT = REPO_ROOT / "artifacts" / "signal" / "verify_short.json"
#: --predictor processd writes its own artifacts (the reference's stay).
PROCESSD_OUT = REPO_ROOT / "artifacts" / "signal" / "verify_processd.json"
PROCESSD_SHORT_OUT = REPO_ROOT / "artifacts" / "signal" / "verify_processd_short.json"
_SHORT_COUNT = 30
_EVENTS_PAGE = 1000
_PROCESSD_NOTE = (
    "legs from the REST opportunity JSON (common/testing/verify_processd.py): sandwich = frontrun_amount_in of "
    "profit_token on the victim's router, back-run sells all it bought; back-run = backrun_amount_in on the other "
    "factory's pair, the middle amount on the victim's (two router transactions; processd models one contract "
    "call); intermediate amounts by getAmountOut on the reserves at state_block_number. Executed only when no "
    "pair it read synced after state_block_number (else skipped: state moved). Exactness is about the token "
    "profit (sandwich_profit_wei / backrun_profit_wei); predicted_net_wei charges processd's gas constants "
    "(predicted_gas_cost_wei), realized_net_wei the receipts' gas, realized_net_with_processd_gas_wei the former "
    "on the realized profit")
_GIVE_UP_VICTIMS = 100  # victims seen with no prediction at all: stop collecting (e.g. no valuation on REST yet)


# ---- collecting, predicting, executing ---------------------------------------------------------------------

def collect(get_json: Callable[..., Any], world: World, wanted: int, timeout_s: float, client: httpx.Client,
            predict_one: Callable[[VictimTx, Mapping[str, Any]], list[Prediction]], per_kind: bool = False
            ) -> tuple[list[Prediction], Counter[str]]:
    """Pages processd's ``opp_detected`` events, fetches each victim on the world's routers from the node while it
    is pending and predicts on it, until ``wanted`` predictions (or ``timeout_s``): (predictions, counters).
    Each victim is predicted once, or with ``per_kind`` once per opportunity kind (processd reports a victim's
    sandwich and back-run as two opportunities; the reference predicts both from the first).

    Predicting while the traffic runs is sound here: nothing mines (the stack's ``mine_interval_s`` is 0), so
    the reserves read now are the ones every execution starts from (each reverts). On an attached stack that
    mines, ``predict_one`` executes at once on fresh reserves (see :func:`run_attached`)."""
    routers = {d.router for d in world.dexes.values()}
    preds: list[Prediction] = []
    done: set[str] = set()
    victims: dict[str, VictimTx | None] = {}
    seen: Counter[str] = Counter()
    cursor, deadline = 0, time.monotonic() + timeout_s
    while len(preds) < wanted and time.monotonic() < deadline:
        page = get_json("/events", chain_id=world.chain_id, kinds="opp_detected", from_seq_id=cursor,
                        limit=_EVENTS_PAGE)
        cursor = int(page.get("next_from_seq_id") or cursor)
        for event in page.get("events") or []:
            opp = event.get("opportunity") or {}
            tx_hash = str(opp.get("tx_hash") or event.get("tx_hash") or "").lower()
            seen["opportunities"] += 1
            key = f"{tx_hash}:{opp.get('kind')}" if per_kind else tx_hash
            if not tx_hash or key in done or len(preds) >= wanted:
                continue
            done.add(key)
            if tx_hash not in victims:
                victims[tx_hash] = fetch_victim(world.rpc_url, tx_hash, client=client)
            victim = victims[tx_hash]
            if victim is None:
                seen["victim not pending"] += 1
            elif victim.to not in routers:
                seen["not a world router"] += 1
            else:
                seen["victims"] += 1
                got = predict_one(victim, opp)
                seen["victims without a profitable prediction"] += not got
                preds += got
        if not preds and seen["victims"] >= _GIVE_UP_VICTIMS:
            log.error("%d victims and not one prediction: does the predictor's input exist (processd's valuation "
                      "on the opportunities)?", seen["victims"])
            break
        if not page.get("events"):
            time.sleep(0.5)
    return preds[:wanted], seen


class ProcessdPredictor:
    """``--predictor processd``: each valued, profitable sandwich or back-run opportunity of processd becomes a
    prediction (:func:`predictions_from_opportunity_json`); opportunities valued on a state older than
    ``min_state_block`` (before the collection's last warm-up block: their pools have moved since) are counted
    in ``counts``, not predicted."""

    def __init__(self, world: World, state: StateReader, min_state_block: int = 0) -> None:
        self.world = world
        self.state = state
        self.min_state_block = min_state_block
        self.counts: Counter[str] = Counter()

    def __call__(self, victim: VictimTx, opp: Mapping[str, Any]) -> list[Prediction]:
        kind = str(opp.get("kind"))
        self.counts[f"{kind} seen"] += 1
        if not opp.get("valued"):
            self.counts[f"{kind} not valued"] += 1
            return []
        block = opp.get("state_block_number")
        if block is not None and int(block) < self.min_state_block:
            self.counts[f"{kind} valued before the warm-up block"] += 1
            return []
        p = predictions_from_opportunity_json(opp, victim, self.world, self.state)
        self.counts[f"{kind} {'predicted' if p else 'valued, not profitable'}"] += 1
        return [p] if p else []


def predictor(world: World, name: str, fresh: bool = False, state: StateReader | None = None,
              min_state_block: int = 0) -> Callable[[VictimTx, Mapping[str, Any]], list[Prediction]]:
    """The per-victim prediction function: the reference's sandwich and backrun, or processd's valuation
    (``state``: the node reader its legs need). ``fresh``: read the reserves for every victim (an attached stack
    may mine between victims)."""
    if name == "processd":
        if state is None:
            raise ValueError("the processd predictor needs a StateReader")
        return ProcessdPredictor(world, state, min_state_block)
    once = None if fresh else Pools(world)  # nothing mines during a started run: read once

    def predict_one(victim: VictimTx, _: Mapping[str, Any]) -> list[Prediction]:
        pools = once or Pools(world)
        return [p for p in (predict_sandwich(world, victim, pools), predict_backrun(world, victim, pools)) if p]
    return predict_one


def execute_checked(world: World, p: Prediction, searcher: str, timeout_s: float, client: httpx.Client,
                    state: StateReader) -> Outcome:
    """:func:`execute`, unless a pair the prediction read changed after its state block (``skipped``)."""
    return skip_if_state_moved(p, state) or execute(world, p, searcher, timeout_s, client)


def summarize(preds: Sequence[Prediction], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The artifact's overall figures."""
    executed = [o for o in outcomes if o.status == "executed"]
    exact = sum(o.exact for o in executed)
    lost = [o for o in executed if o.predicted_profit_wei > 0 and (o.realized_profit_wei or 0) < 0]
    by_kind: dict[str, dict[str, int]] = {}
    for p, o in zip(preds, outcomes, strict=True):
        k = by_kind.setdefault(p.kind, Counter())
        k["predicted"] += 1
        k[o.status] += 1
        k["exact"] += int(o.exact)
    return {
        "predictions": len(preds),
        "executed": len(executed),
        "exact": exact,
        "exact_rate": round(exact / len(executed), 6) if executed else None,
        "predicted_profitable_that_lost": len(lost),
        "ordering_ok": sum(o.ordering_ok for o in executed),
        "all_reverted": all(o.reverted for o in outcomes),
        "statuses": dict(Counter(o.status for o in outcomes)),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "differences": [{"victim": o.victim_hash, "kind": o.kind, "status": o.status, "why": o.explanation}
                        for o in outcomes if not o.exact or o.explanation],
        "profit_by_token": _totals(preds, outcomes),
        **_net(executed),
        "gas_used_total": sum(o.gas_used for o in executed),
        "execute_s_mean": round(sum(o.elapsed_s for o in outcomes) / len(outcomes), 4) if outcomes else None,
    }


def _net(executed: Sequence[Outcome]) -> dict[str, Any]:
    """Net of gas, where the prediction has it (profit in WETH: the reference estimates the legs' gas; the
    realized net uses the receipts' gas): how many were predicted net-profitable and how many of those lost."""
    known = [o for o in executed if o.predicted_net_wei is not None and o.realized_net_wei is not None]
    positive = [o for o in known if (o.predicted_net_wei or 0) > 0]
    return {"net_known": len(known), "net_predicted_profitable": len(positive),
            "net_predicted_profitable_that_lost": sum((o.realized_net_wei or 0) < 0 for o in positive),
            "net_abs_error_wei_max": str(max((abs((o.realized_net_wei or 0) - (o.predicted_net_wei or 0))
                                              for o in known), default=0))}


def _write(path: Path, artifact: dict[str, Any]) -> None:
    """The artifact as indented JSON, except one compact line per opportunity (a 500-row run stays readable)."""
    rows = artifact.pop("opportunities")
    head = json.dumps(artifact, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{head},\n "opportunities": [\n{body}\n ]\n}}\n')
    artifact["opportunities"] = rows


def _totals(preds: Sequence[Prediction], outcomes: Sequence[Outcome]) -> dict[str, dict[str, str]]:
    """Predicted and realized profit summed per profit token (base units; tokens are not summed together)."""
    sums: dict[str, list[int]] = {}
    for p, o in zip(preds, outcomes, strict=True):
        if o.status == "executed":
            pair = sums.setdefault(p.profit_token, [0, 0])
            pair[0] += p.predicted_profit_wei
            pair[1] += o.realized_profit_wei or 0
    return {t: {"predicted": str(a), "realized": str(b)} for t, (a, b) in sums.items()}


def _row(p: Prediction, o: Outcome) -> dict[str, Any]:
    row = o.to_json()
    row.update(source=p.source, pairs=list(p.pairs), profit_token=p.profit_token, detail=p.detail,
               victim_to=p.victim.to, victim_nonce=p.victim.nonce,
               front=[{"router": leg.router, "path": list(leg.path), "amount_in": str(leg.amount_in),
                       "expected_out": str(leg.expected_out)} for leg in p.front],
               back=[{"router": leg.router, "path": list(leg.path), "amount_in": str(leg.amount_in),
                      "expected_out": str(leg.expected_out)} for leg in p.back])
    if p.source == "processd":
        # The net with both gas figures: processd's (documented constants at the victim's bid) and the receipts'.
        realized_net_processd_gas = None
        if o.realized_profit_wei is not None and p.native_per_token and p.predicted_gas_cost_wei is not None:
            num, den = p.native_per_token
            realized_net_processd_gas = str(o.realized_profit_wei * num // den - p.predicted_gas_cost_wei)
        row.update(state_block_number=p.state_block_number,
                   predicted_gas_cost_wei=None if p.predicted_gas_cost_wei is None else str(p.predicted_gas_cost_wei),
                   realized_net_with_processd_gas_wei=realized_net_processd_gas)
    return row


def attach_world(rpc_url: str, chain_id: int) -> World:
    """The :class:`World` that ``deploy_world`` (default tokens, pools, 16 traders) left on a node that was fresh:
    every address follows from the deployer's nonces and CREATE2, and each pool is checked on the node
    (``factory.getPair``); raises :class:`~common.testing.uniswap.UniswapWorldError` when it is not there."""
    init_hash = check_init_code_hash()
    weth = create_address(DEPLOYER, 0)
    dexes = {name: Dex(name, create_address(DEPLOYER, 1 + i), create_address(DEPLOYER, 3 + i))
             for i, name in enumerate(DEX_NAMES)}
    tokens = {"WETH": weth, **{sym: create_address(DEPLOYER, 5 + i) for i, sym in enumerate(DEFAULT_TOKENS)}}
    symbol_of = {a: sym for sym, a in tokens.items()}
    pools = []
    for spec in DEFAULT_POOLS:
        t0, t1 = sorted((tokens[spec.token_a], tokens[spec.token_b]))
        pools.append(Pool(spec.dex, pair_address(dexes[spec.dex].factory, t0, t1, init_hash), t0, t1,
                          (symbol_of[t0], symbol_of[t1]), spec.depth))
    answers = rpc_batch(rpc_url, [("eth_call", [{"to": dexes[p.dex].factory, "data": calldata(
        "getPair(address,address)", p.token0, p.token1)}, "latest"]) for p in pools])
    for pool, answer in zip(pools, answers, strict=True):
        if "0x" + str(answer)[-40:] != pool.pair:
            raise UniswapWorldError(f"{rpc_url}: no {pool.symbols} pool of the default world on {pool.dex}")
    return World(rpc_url=rpc_url, chain_id=chain_id, deployer=DEPLOYER, weth=weth, dexes=dexes, tokens=tokens,
                 pools=tuple(pools), traders=tuple(trader_address(i) for i in range(16)),
                 pair_init_code_hash=init_hash, symbols=symbol_of)


def run_attached(args: argparse.Namespace, count: int) -> tuple[World, str, list[Prediction], list[Outcome],
                                                                 Counter[str]]:
    """Attaches to a running stack (``--attach-gateway``, ``--attach-rpc``): funds the searcher (which mines a
    block there), then predicts on fresh reserves and executes each victim as soon as it is seen (the stack may
    mine; its traffic keeps running, so a transaction arriving mid-execution shows as a wrong block order)."""
    world = attach_world(args.attach_rpc, args.chain_id)
    searcher = fund_searcher(world)
    outcomes: list[Outcome] = []
    preds_all: list[Prediction] = []
    with httpx.Client(base_url=args.attach_gateway, timeout=10.0) as gw, httpx.Client() as client:
        state = StateReader(world, client)
        predict = predictor(world, args.predictor, fresh=True, state=state)

        def get_json(path: str, **params: Any) -> Any:
            resp = gw.get(path, params=params)
            resp.raise_for_status()
            return resp.json()

        def predict_and_execute(victim: VictimTx, opp: Mapping[str, Any]) -> list[Prediction]:
            preds = predict(victim, opp)
            preds_all.extend(preds)
            outcomes.extend(execute_checked(world, p, searcher, args.timeout_s, client, state) for p in preds)
            return preds

        _, seen = collect(get_json, world, count, args.collect_timeout_s, client, predict_and_execute,
                          per_kind=args.predictor == "processd")
    if isinstance(predict, ProcessdPredictor):
        seen.update(predict.counts)
    return world, searcher, preds_all[:count], outcomes[:count], seen


def warm_up(world: World, seconds: float) -> int:
    """For processd's valuation on a stack that does not mine: ingestd reads a pair's reserves only at a block
    after a pending swap touched it, so let the traffic touch the pools, mine a block, again, and wait for
    ingestd's reads to reach processd; returns the last block (the state every later valuation reads)."""
    for _ in range(2):
        time.sleep(seconds / 3)
        rpc_batch(world.rpc_url, [("evm_mine", [])])
    time.sleep(seconds / 3)
    [latest] = rpc_batch(world.rpc_url, [("eth_blockNumber", [])])
    return int(str(latest), 16)


def run_started(args: argparse.Namespace, count: int) -> tuple[World, str, list[Prediction], list[Outcome],
                                                                Counter[str]]:
    """Starts a stack (no mining), collects predictions while its traffic runs, stops the traffic, executes.
    With ``--predictor processd`` ingestd follows the pools (``pool_state``) and a warm-up mines two blocks first
    (:func:`warm_up`); after it nothing mines until the executions, which run on the warm-up block's state."""
    started = time.monotonic()
    processd = args.predictor == "processd"
    config = StackConfig(chains=(ChainSpec(args.chain_id, rate_tx_s=args.rate_tx_s),), uniswap=True,
                         pool_state=processd, swap_share=args.swap_share, mine_interval_s=0.0, start_traffic=False,
                         anvil_max_pending=0)
    with Stack(config) as stack, httpx.Client() as client:
        world = stack.worlds[args.chain_id]
        state = StateReader(world, client)
        searcher = fund_searcher(world)  # before any traffic: funding mines blocks
        stack.start_generators()
        min_block = warm_up(world, args.warm_up_s) if processd else 0
        predict = predictor(world, args.predictor, state=state, min_state_block=min_block)
        preds, seen = collect(stack.get_json, world, count, args.collect_timeout_s, client, predict,
                              per_kind=processd)
        stack.stop_generators()
        seen["collect_ms"] = int((time.monotonic() - started) * 1000)
        if isinstance(predict, ProcessdPredictor):
            seen.update(predict.counts)
            seen["warm_up_block"] = min_block
        outcomes = [execute_checked(world, p, searcher, args.timeout_s, client, state) for p in preds]
    return world, searcher, preds, outcomes, seen


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Starts (or attaches to) a stack, collects, predicts, executes; returns the artifact (also written to
    ``args.out``)."""
    count = _SHORT_COUNT if args.short else args.count
    started = time.monotonic()
    world, searcher, preds, outcomes, seen = (run_attached if args.attach_gateway else run_started)(args, count)
    collected_s = seen.pop("collect_ms", 0) / 1000
    summary = summarize(preds, outcomes)
    artifact = {
        "issue": 17, "what": "predicted vs realized profit of sandwiches and backruns, proven by execution",
        "mode": "short" if args.short else "long", "predictor": args.predictor, "chain_id": args.chain_id,
        "stack": f"attached to {args.attach_gateway}" if args.attach_gateway else "started (no mining)",
        "method": "evm_snapshot; victim alone in the pool; base fee pinned; front-run max fee and tip +1 wei over "
                  "the victim's, back-run -1 (anvil --order fees orders by max fee, builders by tip); evm_mine "
                  "one block; order and receipts checked; balances before/after; evm_revert",
        **({"processd": _PROCESSD_NOTE} if args.predictor == "processd" else {}),
        "searcher": searcher, "symbols": world.symbols, "collect": dict(seen), "collect_s": round(collected_s, 2),
        "total_s": round(time.monotonic() - started, 2), "summary": summary,
        "opportunities": [_row(p, o) for p, o in zip(preds, outcomes, strict=True)],
    }
    _write(Path(args.out), artifact)
    return artifact


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The verifier's command line."""
    ap = argparse.ArgumentParser(prog="scripts/verify_opportunities", description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help=f"{_SHORT_COUNT} opportunities (the test command's form)")
    ap.add_argument("--count", type=int, default=500, help="opportunities to execute (long mode)")
    ap.add_argument("--predictor", choices=("reference", "processd"), default="reference",
                    help="reference: exact V2 math here; processd: the valuation on processd's opportunities")
    ap.add_argument("--chain-id", type=int, default=1)
    ap.add_argument("--rate-tx-s", type=float, default=40.0, help="traffic rate while collecting")
    ap.add_argument("--swap-share", type=float, default=0.6, help="share of the traffic that is router swaps")
    ap.add_argument("--collect-timeout-s", type=float, default=120.0)
    ap.add_argument("--warm-up-s", type=float, default=6.0, help="--predictor processd: traffic before the two "
                    "warm-up blocks that let ingestd read the pools (see warm_up)")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="budget of one execution")
    ap.add_argument("--attach-gateway", default=None, help="attach to a running stack's gatewayd (URL) instead of "
                    "starting one; needs --attach-rpc, the node with the default world (deploy_world on a fresh node)")
    ap.add_argument("--attach-rpc", default=None, help="the attached stack's anvil HTTP URL")
    ap.add_argument("--out", default=None, help=f"artifact path (default {DEFAULT_OUT.relative_to(REPO_ROOT)}, "
                                                f"with --short {SHORT_OUT.relative_to(REPO_ROOT)}; --predictor "
                                                f"processd: {PROCESSD_OUT.relative_to(REPO_ROOT)}, "
                                                f"{PROCESSD_SHORT_OUT.relative_to(REPO_ROOT)})")
    args = ap.parse_args(argv)
    if bool(args.attach_gateway) != bool(args.attach_rpc):
        ap.error("--attach-gateway and --attach-rpc go together")
    if args.out is None:
        if args.predictor == "processd":
            args.out = str(PROCESSD_SHORT_OUT if args.short else PROCESSD_OUT)
        else:
            args.out = str(SHORT_OUT if args.short else DEFAULT_OUT)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the verifier; exit 1 when the exact-match rate is under 99% or a predicted-profitable one lost."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    artifact = run(args)
    s = artifact["summary"]
    print(f"verify: {s['executed']} executed of {s['predictions']} predictions, {s['exact']} exact "
          f"(rate {s['exact_rate']}), {s['predicted_profitable_that_lost']} predicted profitable that lost, "
          f"{artifact['total_s']}s -> {args.out}")
    ok = s["executed"] > 0 and (s["exact_rate"] or 0) >= 0.99 and s["predicted_profitable_that_lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
