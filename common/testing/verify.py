"""Proof by execution: run a predicted sandwich or backrun on the real anvil chain and measure what it earns.

Dev tooling (the opportunity verifier ``scripts/verify_opportunities``, tests); no daemon imports it. For one
:class:`Prediction` (a pending victim swap plus the searcher's legs), :func:`execute`:

1. takes ``evm_snapshot``;
2. makes sure the victim is not mined, then leaves it alone in the node's pool: every other pending transaction
   is dropped (``anvil_dropAllTransactions``) and the victim is put back exactly as the node held it (its raw
   signed bytes, or for an impersonated sender the same ``eth_sendTransaction`` fields: the hash must come out
   identical, else nothing is executed); a victim queued behind its sender's earlier pending transactions is
   made next with ``anvil_setNonce`` (inside the sandbox: those earlier ones are not executed, the pools are as
   the latest block left them, which is what the prediction read);
3. pins the next block's base fee (``anvil_setNextBlockBaseFeePerGas`` = the latest block's) so every tip is
   known, and sends the searcher's front-run legs (EIP-1559) with a max fee and a tip one wei above the
   victim's and the back-run legs one wei below: anvil (``--order fees``, its default) orders its pool by the
   max fee per gas (the legacy gas price), a builder by the effective tip, and both then agree; a sender's nonces
   stay in order;
4. mines exactly one block (``evm_mine``) and checks it holds the front-run legs, the victim and the back-run
   legs, in that order and nothing else, and their receipts;
5. measures the searcher's balance of every token on the legs' paths before and after (realized profit = the
   change of the profit token; gas paid from the receipts, checked against the change of the native balance);
6. ``evm_revert`` to the snapshot, always (a ``finally``), whatever failed.

Note: ``evm_revert`` on anvil (1.7.1) does not put the transactions of the reverted block back into the pending
pool, so the victim is gone after an execution, and the other pending transactions were dropped in step 2; a
later :func:`execute` puts its own victim back from the prediction. The verifier therefore consumes the node's
pool: run it on a stack whose traffic is stopped (the CLI collects victims first, then stops the generators).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
from eth_abi import decode

from common.errors import MempulseError
from common.rawtx import keccak256
from common.testing.uniswap import (
    DEPLOYER,
    World,
    batch_payload,
    batch_results,
    calldata,
    rpc_batch,
    send_and_mine,
)

log = logging.getLogger(__name__)

#: The default searcher: keccak256("mempulse searcher")[12:] (impersonated; funded by :func:`fund_searcher`).
SEARCHER = "0x" + keccak256(b"mempulse searcher")[12:].hex()
_MAX_UINT = 2**256 - 1
_GAS_BASE, _GAS_PER_HOP = 120_000, 100_000  # gas limit of a searcher leg (router swap), not what it uses
_DEADLINE_S = 86_400
_SWAP_EXACT_IN = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
Kind = Literal["sandwich", "backrun"]


class VerifyError(MempulseError, RuntimeError):
    """An execution could not be carried out (an RPC failed, a bound was exceeded); the snapshot was reverted."""


@dataclass(frozen=True, slots=True)
class VictimTx:
    """The victim's pending transaction as the node holds it (``eth_getTransactionByHash``), plus its raw bytes
    (``eth_getRawTransactionByHash``) when it is really signed (an impersonated one has r = s = 0)."""

    hash: str
    sender: str
    to: str
    input: str
    value: int
    gas: int
    nonce: int
    tx_type: int
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    raw: str | None = None

    def tip_at(self, base_fee: int) -> int | None:
        """Priority fee per gas this transaction pays on a block with ``base_fee`` (None: it cannot be included)."""
        if self.max_fee_per_gas is not None and self.max_priority_fee_per_gas is not None:
            if self.max_fee_per_gas < base_fee:
                return None
            return min(self.max_priority_fee_per_gas, self.max_fee_per_gas - base_fee)
        price = self.gas_price or 0
        return None if price < base_fee else price - base_fee

    @property
    def max_price(self) -> int:
        """The most it pays per gas (max fee, or the legacy gas price): anvil's pool orders by this."""
        return self.max_fee_per_gas if self.max_fee_per_gas is not None else (self.gas_price or 0)

    def send_params(self) -> dict[str, Any]:
        """The ``eth_sendTransaction`` object that recreates this (impersonated) transaction with its hash."""
        tx: dict[str, Any] = {"from": self.sender, "to": self.to, "input": self.input, "value": hex(self.value),
                              "gas": hex(self.gas), "nonce": hex(self.nonce)}
        if self.max_fee_per_gas is not None and self.max_priority_fee_per_gas is not None:
            tx["maxFeePerGas"] = hex(self.max_fee_per_gas)
            tx["maxPriorityFeePerGas"] = hex(self.max_priority_fee_per_gas)
        else:
            tx["gasPrice"] = hex(self.gas_price or 0)
        return tx


