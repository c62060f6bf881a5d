"""A real Uniswap V2 world on a local anvil node: WETH9, two factories with a router each, ERC-20 tokens, pools.

Dev tooling (tests, the demo, benchmarks, the opportunity verifier): a daemon never imports it. Everything is
deployed from the build artifacts of the npm packages ``@uniswap/v2-core`` and ``@uniswap/v2-periphery``
(exact versions in ``scripts/_env.sh``, installed into ``.tools/`` by ``setup_tools``), with plain JSON-RPC
(``eth_sendTransaction`` from an impersonated deployer; anvil runs with ``--auto-impersonate``) and eth-abi::

    from common.testing.uniswap import deploy_world
    world = deploy_world(anvil.http_url, anvil.chain_id)
    pool = world.pool("uniswap_v2", "WETH", "USDC")
    world.reserves()[pool.pair]            # (reserve0, reserve1) from getReserves() on the node

Layout (deterministic for a fresh node: the deployer is a fixed address whose nonces start at 0):
the deployer's nonce 0 is WETH9, 1 and 2 the factories "uniswap_v2" and "sushiswap" (the same UniswapV2Factory
code twice: a fork, so the same pair exists twice and prices can differ), 3 and 4 one UniswapV2Router02 per
factory, then one test ERC20 per token. Pools are created by the routers' ``addLiquidity`` /
``addLiquidityETH``; their addresses are CREATE2(factory, keccak(token0 ++ token1), keccak(UniswapV2Pair
creation code)), checked against ``factory.getPair``. :func:`check_init_code_hash` checks that the router
artifact's hard-coded init code hash (UniswapV2Library.pairFor) is that keccak.

Transactions are sent in phases and mined with ``evm_mine`` (the nodes run ``--no-mining``), so deploy before
ingestd subscribes if its pending view should not see the setup transactions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import rlp
from eth_abi import decode, encode

from common.errors import MempulseError
from common.rawtx import keccak256

log = logging.getLogger(__name__)

#: npm packages the artifacts come from (kept equal to scripts/_env.sh, checked by tests/testing/test_uniswap.py).
V2_CORE_VERSION = "1.0.1"
V2_PERIPHERY_VERSION = "1.1.0-beta.0"
#: The init code hash UniswapV2Library.pairFor has hard-coded (mainnet's UniswapV2Pair), as in the router artifact.
MAINNET_INIT_CODE_HASH = bytes.fromhex("96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f")
#: The labels of the two factories (the second is a fork of the first: same code, other address).
DEX_NAMES = ("uniswap_v2", "sushiswap")
#: The impersonated deployer (not a dev account, so signed replays keep theirs): keccak("mempulse uniswap world").
DEPLOYER = "0x" + keccak256(b"mempulse uniswap world")[12:].hex()
#: Whole-token supply minted to the deployer per token (all test tokens have 18 decimals).
TOKEN_SUPPLY = 10**15 * 10**18
_RICH = hex(10**33)  # wei for the deployer and traders (pool ETH plus every trader's WETH)
_MAX_UINT = 2**256 - 1
_UNIT = 10**18
# A fixed legacy gas price far above anvil's base fee: left to the node, the fee is set from the base fee at send
# time, full setup blocks raise the base fee (EIP-1559) and anvil then drops the later setup transactions.
_SETUP_GAS_PRICE = 500 * 10**9
_DEADLINE_S = 10 * 365 * 86_400  # setup deadlines: far in the future (no test should depend on them)

# gas limits of the setup transactions (sent before their predecessors are mined: no estimate possible)
_GAS = {"weth": 1_500_000, "factory": 4_500_000, "router": 6_000_000, "token": 1_500_000,
        "liquidity": 5_000_000, "transfer": 120_000, "approve": 120_000, "deposit": 120_000}


class UniswapWorldError(MempulseError, RuntimeError):
    """The world could not be deployed (artifacts missing, a setup transaction failed, a check did not hold)."""


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One pool to create: on factory ``dex``, ``amount_a`` whole ``token_a`` against ``amount_b`` whole
    ``token_b`` (symbols; "WETH" is wrapped ether). ``depth`` is a label (deep, medium, thin)."""

    dex: str
    token_a: str
    token_b: str
    amount_a: float
    amount_b: float
    depth: str


