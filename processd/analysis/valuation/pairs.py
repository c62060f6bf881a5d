"""Pair addresses (CREATE2) and the per-chain registry of Uniswap V2-style factories the valuation knows.

A pair's address is ``keccak256(0xff ++ factory ++ keccak256(token0 ++ token1) ++ init_code_hash)[12:]``, as
``UniswapV2Library.pairFor`` computes it. The built-in factories are mainnet Uniswap V2 and Sushiswap; a local
chain (the anvil world deploys its own) adds its factories as data (``processd --valuation-venues-file``, a JSON
list of :func:`venue_from_json` objects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from Crypto.Hash import keccak

from processd.analysis.valuation.amm import V2_FEE_BPS
from processd.analysis.valuation.calldata import path_of_words
from processd.errors import ProcessdError


class VenueConfigError(ProcessdError):
    """The venues file is unreadable or an entry is malformed (the message names the entry and field)."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Factory:
    """A Uniswap V2-style factory: its pairs' init code hash, swap fee, and the routers that swap through it."""

    name: str
    chain_id: int
    address: bytes
    init_code_hash: bytes
    routers: tuple[bytes, ...] = ()
    fee_bps: int = V2_FEE_BPS


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


#: Mainnet Uniswap V2 and Sushiswap (factory, init code hash, routers), and each chain's wrapped native token.
BUILTIN_FACTORIES = (
    Factory("uniswap_v2", 1, _hex("5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f"),
            _hex("96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"),
            (_hex("7a250d5630b4cf539739df2c5dacb4c659f2488d"), _hex("f164fc0ec4e93095b804a4795bbe1e041497b92a"))),
    Factory("sushiswap", 1, _hex("c0aee478e3658e2610c5f7a4a2e1777ce9e4f2ac"),
            _hex("e18a34eb0e04b04f7a0ac29a6e80748dca96319b42c54d679cb821dca90c6303"),
            (_hex("d9e1ce17f2641f24ae83637ab66a2cca9c378b9f"),)),
)
BUILTIN_WRAPPED_NATIVE = {1: _hex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")}


def keccak256(data: bytes) -> bytes:
    """keccak256 (Ethereum's hash) of ``data``."""
    return keccak.new(data=data, digest_bits=256).digest()


#: Pair addresses computed so far, per process (two keccak256 each, the dearest step of a valuation), the pairs
#: of whole routes (:func:`route_pairs`, one lookup instead of one per hop) and the plans of routes through a
#: router (:func:`route_plan`): each bounded, emptied when full; their size is
#: ``mempulse_processd_valuation_pair_cache_entries`` (the pipeline's process).
PAIR_CACHE_MAX = 65_536
_pair_cache: dict[tuple[object, ...], bytes] = {}
_route_cache: dict[tuple[object, ...], tuple[bytes, ...]] = {}
_plan_cache: dict[tuple[object, ...], RoutePlan | None] = {}
_words_cache: dict[tuple[object, ...], RoutePlan | None] = {}


def pair_address(factory: bytes, init_code_hash: bytes, token_a: bytes, token_b: bytes) -> bytes:
    """``UniswapV2Library.pairFor``: the CREATE2 address of the pair of two tokens (in either order)."""
    token0, token1 = (token_a, token_b) if token_a < token_b else (token_b, token_a)
    key = (factory, init_code_hash, token0, token1)
    found = _pair_cache.get(key)
    if found is not None:
        return found
    salt = keccak256(token0 + token1)
    found = keccak256(b"\xff" + factory + salt + init_code_hash)[12:]
    if len(_pair_cache) >= PAIR_CACHE_MAX:
        _pair_cache.clear()
    _pair_cache[key] = found
    return found


def route_pairs(factory: bytes, init_code_hash: bytes, path: tuple[bytes, ...], *extra: bytes) -> tuple[bytes, ...]:
    """The pair of each hop of ``path`` on a factory, then the pair of ``path[0]`` with each token of ``extra``
    (cached per route: a valuation reads the same routes again and again)."""
    key = (factory, init_code_hash, path, *extra)
    found = _route_cache.get(key)
    if found is not None:
        return found
    found = tuple(pair_address(factory, init_code_hash, path[i], path[i + 1]) for i in range(len(path) - 1))
    found += tuple(pair_address(factory, init_code_hash, path[0], token) for token in extra)
    if len(_route_cache) >= PAIR_CACHE_MAX:
        _route_cache.clear()
    _route_cache[key] = found
    return found


def pair_cache_entries() -> int:
    """Entries of this process's pair-address, route and route-plan caches (plans by path and by path words)."""
    return len(_pair_cache) + len(_route_cache) + len(_plan_cache) + len(_words_cache)


#: A pair's key in the reserves mapping: (chain id, 20-byte pair address).
PairKey = tuple[int, bytes]


@dataclass(slots=True)
class RoutePlan:
    """Everything a swap's valuation (and the pipeline's gathering) reads that depends only on the venues, the
    chain, the router and the token path, resolved once per route (:func:`route_plan`): the swaps of a batch, and
    of the batches after it, share few routes."""

    factory: Factory
    #: The reserves key of each hop's pair on the router's factory, in path order.
    hops: tuple[PairKey, ...]
    #: The path crosses a pair twice, or has no hop (not valued).
    repeated: bool
    #: The input token is the chain's wrapped native token (the profit is native as it is).
    input_is_weth: bool
    #: The reserves key of the input token's pair with the wrapped native token on the router's factory (prices
    #: the profit); None when the input is that token, the chain has none or the path has no hop.
    weth: PairKey | None
    #: (factory, reserves key of the first hop's pair there) for each other factory of the chain (back-runs).
    others: tuple[tuple[Factory, PairKey], ...]
    #: The pair addresses the valuation reads, for the pipeline to gather: the hops, the WETH pair, the others.
    needs: tuple[bytes, ...]
    #: ``needs`` as reserves keys ((chain id, pair), in the same order).
    need_keys: tuple[PairKey, ...] = ()
    #: The chain's wrapped native token (b"" when it has none).
    weth_token: bytes = b""


def route_plan(venues: Venues, chain_id: int, router: bytes, path: tuple[bytes, ...]) -> RoutePlan | None:
    """The :class:`RoutePlan` of a swap through ``router`` along ``path`` (None: a router no factory lists),
    cached per process."""
    key = (venues, chain_id, router, path)
    try:
        return _plan_cache[key]
    except KeyError:
        pass
    plan = _plan(venues, chain_id, router, path)
    if len(_plan_cache) >= PAIR_CACHE_MAX:
        _plan_cache.clear()
    _plan_cache[key] = plan
    return plan


def _plan(venues: Venues, chain_id: int, router: bytes, path: tuple[bytes, ...]) -> RoutePlan | None:
    factory = venues.factory_of_router(chain_id, router)
    if factory is None:
        return None
    if len(path) < 2:  # a decoded call's path may be empty or one token: no hop, nothing to read
        return RoutePlan(factory, (), True, False, None, (), ())
    weth = venues.wrapped_native(chain_id)
    extra = (weth,) if weth is not None and path[0] != weth else ()
    needs = route_pairs(factory.address, factory.init_code_hash, path, *extra)
    others = []
    for other in venues.factories(chain_id):
        if other is not factory:
            first = route_pairs(other.address, other.init_code_hash, path[:2])
            needs += first
            if first:
                others.append((other, (chain_id, first[0])))
    hops = needs[:len(path) - 1]
    return RoutePlan(factory, tuple((chain_id, pair) for pair in hops), len(set(hops)) != len(hops),
                     weth is not None and path[0] == weth, (chain_id, needs[len(path) - 1]) if extra else None,
                     tuple(others), needs, tuple((chain_id, pair) for pair in needs), weth or b"")


def words_plan(venues: Venues, chain_id: int, router: bytes, words: bytes) -> RoutePlan | None:
    """:func:`route_plan` of the path whose ABI words are ``words`` (``calldata.path_words``; None: not a path of
    addresses, or a router no factory lists), cached per process by the words themselves: the pipeline's
    gathering reads no address out of a call whose route it has resolved before (bounded like the other caches)."""
    key = (venues, chain_id, router, words)
    try:
        return _words_cache[key]
    except KeyError:
        pass
    path = path_of_words(words)
    plan = None if path is None else route_plan(venues, chain_id, router, path)
    if len(_words_cache) >= PAIR_CACHE_MAX:
        _words_cache.clear()
    _words_cache[key] = plan
    return plan


class Venues:
    """The factories of each chain, the factory behind each router, and each chain's wrapped native token; and the
    attacker's capital (``max_capital_wei``: the largest sandwich front-run, native wei; 0 = no bound)."""

    __slots__ = ("_by_chain", "_by_router", "_wrapped", "max_capital_wei", "router_addresses")

    def __init__(self, factories: tuple[Factory, ...] = BUILTIN_FACTORIES,
                 wrapped_native: dict[int, bytes] | None = None, max_capital_wei: int = 0) -> None:
        self.max_capital_wei = max_capital_wei
        self._by_chain: dict[int, list[Factory]] = {}
        self._by_router: dict[tuple[int, bytes], Factory] = {}
        for f in factories:
            self._by_chain.setdefault(f.chain_id, []).append(f)
            for router in f.routers:
                self._by_router[(f.chain_id, router)] = f
        self._wrapped = dict(BUILTIN_WRAPPED_NATIVE if wrapped_native is None else wrapped_native)
        #: Every known router's address, on any chain: the pipeline's first test per transaction (a set lookup of
        #: the ``to`` address, before the (chain, router) one), since most transactions go elsewhere.
        self.router_addresses = frozenset(router for _, router in self._by_router)

    def factory_of_router(self, chain_id: int, router: bytes) -> Factory | None:
        """The factory a router swaps through, None for a router the valuation does not know."""
        return self._by_router.get((chain_id, router))

    def factories(self, chain_id: int) -> list[Factory]:
        """Every known factory of the chain (the back-run looks for the same pair on the others)."""
        return self._by_chain.get(chain_id, [])

    def wrapped_native(self, chain_id: int) -> bytes | None:
        """The chain's wrapped native token (WETH on mainnet), None when not configured."""
        return self._wrapped.get(chain_id)

    def __getstate__(self) -> tuple[object, ...]:  # sent pickled to the analysis workers
        return self._by_chain, self._by_router, self._wrapped, self.max_capital_wei

    def __setstate__(self, state: tuple[object, ...]) -> None:
        self._by_chain, self._by_router, self._wrapped, self.max_capital_wei = state  # type: ignore[assignment]
        self.router_addresses = frozenset(router for _, router in self._by_router)


def _address(entry: dict[str, object], key: str, where: str, size: int = 20) -> bytes:
    value = entry.get(key)
    try:
        raw = _hex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise VenueConfigError(f"{where}: {key} must be a 0x-prefixed {size}-byte hex string, got {value!r}")
    return raw


def venue_from_json(entry: object, where: str) -> tuple[Factory, bytes | None]:
    """One venues-file entry: ``{"name", "chain_id", "factory", "init_code_hash", "routers": [...], "fee_bps"
    (default 30), "wrapped_native" (optional)}`` -> (factory, the chain's wrapped native token or None)."""
    if not isinstance(entry, dict):
        raise VenueConfigError(f"{where}: an entry must be a JSON object")
    name, chain_id, fee = entry.get("name"), entry.get("chain_id"), entry.get("fee_bps", V2_FEE_BPS)
    if not isinstance(name, str) or not name:
        raise VenueConfigError(f"{where}: name must be a non-empty string")
    if type(chain_id) is not int or chain_id <= 0:
        raise VenueConfigError(f"{where}: chain_id must be a positive integer")
    if type(fee) is not int or not 0 <= fee < 10_000:
        raise VenueConfigError(f"{where}: fee_bps must be an integer in 0..9999")
    routers = entry.get("routers", [])
    if not isinstance(routers, list):
        raise VenueConfigError(f"{where}: routers must be a list")
    factory = Factory(name, chain_id, _address(entry, "factory", where),
                      _address(entry, "init_code_hash", where, 32),
                      tuple(_address({"router": r}, "router", where) for r in routers), fee)
    wrapped = _address(entry, "wrapped_native", where) if "wrapped_native" in entry else None
    return factory, wrapped


def load_venues(path: Path | None, max_capital_wei: int = 0) -> Venues:
    """The built-in venues plus those of the JSON file at ``path`` (none: the built-in ones only), with the
    attacker's capital bound (:class:`Venues`)."""
    if path is None:
        return Venues(max_capital_wei=max_capital_wei)
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VenueConfigError(f"valuation venues file {path}: {exc}") from None
    if not isinstance(entries, list):
        raise VenueConfigError(f"valuation venues file {path}: must hold a JSON list")
    factories = list(BUILTIN_FACTORIES)
    wrapped = dict(BUILTIN_WRAPPED_NATIVE)
    for i, entry in enumerate(entries):
        factory, token = venue_from_json(entry, f"{path} entry {i}")
        factories.append(factory)
        if token is not None:
            wrapped[factory.chain_id] = token
    return Venues(tuple(factories), wrapped, max_capital_wei)