def _int(value: Any) -> int | None:
    return None if value is None else int(str(value), 16)


def fetch_victim(url: str, tx_hash: str, timeout_s: float = 10.0,
                 client: httpx.Client | None = None) -> VictimTx | None:
    """The pending transaction ``tx_hash`` as the node holds it; None when the node does not know it or it is
    already mined (a victim must still be pending)."""
    calls: list[tuple[str, list[Any]]] = [("eth_getTransactionByHash", [tx_hash]),
                                          ("eth_getRawTransactionByHash", [tx_hash])]
    if client is None:
        tx, raw = rpc_batch(url, calls, timeout_s)
    else:
        tx, raw = _Bounded(url, timeout_s, client).batch(calls)
    if not tx or tx.get("blockNumber") is not None or not tx.get("to"):
        return None
    signed = int(str(tx.get("r") or "0x0"), 16) != 0
    return VictimTx(hash=str(tx["hash"]).lower(), sender=str(tx["from"]).lower(), to=str(tx["to"]).lower(),
                    input=str(tx.get("input") or "0x"), value=int(str(tx["value"]), 16), gas=int(str(tx["gas"]), 16),
                    nonce=int(str(tx["nonce"]), 16), tx_type=int(str(tx.get("type") or "0x0"), 16),
                    gas_price=_int(tx.get("gasPrice")), max_fee_per_gas=_int(tx.get("maxFeePerGas")),
                    max_priority_fee_per_gas=_int(tx.get("maxPriorityFeePerGas")),
                    raw=str(raw) if signed and raw else None)