#: Default tokens (symbol only: every test ERC20 has 18 decimals) and pools. Prices in USD: ETH 2,000, USDC
#: and DAI 1, LINK 15, UNI 8, PEPE 0.000001. The fork's pools are smaller and priced a little apart, so the
#: same pair on two factories leaves room for arbitrage.
DEFAULT_TOKENS = ("USDC", "DAI", "LINK", "UNI", "PEPE")
DEFAULT_POOLS: tuple[PoolSpec, ...] = (
    PoolSpec("uniswap_v2", "WETH", "USDC", 20_000, 40_000_000, "deep"),
    PoolSpec("uniswap_v2", "USDC", "DAI", 5_000_000, 5_000_000, "deep"),
    PoolSpec("uniswap_v2", "WETH", "DAI", 500, 1_000_000, "medium"),
    PoolSpec("uniswap_v2", "WETH", "LINK", 300, 40_000, "medium"),
    PoolSpec("uniswap_v2", "WETH", "UNI", 60, 15_000, "thin"),
    PoolSpec("uniswap_v2", "WETH", "PEPE", 3, 6_000_000_000, "thin"),
    PoolSpec("sushiswap", "WETH", "USDC", 1_000, 2_020_000, "medium"),
    PoolSpec("sushiswap", "WETH", "DAI", 40, 79_000, "thin"),
    PoolSpec("sushiswap", "WETH", "LINK", 20, 2_700, "thin"),
    PoolSpec("sushiswap", "LINK", "UNI", 2_000, 3_700, "thin"),
)


@dataclass(frozen=True, slots=True)
class Dex:
    """One deployed Uniswap V2 instance: its label, factory and router."""

    name: str
    factory: str
    router: str


@dataclass(frozen=True, slots=True)
class Pool:
    """One deployed pair: ``token0 < token1`` as the pair orders them; ``symbols`` in the same order."""

    dex: str
    pair: str
    token0: str
    token1: str
    symbols: tuple[str, str]
    depth: str


