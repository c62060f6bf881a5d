"""processd's own valuations as executable predictions (``scripts/verify_opportunities --predictor processd``).

Dev tooling. processd's REST opportunity JSON (gatewayd/serializers.py, docs/fields.md) carries, for a valued
``sandwich_candidate``, ``frontrun_amount_in`` and ``sandwich_profit_wei`` and for a valued
``backrun_candidate`` ``backrun_amount_in`` and ``backrun_profit_wei``, both in ``profit_token`` base units, with
``gas_cost_wei``, ``net_profit_wei`` and ``state_block_number`` (the block of the reserves it read). The legs
follow from processd's model (processd/analysis/valuation/, docs/valuation.md):

* sandwich: front-run = sell ``frontrun_amount_in`` of the victim's input token for its first hop's output token
  on the victim's router (the victim's factory's pair); back-run = sell everything the front-run bought back on
  the same router;
* back-run (backrun.py): after the victim, sell ``backrun_amount_in`` of the victim's input token on the *other*
  factory's pair of the victim's first hop, and the tokens bought there on the victim's pair.

The JSON does not carry the intermediate amounts (what the front-run buys, the back-run's middle amount); they
are one ``getAmountOut`` of the given input on the reserves at ``state_block_number`` (``eth_call getReserves``
at that block), the state processd valued on. The profit compared is processd's figure, never recomputed here.

processd values on the pools' state at ``state_block_number``; the executor runs on the latest block. So an
execution is only a test of the valuation when no pair the figure read changed after that block:
:meth:`StateReader.moved` looks for a ``Sync`` log of those pairs in ``(state_block_number, latest]``; such a
prediction is recorded ``skipped`` (``state moved``), not a mismatch.

Gas: processd charges documented constants (``SANDWICH_GAS``, ``BACKRUN_GAS``: a back-run is one contract call
there) at the victim's bid; the executor sends router transactions (a back-run is two) and pays what the
receipts say. Exactness is about the token profit; the predicted net keeps processd's gas
(``predicted_gas_cost_wei``) and the realized net uses the receipts' gas, both in the artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import httpx
from eth_abi import decode

from common.rawtx import keccak256
from common.testing.uniswap import World, batch_payload, batch_results, pair_address
from common.testing.verify import Leg, Outcome, Prediction, VerifyError, VictimTx
from common.testing.verify_reference import decode_swap, get_amount_out

log = logging.getLogger(__name__)

SANDWICH_KIND = "sandwich_candidate"
BACKRUN_KIND = "backrun_candidate"
_GET_RESERVES = "0x0902f1ac"
#: keccak256("Sync(uint112,uint112)"): a pair emits it on every reserve change.
SYNC_TOPIC = "0x" + keccak256(b"Sync(uint112,uint112)").hex()


class StateReader:
    """Reads pairs' reserves at a block and whether they changed after it, from the world's node (cached: a
    past block's reserves never change)."""

    def __init__(self, world: World, client: httpx.Client, timeout_s: float = 10.0) -> None:
        self.world = world
        self.client = client
        self.timeout_s = timeout_s
        self._cache: dict[tuple[str, int], tuple[int, int]] = {}

    def _batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        resp = self.client.post(self.world.rpc_url, json=batch_payload(calls), timeout=self.timeout_s)
        resp.raise_for_status()
        return batch_results(calls, resp.json(), VerifyError)

    def reserves_at(self, pair: str, block: int) -> tuple[int, int]:
        """``getReserves()`` (reserve0, reserve1) of ``pair`` at ``block``."""
        key = (pair, block)
        if key not in self._cache:
            [answer] = self._batch([("eth_call", [{"to": pair, "data": _GET_RESERVES}, hex(block)])])
            r0, r1, _ = decode(["uint112", "uint112", "uint32"], bytes.fromhex(str(answer)[2:]))
            self._cache[key] = (r0, r1)
        return self._cache[key]

    def oriented_at(self, pair: str, token_in: str, token_out: str, block: int) -> tuple[int, int]:
        """(reserve of ``token_in``, reserve of ``token_out``) of their ``pair`` at ``block`` (token0 is the lower
        address)."""
        r0, r1 = self.reserves_at(pair, block)
        return (r0, r1) if token_in < token_out else (r1, r0)

    def moved(self, pairs: Sequence[str], block: int) -> str:
        """Why ``pairs``' state at ``block`` is not the latest block's (a ``Sync`` after it), or ""."""
        latest = int(str(self._batch([("eth_blockNumber", [])])[0]), 16)
        if latest <= block:
            return ""
        [logs] = self._batch([("eth_getLogs", [{"address": list(pairs), "topics": [SYNC_TOPIC],
                                                 "fromBlock": hex(block + 1), "toBlock": hex(latest)}])])
        if not logs:
            return ""
        changed = sorted({str(entry["address"]).lower() for entry in logs})
        return f"state moved: {changed} changed after the state block {block} (latest {latest})"


def _amount(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    return None if value is None else int(str(value))


def predictions_from_opportunity_json(obj: Mapping[str, Any], victim: VictimTx, world: World,
                                      state: StateReader) -> Prediction | None:
    """A :class:`Prediction` from one opportunity of processd's REST JSON (``/events`` ``opportunity``,
    ``/opps/recent``) and its victim as the node holds it; None when it is not a valued, profitable sandwich or
    back-run of a world router swap (or another victim's). ``state`` reads the reserves at its state block (the
    legs' intermediate amounts) and the pairs it read (:attr:`Prediction.pairs`) are checked later."""
    kind = obj.get("kind")
    if (not obj.get("valued") or kind not in (SANDWICH_KIND, BACKRUN_KIND)
            or victim.hash != str(obj.get("tx_hash", "")).lower()):
        return None
    try:
        return _prediction(obj, victim, world, state, kind == SANDWICH_KIND)
    except (KeyError, IndexError, TypeError, ValueError, VerifyError) as exc:
        log.warning("opportunity %s: valuation not understood (%s)", obj.get("tx_hash"), exc)
        return None


def _prediction(obj: Mapping[str, Any], victim: VictimTx, world: World, state: StateReader,
                is_sandwich: bool) -> Prediction | None:
    profit = _amount(obj, "sandwich_profit_wei" if is_sandwich else "backrun_profit_wei")
    amount_in = _amount(obj, "frontrun_amount_in" if is_sandwich else "backrun_amount_in")
    swap = decode_swap(victim)
    routers = {d.router: d for d in world.dexes.values()}
    if profit is None or profit <= 0 or not amount_in or swap is None or victim.to not in routers:
        return None
    block = int(obj["state_block_number"])
    token = str(obj["profit_token"]).lower()
    a, b = swap.path[0], swap.path[1]
    if token != a:
        raise ValueError(f"profit token {token} is not the victim's input token {a}")
    dex = routers[victim.to]
    pools = {p.pair for p in world.pools}
    hops = [pair_address(dex.factory, x, y, world.pair_init_code_hash) for x, y in pairwise(swap.path)]
    if not pools.issuperset(hops):
        raise ValueError(f"the victim's path {swap.path} crosses a pair the world does not have")
    if is_sandwich:
        bought = get_amount_out(amount_in, *state.oriented_at(hops[0], a, b, block))
        front: tuple[Leg, ...] = (Leg(dex.router, (a, b), amount_in, bought),)
        back: tuple[Leg, ...] = (Leg(dex.router, (b, a), bought, amount_in + profit),)
        pairs = tuple(hops)
    else:
        others = [d for d in world.dexes.values() if d is not dex]
        if len(others) != 1:
            raise ValueError(f"{len(others)} other factories: the JSON does not say which pool the back-run used")
        other = others[0]
        twin = pair_address(other.factory, a, b, world.pair_init_code_hash)
        if twin not in pools:
            raise ValueError(f"no {other.name} pool of {a}/{b} for a back-run")
        middle = get_amount_out(amount_in, *state.oriented_at(twin, a, b, block))
        front = ()
        back = (Leg(other.router, (a, b), amount_in, middle), Leg(dex.router, (b, a), middle, amount_in + profit))
        pairs = (*hops, twin)
    gas_cost = _amount(obj, "gas_cost_wei")
    net = _amount(obj, "net_profit_wei")
    rate = None if net is None or gas_cost is None else (net + gas_cost, profit)  # processd's native value / profit
    return Prediction(chain_id=int(obj["chain_id"]), victim_hash=victim.hash, victim=victim,
                      kind="sandwich" if is_sandwich else "backrun", pairs=pairs, profit_token=token, front=front,
                      back=back, predicted_profit_wei=profit, predicted_net_wei=net, gas_price_wei=victim.max_price,
                      native_per_token=rate, source="processd", state_block_number=block,
                      predicted_gas_cost_wei=gas_cost,
                      detail=f"{'exact_in' if swap.exact_in else 'exact_out'} {len(swap.path) - 1}-hop victim")


def skip_if_state_moved(p: Prediction, state: StateReader) -> Outcome | None:
    """A ``skipped`` outcome when a pair ``p`` read changed after its state block (not a test of the valuation:
    the executor would run on other reserves), None when the state is still the latest."""
    if p.state_block_number is None:
        return None
    why = state.moved(p.pairs, p.state_block_number)
    if not why:
        return None
    return Outcome(victim_hash=p.victim_hash, kind=p.kind, status="skipped",
                   predicted_profit_wei=p.predicted_profit_wei, predicted_net_wei=p.predicted_net_wei,
                   reverted=True, explanation=why)  # no snapshot taken: the chain is as it was