@dataclass(frozen=True, slots=True)
class Leg:
    """One searcher transaction: ``swapExactTokensForTokens(amount_in, 0, path, searcher, deadline)`` on
    ``router``; ``expected_out`` is the predicted output (a back-run that "sells all bought" takes the front-run
    leg's ``expected_out`` as its ``amount_in``)."""

    router: str
    path: tuple[str, ...]
    amount_in: int
    expected_out: int


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predicted opportunity on one pending victim, with everything needed to execute it.

    ``front`` legs are ordered before the victim, ``back`` legs after. ``profit_token`` is the token the profit is
    counted in (the searcher's input); ``predicted_profit_wei`` its predicted change in that token's base units,
    ``predicted_net_wei`` the predicted profit net of gas in wei of the native currency (None when unknown),
    ``gas_price_wei`` the gas price the prediction assumed. ``pairs`` are the pools involved, ``source`` who
    predicted it (``reference`` or ``processd``). ``native_per_token`` (numerator, denominator) converts the
    profit token to wei of the native currency the way the prediction did (``(1, 1)`` for WETH), so the realized
    net is computed alike: ``realized * num // den - gas paid``; None when the prediction has no net.
    ``state_block_number`` and ``predicted_gas_cost_wei``: see below (processd's predictions set them).
    """

    chain_id: int
    victim_hash: str
    victim: VictimTx
    kind: Kind
    pairs: tuple[str, ...]
    profit_token: str
    front: tuple[Leg, ...]
    back: tuple[Leg, ...]
    predicted_profit_wei: int
    predicted_net_wei: int | None = None
    gas_price_wei: int | None = None
    back_sells_all: bool = True
    native_per_token: tuple[int, int] | None = None
    source: str = "reference"
    detail: str = ""
    #: The block of the reserves the prediction was computed on (processd's ``state_block_number``; None: the
    #: latest block when predicted).
    state_block_number: int | None = None
    #: The gas cost the predicted net charged (processd's documented constants at the victim's bid), wei.
    predicted_gas_cost_wei: int | None = None


@dataclass
class Outcome:
    """What one execution realized. ``status``: ``executed`` (the block was mined and measured), ``skipped`` (not
    executable: victim mined or gone, no tip room to order around it) or ``failed`` (an RPC error or timeout,
    or the block was not as intended). ``exact``: realized == predicted to the wei. ``reverted`` tells whether
    ``evm_revert`` restored the snapshot; ``explanation`` says why anything differs."""

    victim_hash: str
    kind: str
    status: str
    predicted_profit_wei: int
    realized_profit_wei: int | None = None
    exact: bool = False
    predicted_net_wei: int | None = None
    realized_net_wei: int | None = None
    gas_used: int = 0
    gas_paid_wei: int = 0
    ordering_ok: bool = False
    victim_status: int | None = None
    leg_statuses: list[int] = field(default_factory=list)
    token_deltas: dict[str, int] = field(default_factory=dict)
    base_fee_wei: int | None = None
    reverted: bool = False
    explanation: str = ""
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (wei amounts as decimal strings: they exceed 2**53)."""
        out = asdict(self)
        for key in ("predicted_profit_wei", "realized_profit_wei", "predicted_net_wei", "realized_net_wei",
                    "gas_paid_wei", "base_fee_wei"):
            out[key] = None if out[key] is None else str(out[key])
        out["token_deltas"] = {k: str(v) for k, v in self.token_deltas.items()}
        return out


class _Skip(MempulseError):
    """Not executable (recorded as ``skipped`` with the message)."""


class _Bounded:
    """JSON-RPC calls on one connection against one deadline: each call's timeout is what is left of the budget."""

    def __init__(self, url: str, timeout_s: float, client: httpx.Client) -> None:
        self.url = url
        self.deadline = time.monotonic() + timeout_s
        self.client = client

    def batch(self, calls: Sequence[tuple[str, list[Any]]], budget: bool = True) -> list[Any]:
        left = self.deadline - time.monotonic() if budget else 10.0
        if left <= 0:
            raise VerifyError("execution exceeded its time budget")
        resp = self.client.post(self.url, json=batch_payload(calls), timeout=left)
        resp.raise_for_status()
        return batch_results(calls, resp.json(), VerifyError)

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        return self.batch([(method, params or [])])[0]


def _balances(node: _Bounded, owner: str, tokens: Sequence[str]) -> dict[str, int]:
    calls: list[tuple[str, list[Any]]] = [("eth_getBalance", [owner, "latest"])]
    calls += [("eth_call", [{"to": t, "data": calldata("balanceOf(address)", owner)}, "latest"]) for t in tokens]
    answers = node.batch(calls)
    out = {"native": int(str(answers[0]), 16)}
    for token, result in zip(tokens, answers[1:], strict=True):
        out[token] = int(decode(["uint256"], bytes.fromhex(str(result)[2:]))[0])
    return out


def _isolate_victim(node: _Bounded, victim: VictimTx) -> None:
    """Leaves the victim alone in the pending pool, as the node held it (raises _Skip when it was mined)."""
    receipt = node.call("eth_getTransactionReceipt", [victim.hash])
    if receipt is not None:
        raise _Skip("victim already mined")
    node.call("anvil_dropAllTransactions")
    nonce = int(str(node.call("eth_getTransactionCount", [victim.sender, "latest"])), 16)
    if nonce > victim.nonce:
        raise _Skip(f"victim nonce {victim.nonce} already used (sender at {nonce})")
    if nonce < victim.nonce:  # queued behind the sender's earlier pending transactions: make it next
        node.call("anvil_setNonce", [victim.sender, hex(victim.nonce)])
    if victim.raw is not None:
        got = node.call("eth_sendRawTransaction", [victim.raw])
    else:
        got = node.call("eth_sendTransaction", [victim.send_params()])
    if str(got).lower() != victim.hash:
        raise _Skip(f"victim re-sent as {got}, not {victim.hash}: its fields do not reproduce it")
    if node.call("eth_getTransactionByHash", [victim.hash]) is None:
        raise _Skip("victim not accepted back into the pool")


def _leg_tx(searcher: str, leg: Leg, nonce: int, fees: tuple[int, int], deadline: int) -> dict[str, Any]:
    data = calldata(_SWAP_EXACT_IN, leg.amount_in, 0, list(leg.path), searcher, deadline)
    return {"from": searcher, "to": leg.router, "input": data, "value": "0x0", "nonce": hex(nonce),
            "gas": hex(_GAS_BASE + _GAS_PER_HOP * (len(leg.path) - 1)), "maxFeePerGas": hex(fees[0]),
            "maxPriorityFeePerGas": hex(fees[1])}


def _send_legs(node: _Bounded, p: Prediction, searcher: str, tip: int) -> tuple[list[str], list[str]]:
    """Sends the front legs one wei above the victim (max fee and tip) and the back legs one below; hashes."""
    nonce = int(str(node.call("eth_getTransactionCount", [searcher, "latest"])), 16)
    deadline = int(time.time()) + _DEADLINE_S
    above, below = (p.victim.max_price + 1, tip + 1), (p.victim.max_price - 1, tip - 1)
    txs = [_leg_tx(searcher, leg, nonce + i, above, deadline) for i, leg in enumerate(p.front)]
    txs += [_leg_tx(searcher, leg, nonce + len(p.front) + i, below, deadline) for i, leg in enumerate(p.back)]
    hashes = [str(h).lower() for h in node.batch([("eth_sendTransaction", [tx]) for tx in txs])]
    return hashes[:len(p.front)], hashes[len(p.front):]


def _measure(node: _Bounded, p: Prediction, searcher: str, out: Outcome) -> None:
    """The body of :func:`execute` between snapshot and revert; fills ``out``."""
    _isolate_victim(node, p.victim)
    latest = node.call("eth_getBlockByNumber", ["latest", False])
    base_fee = int(str(latest.get("baseFeePerGas") or "0x0"), 16)
    node.call("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])
    out.base_fee_wei = base_fee
    tip = p.victim.tip_at(base_fee)
    if tip is None or tip < 1 or p.victim.max_price - 1 < base_fee:
        raise _Skip(f"victim tip {tip} at base fee {base_fee}: no room to order a back-run below it")
    tokens = sorted({t for leg in (*p.front, *p.back) for t in leg.path})
    before = _balances(node, searcher, tokens)
    front, back = _send_legs(node, p, searcher, tip)
    node.call("evm_mine")
    block = node.call("eth_getBlockByNumber", ["latest", False])
    mined = [str(h).lower() for h in block["transactions"]]
    intended = [*front, p.victim.hash, *back]
    out.ordering_ok = mined == intended
    receipts = node.batch([("eth_getTransactionReceipt", [h]) for h in intended])
    if any(r is None for r in receipts):
        raise VerifyError(f"block {int(block['number'], 16)} holds {len(mined)} txs, not the intended "
                          f"{len(intended)}: {sum(r is None for r in receipts)} not mined")
    statuses = [int(str(r["status"]), 16) for r in receipts]
    out.victim_status = statuses[len(front)]
    out.leg_statuses = statuses[:len(front)] + statuses[len(front) + 1:]
    legs = receipts[:len(front)] + receipts[len(front) + 1:]
    out.gas_used = sum(int(str(r["gasUsed"]), 16) for r in legs)
    out.gas_paid_wei = sum(int(str(r["gasUsed"]), 16) * int(str(r["effectiveGasPrice"]), 16) for r in legs)
    after = _balances(node, searcher, tokens)
    out.token_deltas = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    out.realized_profit_wei = after[p.profit_token] - before[p.profit_token]
    out.exact = out.realized_profit_wei == p.predicted_profit_wei
    if p.predicted_net_wei is not None and p.native_per_token is not None:
        num, den = p.native_per_token
        out.realized_net_wei = out.realized_profit_wei * num // den - out.gas_paid_wei
    out.status = "executed"
    out.explanation = _explain(p, out, mined, intended, after["native"] - before["native"])


def _explain(p: Prediction, out: Outcome, mined: list[str], intended: list[str], native_delta: int) -> str:
    """Why realized differs from predicted (empty when it does not and everything went as intended)."""
    why = []
    if not out.ordering_ok:
        why.append(f"block order {mined} is not the intended {intended}")
    if out.victim_status != 1:
        why.append("the victim reverted (the front-run broke its slippage bound, or it was invalid anyway)")
    if any(s != 1 for s in out.leg_statuses):
        why.append(f"a searcher leg reverted (statuses {out.leg_statuses})")
    if native_delta != -out.gas_paid_wei:
        why.append(f"native balance moved {native_delta}, gas paid {out.gas_paid_wei}")
    stray = {k: v for k, v in out.token_deltas.items() if k not in ("native", p.profit_token)}
    if stray:
        why.append(f"tokens other than the profit token moved: {stray} (a leg's output differed from predicted)")
    if not out.exact and out.realized_profit_wei is not None:
        why.append(f"realized {out.realized_profit_wei} != predicted {p.predicted_profit_wei} "
                   f"(off by {out.realized_profit_wei - p.predicted_profit_wei} wei)")
    return "; ".join(why)


def execute(target: World | str, prediction: Prediction, searcher: str = SEARCHER, timeout_s: float = 30.0,
            client: httpx.Client | None = None) -> Outcome:
    """Executes ``prediction`` in an ``evm_snapshot`` sandbox on the node of ``target`` (a World or an RPC URL)
    from the funded ``searcher`` and returns the :class:`Outcome`; the snapshot is always reverted.

    Every RPC call shares the ``timeout_s`` budget. Never raises for the opportunity itself: RPC errors and
    timeouts become ``status="failed"`` with the reason in ``explanation``. Pass a ``client`` to reuse one
    connection across many executions (a new httpx client costs about 0.1 s of TLS setup even for http)."""
    url = target.rpc_url if isinstance(target, World) else target
    started = time.monotonic()
    if client is None:
        with httpx.Client() as own:
            return execute(url, prediction, searcher, timeout_s, own)
    node = _Bounded(url, timeout_s, client)
    out = Outcome(victim_hash=prediction.victim_hash, kind=prediction.kind, status="failed",
                  predicted_profit_wei=prediction.predicted_profit_wei, predicted_net_wei=prediction.predicted_net_wei)
    snap = None
    try:
        snap = node.call("evm_snapshot")
        _measure(node, prediction, searcher.lower(), out)
    except _Skip as exc:
        out.status, out.explanation = "skipped", str(exc)
    except Exception as exc:  # RPC errors, httpx timeouts, malformed answers: recorded; the revert below runs
        out.status, out.explanation = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        out.reverted = _revert(node, snap, out)
    out.elapsed_s = round(time.monotonic() - started, 4)
    return out


def _revert(node: _Bounded, snap: Any, out: Outcome) -> bool:
    """``evm_revert`` with its own short budget (the execution's may be spent); False and noted on failure."""
    if snap is None:
        return False
    try:
        ok = bool(node.batch([("evm_revert", [snap])], budget=False)[0])
    except Exception as exc:  # a failed revert is reported in the outcome, never raised past the caller
        out.explanation = (out.explanation + "; " if out.explanation else "") + f"evm_revert failed: {exc}"
        log.error("evm_revert(%s) failed on %s: %s", snap, node.url, exc)
        return False
    if not ok:
        out.explanation = (out.explanation + "; " if out.explanation else "") + "evm_revert answered false"
    return ok


def fund_searcher(world: World, searcher: str = SEARCHER, weth: int = 10**6 * 10**18,
                  tokens: int = 10**12 * 10**18) -> str:
    """Funds ``searcher`` (ether, ``weth`` wei of WETH, ``tokens`` base units of every other token from the
    deployer) and approves both routers for everything. Mines blocks (``send_and_mine``): call it before the
    victims are sent, since a mined block includes every pending transaction."""
    url, searcher = world.rpc_url, searcher.lower()
    rpc_batch(url, [("anvil_setBalance", [searcher, hex(10**33)]), ("anvil_setBalance", [DEPLOYER, hex(10**33)])])
    nonces = rpc_batch(url, [("eth_getTransactionCount", [a, "pending"]) for a in (DEPLOYER, searcher)])
    d_nonce, s_nonce = (int(str(n), 16) for n in nonces)
    price = hex(500 * 10**9)
    txs = []
    for symbol, token in world.tokens.items():
        if symbol != "WETH":
            txs.append({"from": DEPLOYER, "to": token, "nonce": hex(d_nonce), "gas": hex(120_000), "gasPrice": price,
                        "data": calldata("transfer(address,uint256)", searcher, tokens)})
            d_nonce += 1
    own = [{"to": world.weth, "data": calldata("deposit()"), "value": hex(weth)}]
    own += [{"to": token, "data": calldata("approve(address,uint256)", dex.router, _MAX_UINT), "value": "0x0"}
            for token in world.tokens.values() for dex in world.dexes.values()]
    for i, tx in enumerate(own):
        txs.append({"from": searcher, "nonce": hex(s_nonce + i), "gas": hex(120_000), "gasPrice": price, **tx})
    send_and_mine(url, txs, "funding the searcher")
    return searcher