@dataclass(frozen=True)
class World:
    """Addresses of a deployed world (all lowercase 0x hex). ``tokens`` maps a symbol to its address and includes
    "WETH"; ``traders`` are funded accounts (ether, every token, WETH) that approved both routers for everything."""

    rpc_url: str
    chain_id: int
    deployer: str
    weth: str
    dexes: dict[str, Dex]
    tokens: dict[str, str]
    pools: tuple[Pool, ...]
    traders: tuple[str, ...]
    pair_init_code_hash: bytes
    deploy_s: float = 0.0
    symbols: dict[str, str] = field(default_factory=dict)  # address -> symbol

    def pool(self, dex: str, a: str, b: str) -> Pool:
        """The pool of symbols ``a`` and ``b`` on ``dex`` (KeyError when there is none)."""
        for p in self.pools:
            if p.dex == dex and set(p.symbols) == {a, b}:
                return p
        raise KeyError(f"no {a}/{b} pool on {dex}")

    def reserves(self, pairs: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
        """``getReserves()`` of ``pairs`` (default: every pool) on the node's latest block, one batch."""
        pairs = [p.pair for p in self.pools] if pairs is None else list(pairs)
        answers = rpc_batch(self.rpc_url, [("eth_call", [{"to": p, "data": _GET_RESERVES}, "latest"]) for p in pairs])
        out = {}
        for pair, result in zip(pairs, answers, strict=True):
            r0, r1, _ = decode(["uint112", "uint112", "uint32"], _hex_bytes(result))
            out[pair] = (r0, r1)
        return out

    def venues(self) -> list[dict[str, Any]]:
        """The world's factories as processd's ``--valuation-venues-file`` entries (docs/valuation.md "Venues"):
        each factory with its router, the pair init code hash, the 0.3% fee and the world's WETH."""
        return [{"name": f"{dex.name}_{self.chain_id}", "chain_id": self.chain_id, "factory": dex.factory,
                 "init_code_hash": "0x" + self.pair_init_code_hash.hex(), "routers": [dex.router], "fee_bps": 30,
                 "wrapped_native": self.weth} for dex in self.dexes.values()]

    def balance_of(self, token: str, owner: str) -> int:
        """``token.balanceOf(owner)`` on the latest block (token: a symbol or an address)."""
        address = self.tokens.get(token, token)
        data = "0x" + (_selector("balanceOf(address)") + encode(["address"], [owner])).hex()
        [result] = rpc_batch(self.rpc_url, [("eth_call", [{"to": address, "data": data}, "latest"])])
        return int(decode(["uint256"], _hex_bytes(result))[0])


# ---- artifacts, addresses, encoding ------------------------------------------------------------------------

def artifacts_root() -> Path:
    """``.tools/node_modules/@uniswap`` of this checkout."""
    return Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / "@uniswap"


@cache
def artifact(package: str, name: str) -> tuple[list[dict[str, Any]], bytes]:
    """(ABI, creation bytecode) of ``build/<name>.json`` in ``@uniswap/<package>``."""
    path = artifacts_root() / package / "build" / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UniswapWorldError(f"{path} missing: run ./scripts/test (or source scripts/_env.sh; setup_tools) "
                                "to install @uniswap/v2-core and @uniswap/v2-periphery into .tools/") from None
    return data["abi"], bytes.fromhex(str(data["bytecode"]).removeprefix("0x"))


def pair_init_code_hash() -> bytes:
    """keccak256 of the UniswapV2Pair creation code the factory deploys (v2-core's artifact)."""
    return keccak256(artifact("v2-core", "UniswapV2Pair")[1])


def check_init_code_hash() -> bytes:
    """The router's pair init code hash; raises unless it is keccak256 of v2-core's UniswapV2Pair creation code.

    UniswapV2Library.pairFor hard-codes the hash as a PUSH32 constant in the router's bytecode (mainnet's pair:
    :data:`MAINNET_INIT_CODE_HASH`); a router whose constant differs computes wrong pair addresses and every swap
    reverts, so the world refuses to deploy instead.
    """
    actual = pair_init_code_hash()
    router = artifact("v2-periphery", "UniswapV2Router02")[1]
    if actual not in router:
        found = "mainnet's" if MAINNET_INIT_CODE_HASH in router else "no known"
        raise UniswapWorldError(f"UniswapV2Router02 artifact carries {found} init code hash, not keccak256 of "
                                f"v2-core's UniswapV2Pair ({actual.hex()}): the npm versions do not match")
    return actual


def create_address(sender: str, nonce: int) -> str:
    """The address of a contract created by ``sender`` with ``nonce`` (keccak(rlp([sender, nonce])))."""
    return "0x" + keccak256(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


def pair_address(factory: str, token_a: str, token_b: str, init_code_hash: bytes) -> str:
    """CREATE2 address of the pair of two tokens on ``factory`` (as UniswapV2Library.pairFor computes it)."""
    t0, t1 = sorted((token_a.lower(), token_b.lower()))
    salt = keccak256(bytes.fromhex(t0[2:]) + bytes.fromhex(t1[2:]))
    return "0x" + keccak256(b"\xff" + bytes.fromhex(factory[2:]) + salt + init_code_hash)[12:].hex()


def trader_address(index: int) -> str:
    """The ``index``-th funded trader: keccak("mempulse trader <index>")[12:] (impersonated by anvil)."""
    return "0x" + keccak256(f"mempulse trader {index}".encode())[12:].hex()


@cache
def _selector(signature: str) -> bytes:
    return keccak256(signature.encode())[:4]


def calldata(signature: str, *args: Any) -> str:
    """0x calldata of ``signature`` (e.g. ``"approve(address,uint256)"``) with ``args``, encoded by eth-abi."""
    types = signature[signature.index("(") + 1:-1]  # flat argument lists only (no tuples are needed here)
    arg_types = [t for t in types.split(",") if t]
    return "0x" + (_selector(signature) + encode(arg_types, list(args))).hex()


_GET_RESERVES = "0x" + _selector("getReserves()").hex()


def _hex_bytes(result: Any) -> bytes:
    return bytes.fromhex(str(result).removeprefix("0x"))


# ---- JSON-RPC --------------------------------------------------------------------------------------------

def rpc_batch(url: str, calls: Sequence[tuple[str, list[Any]]], timeout_s: float = 60.0) -> list[Any]:
    """Results of one JSON-RPC batch, in order; raises :class:`UniswapWorldError` naming the first error."""
    if not calls:
        return []
    resp = httpx.post(url, json=batch_payload(calls), timeout=timeout_s)
    resp.raise_for_status()
    return batch_results(calls, resp.json(), UniswapWorldError, f" on {url}")


def batch_payload(calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """The JSON-RPC batch request of ``calls`` ``(method, params)``, with ids 0, 1, ... in order."""
    return [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]


def batch_results(calls: Sequence[tuple[str, list[Any]]], answer: list[dict[str, Any]],
                  error: type[Exception], where: str = "") -> list[Any]:
    """The results of the batch ``answer`` to :func:`batch_payload` of ``calls``, in the calls' order (answers
    may come in any order); raises ``error`` naming the first call that failed or got no answer."""
    by_id = {item.get("id"): item for item in answer}
    out = []
    for i, (method, _) in enumerate(calls):
        item = by_id.get(i) or {"error": {"message": "missing response"}}
        if "error" in item:
            raise error(f"{method} #{i} failed{where}: {item['error'].get('message', item['error'])}")
        out.append(item.get("result"))
    return out


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    """One JSON-RPC call's result (e.g. ``rpc(url, "evm_snapshot")``)."""
    return rpc_batch(url, [(method, params or [])])[0]


def send_and_mine(url: str, txs: Sequence[dict[str, Any]], what: str, max_blocks: int = 20,
                  block_gas: int = 28_000_000) -> list[dict[str, Any]]:
    """Sends ``txs`` (eth_sendTransaction objects with explicit nonce and gas) a block's worth at a time (by their
    gas limits), mining each chunk with ``evm_mine``, and returns the receipts; raises naming the first failed
    (status 0) one. Chunked because anvil drops the pending transactions a mined block leaves behind when many
    are queued (seen with anvil 1.7.1: 110 queued, 22 mined, 80 gone from the pool without a receipt)."""
    receipts: list[dict[str, Any]] = []
    start = 0
    while start < len(txs):
        end, gas = start, 0
        while end < len(txs) and (end == start or gas + int(txs[end]["gas"], 16) <= block_gas):
            gas += int(txs[end]["gas"], 16)
            end += 1
        hashes = rpc_batch(url, [("eth_sendTransaction", [tx]) for tx in txs[start:end]])
        got: list[Any] = [None] * len(hashes)
        for _ in range(max_blocks):
            rpc(url, "evm_mine")
            got = rpc_batch(url, [("eth_getTransactionReceipt", [h]) for h in hashes])
            if all(r is not None for r in got):
                break
        else:
            raise UniswapWorldError(f"{what}: transactions {start}..{end - 1} not mined within {max_blocks} blocks")
        for i, receipt in enumerate(got, start):
            if int(receipt["status"], 16) != 1:
                raise UniswapWorldError(f"{what}: transaction {i} ({receipt['transactionHash']}) reverted")
        receipts.extend(got)
        start = end
    return receipts


# ---- deployment ------------------------------------------------------------------------------------------

def _units(amount: float) -> int:
    """Whole tokens (up to 6 decimals) to base units of an 18-decimal token."""
    return round(amount * 1_000_000) * 10**12


def _deploy_data(package: str, name: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> str:
    return "0x" + (artifact(package, name)[1] + encode(list(types), list(args))).hex()


class _Sender:
    """Builds one account's setup transactions with consecutive explicit nonces."""

    def __init__(self, address: str, nonce: int) -> None:
        self.address = address
        self.nonce = nonce
        self.txs: list[dict[str, Any]] = []

    def add(self, gas: str, data: str, to: str | None = None, value: int = 0) -> int:
        tx: dict[str, Any] = {"from": self.address, "nonce": hex(self.nonce), "gas": hex(_GAS[gas]), "data": data,
                              "value": hex(value), "gasPrice": hex(_SETUP_GAS_PRICE)}
        if to is not None:
            tx["to"] = to
        self.txs.append(tx)
        self.nonce += 1
        return self.nonce - 1


def _deploy_contracts(deployer: _Sender, tokens: Sequence[str]) -> tuple[str, dict[str, Dex], dict[str, str]]:
    """Queues WETH9, the factories, the routers and the tokens; returns their (precomputed) addresses."""
    weth = create_address(deployer.address, deployer.add("weth", _deploy_data("v2-periphery", "WETH9")))
    factories = {name: create_address(deployer.address, deployer.add(
        "factory", _deploy_data("v2-core", "UniswapV2Factory", ["address"], [deployer.address])))
        for name in DEX_NAMES}
    dexes = {name: Dex(name, factory, create_address(deployer.address, deployer.add(
        "router", _deploy_data("v2-periphery", "UniswapV2Router02", ["address", "address"], [factory, weth]))))
        for name, factory in factories.items()}
    addresses = {"WETH": weth}
    for symbol in tokens:
        addresses[symbol] = create_address(deployer.address, deployer.add(
            "token", _deploy_data("v2-core", "ERC20", ["uint256"], [TOKEN_SUPPLY])))
    return weth, dexes, addresses


def _add_liquidity(deployer: _Sender, dexes: dict[str, Dex], tokens: dict[str, str], pools: Sequence[PoolSpec],
                   deadline: int) -> None:
    """Queues the deployer's approvals and one addLiquidity(ETH) per pool (which creates the pair)."""
    for symbol, token in tokens.items():
        if symbol != "WETH":
            for dex in dexes.values():
                deployer.add("approve", calldata("approve(address,uint256)", dex.router, _MAX_UINT), token)
    for spec in pools:
        router = dexes[spec.dex].router
        if "WETH" in (spec.token_a, spec.token_b):
            eth, (symbol, amount) = ((spec.amount_a, (spec.token_b, spec.amount_b)) if spec.token_a == "WETH"
                                     else (spec.amount_b, (spec.token_a, spec.amount_a)))
            deployer.add("liquidity", calldata(
                "addLiquidityETH(address,uint256,uint256,uint256,address,uint256)",
                tokens[symbol], _units(amount), 0, 0, deployer.address, deadline), router, _units(eth))
        else:
            deployer.add("liquidity", calldata(
                "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
                tokens[spec.token_a], tokens[spec.token_b], _units(spec.amount_a), _units(spec.amount_b), 0, 0,
                deployer.address, deadline), router)


def _fund_traders(url: str, deployer: _Sender, traders: Sequence[str], dexes: dict[str, Dex],
                  tokens: dict[str, str], trader_tokens: float, trader_weth: float) -> list[dict[str, Any]]:
    """Queues the deployer's token transfers to the traders; returns the traders' own transactions (WETH deposit,
    approvals of every token to both routers), to be sent once the tokens exist."""
    rpc_batch(url, [("anvil_setBalance", [t, _RICH]) for t in traders])
    nonces = rpc_batch(url, [("eth_getTransactionCount", [t, "pending"]) for t in traders])
    own: list[dict[str, Any]] = []
    for trader, nonce in zip(traders, nonces, strict=True):
        for symbol, token in tokens.items():
            if symbol != "WETH":
                deployer.add("transfer", calldata("transfer(address,uint256)", trader, _units(trader_tokens)), token)
        sender = _Sender(trader, int(nonce, 16))
        sender.add("deposit", calldata("deposit()"), tokens["WETH"], _units(trader_weth))
        for token in tokens.values():
            for dex in dexes.values():
                sender.add("approve", calldata("approve(address,uint256)", dex.router, _MAX_UINT), token)
        own.extend(sender.txs)
    return own


def _pools(url: str, dexes: dict[str, Dex], tokens: dict[str, str], specs: Sequence[PoolSpec],
           init_hash: bytes) -> tuple[Pool, ...]:
    """The deployed pools, each checked: factory.getPair equals the CREATE2 address computed here, and the
    router's own pair lookup (getAmountsOut reads the reserves at the address it computes) works."""
    symbol_of = {a: s for s, a in tokens.items()}
    pools, calls = [], []
    for spec in specs:
        dex = dexes[spec.dex]
        a, b = tokens[spec.token_a], tokens[spec.token_b]
        t0, t1 = sorted((a, b))
        pools.append(Pool(spec.dex, pair_address(dex.factory, a, b, init_hash), t0, t1,
                          (symbol_of[t0], symbol_of[t1]), spec.depth))
        calls.append(("eth_call", [{"to": dex.factory, "data": calldata("getPair(address,address)", a, b)}, "latest"]))
        calls.append(("eth_call", [{"to": dex.router, "data": calldata(
            "getAmountsOut(uint256,address[])", _UNIT // 1000, [a, b])}, "latest"]))
    answers = rpc_batch(url, calls)
    for pool, got_pair, amounts in zip(pools, answers[0::2], answers[1::2], strict=True):
        (on_chain,) = decode(["address"], _hex_bytes(got_pair))
        if on_chain.lower() != pool.pair:
            raise UniswapWorldError(f"{pool.dex} {pool.symbols}: factory.getPair gives {on_chain}, CREATE2 with "
                                    f"init code hash {init_hash.hex()} gives {pool.pair}")
        (out,) = decode(["uint256[]"], _hex_bytes(amounts))
        if len(out) != 2 or out[1] <= 0:
            raise UniswapWorldError(f"{pool.dex} {pool.symbols}: router.getAmountsOut gave {out}")
    return tuple(pools)


def deploy_world(rpc_url: str, chain_id: int, *, tokens: Sequence[str] = DEFAULT_TOKENS,
                 pools: Sequence[PoolSpec] = DEFAULT_POOLS, traders: int = 16, trader_tokens: float = 10**12,
                 trader_weth: float = 1_000_000) -> World:
    """Deploys WETH9, the factories and routers of :data:`DEX_NAMES`, ``tokens`` and ``pools`` on the node at
    ``rpc_url``, funds ``traders`` accounts (``trader_tokens`` whole tokens of each token, ``trader_weth`` WETH,
    approvals of both routers) and returns the :class:`World`. Mines the blocks it needs (``evm_mine``).

    Raises :class:`UniswapWorldError` when the artifacts are missing, the router's init code hash is not the
    pair's, a setup transaction reverts or a pool's address is not the one computed locally.
    """
    started = time.monotonic()
    init_hash = check_init_code_hash()
    node_chain = int(rpc(rpc_url, "eth_chainId"), 16)
    if node_chain != chain_id:
        raise UniswapWorldError(f"{rpc_url} is chain {node_chain}, not {chain_id}")
    rpc(rpc_url, "anvil_setBalance", [DEPLOYER, _RICH])
    deployer = _Sender(DEPLOYER, int(rpc(rpc_url, "eth_getTransactionCount", [DEPLOYER, "pending"]), 16))
    deadline = int(time.time()) + _DEADLINE_S
    weth, dexes, addresses = _deploy_contracts(deployer, tokens)
    _add_liquidity(deployer, dexes, addresses, pools, deadline)
    accounts = tuple(trader_address(i) for i in range(traders))
    trader_txs = _fund_traders(rpc_url, deployer, accounts, dexes, addresses, trader_tokens, trader_weth)
    send_and_mine(rpc_url, deployer.txs, "deploying the Uniswap V2 world")
    send_and_mine(rpc_url, trader_txs, "funding the traders")
    world_pools = _pools(rpc_url, dexes, addresses, pools, init_hash)
    elapsed = time.monotonic() - started
    log.info("uniswap world on chain %s: %d pools, %d traders, %.2fs", chain_id, len(world_pools), traders, elapsed)
    return World(rpc_url=rpc_url, chain_id=chain_id, deployer=DEPLOYER, weth=weth, dexes=dexes, tokens=addresses,
                 pools=world_pools, traders=accounts, pair_init_code_hash=init_hash, deploy_s=elapsed,
                 symbols={a: s for s, a in addresses.items()})


def snapshot(url: str) -> str:
    """``evm_snapshot``: an id to :func:`revert` to (the verifier's front-run / victim / back-run sandbox)."""
    return str(rpc(url, "evm_snapshot"))


def revert(url: str, snapshot_id: str) -> bool:
    """``evm_revert`` to a :func:`snapshot` id (which is consumed); whether the node reverted."""
    return bool(rpc(url, "evm_revert", [snapshot_id]))
