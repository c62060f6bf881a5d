"""User ABIs (``processd --abi-dir DIR``): JSON ABI files whose functions processd decodes beside its built-in tables.

Accepted file shapes (``*.json`` in DIR, not recursive, read in name order):

- a bare ABI array, as Etherscan exports it: ``[{"type": "function", "name": ..., "inputs": [...]}, ...]``;
- a Foundry (or Hardhat) artifact: ``{"abi": [...], ...}`` (the other keys are ignored);
- the mempulse wrapper ``{"abi": [...], "addresses": ["0x..", ...], "chain_ids": [1], "label": "mytoken"}``,
  which scopes the ABI to those contracts (on those chains; no ``chain_ids`` = every chain) and names the
  protocol label its calls get (default ``user_abi``).

Precedence (:meth:`UserAbis.scoped_function`, :meth:`UserAbis.unscoped_function`): an ABI scoped to the called
address wins over the built-in decoders; the built-in decoders win over an unscoped ABI. Why: the built-ins give
the structured swap / transfer facts (tokens, amounts, path) the searcher ranks, and an unscoped Etherscan export
of any token repeats ``transfer``/``approve``; a file that names the contract is the operator saying "decode this
contract my way". Among unscoped files the first file (by name) that defines a selector keeps it.

Everything is bounded (files, bytes per file, functions, inputs, type nesting, addresses, name lengths): a file
past a bound, unreadable, not JSON or not an ABI is a :class:`ConfigError` naming the file and the problem, raised
when processd starts (it refuses to start), never while decoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from Crypto.Hash import keccak
from eth_abi.abi import default_codec

from common.envconfig import ConfigError

MAX_ABI_FILES = 256
MAX_ABI_FILE_BYTES = 4 << 20
MAX_FUNCTIONS = 4096
MAX_INPUTS = 64
#: Tuple / array levels inside one input type ("(uint256[],address)[]" is 3).
MAX_TYPE_DEPTH = 6
MAX_ADDRESSES = 4096
MAX_NAME_CHARS = 128
DEFAULT_LABEL = "user_abi"


@dataclass(frozen=True, slots=True)
class UserFunction:
    """One function of a user ABI: what decoding a call of it needs (picklable: sent to the analysis workers)."""

    selector: bytes
    name: str
    #: Canonical ABI types of the inputs, and their names ("arg<i>" when the ABI leaves one unnamed).
    types: tuple[str, ...]
    names: tuple[str, ...]
    #: Protocol label of its calls.
    label: str
    #: The file it came from (for messages and tests).
    source: str


@dataclass(frozen=True, slots=True)
class UserAbis:
    """Every loaded user ABI function, by selector (unscoped) and by (chain id or 0 = any, address, selector)."""

    unscoped: dict[bytes, UserFunction] = field(default_factory=dict)
    scoped: dict[tuple[int, bytes, bytes], UserFunction] = field(default_factory=dict)
    #: Selectors defined more than once: the later definition was ignored (logged by the caller).
    shadowed: int = 0

    def scoped_function(self, chain_id: int, to: bytes, selector: bytes) -> UserFunction | None:
        """The function an ABI scoped to ``to`` defines for ``selector`` (this chain's scope first)."""
        scoped = self.scoped
        return scoped.get((chain_id, to, selector)) or scoped.get((0, to, selector))

    def unscoped_function(self, selector: bytes) -> UserFunction | None:
        """The function an unscoped ABI defines for ``selector``."""
        return self.unscoped.get(selector)

    def __len__(self) -> int:
        return len(self.unscoped) + len(self.scoped)


def selector_of(signature: str) -> bytes:
    """``keccak256(signature)[:4]``."""
    return keccak.new(digest_bits=256, data=signature.encode()).digest()[:4]


def load_abi_dir(directory: Path) -> UserAbis:
    """Every ``*.json`` of ``directory`` loaded (module doc); raises :class:`ConfigError` on any bad file."""
    if not directory.is_dir():
        raise ConfigError(f"--abi-dir {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    if len(files) > MAX_ABI_FILES:
        raise ConfigError(f"--abi-dir {directory}: {len(files)} ABI files, at most {MAX_ABI_FILES} are read")
    unscoped: dict[bytes, UserFunction] = {}
    scoped: dict[tuple[int, bytes, bytes], UserFunction] = {}
    shadowed = count = 0
    for path in files:
        functions, scopes = _load_file(path)
        count += len(functions)
        if count > MAX_FUNCTIONS:
            raise ConfigError(f"ABI file {path}: more than {MAX_FUNCTIONS} functions in --abi-dir altogether")
        for fn in functions:
            keys = [(chain, address, fn.selector) for chain, address in scopes]
            for key in keys:
                shadowed += key in scoped
                scoped.setdefault(key, fn)
            if not scopes:
                shadowed += fn.selector in unscoped
                unscoped.setdefault(fn.selector, fn)
    return UserAbis(unscoped, scoped, shadowed)


def _load_file(path: Path) -> tuple[list[UserFunction], list[tuple[int, bytes]]]:
    """(functions, (chain id or 0, address) scopes) of one ABI file; ConfigError naming the file on any problem."""
    try:
        if path.stat().st_size > MAX_ABI_FILE_BYTES:
            raise ValueError(f"larger than {MAX_ABI_FILE_BYTES} bytes")
        doc = json.loads(path.read_bytes())
        abi, scopes, label = _shape(doc)
        return [_function(entry, label, path.name) for entry in _functions(abi)], scopes
    except (OSError, ValueError, TypeError, KeyError) as exc:
        # ValueError covers json's JSONDecodeError and UnicodeDecodeError; one line for the operator.
        raise ConfigError(f"ABI file {path}: {exc}".replace("\n", " ")) from None


def _shape(doc: Any) -> tuple[list[Any], list[tuple[int, bytes]], str]:
    """(ABI entries, scopes, label) of a file's JSON: a bare array, a Foundry artifact or the mempulse wrapper."""
    if isinstance(doc, list):
        return doc, [], DEFAULT_LABEL
    if not isinstance(doc, dict) or not isinstance(doc.get("abi"), list):
        raise ValueError("not an ABI: expected a JSON array of ABI entries or an object with an \"abi\" array")
    addresses = _addresses(doc.get("addresses", []))
    chain_ids = doc.get("chain_ids", [])
    if not isinstance(chain_ids, list) or not all(type(c) is int and 0 < c < 1 << 63 for c in chain_ids):
        raise ValueError("\"chain_ids\" must be a list of positive integers")
    if chain_ids and not addresses:
        raise ValueError("\"chain_ids\" needs \"addresses\" (an ABI is scoped to contracts on chains)")
    label = doc.get("label", DEFAULT_LABEL)
    if not isinstance(label, str) or not 0 < len(label) <= MAX_NAME_CHARS:
        raise ValueError(f"\"label\" must be a string of 1-{MAX_NAME_CHARS} characters")
    scopes = [(chain, address) for address in addresses for chain in (chain_ids or [0])]
    return doc["abi"], scopes, label


def _addresses(values: Any) -> list[bytes]:
    """20-byte addresses from 0x-hex strings."""
    if not isinstance(values, list) or len(values) > MAX_ADDRESSES:
        raise ValueError(f"\"addresses\" must be a list of at most {MAX_ADDRESSES} 0x addresses")
    out = []
    for text in values:
        if not isinstance(text, str) or len(text) != 42 or not text.startswith("0x"):
            raise ValueError(f"bad address {text!r} in \"addresses\": expected 0x and 40 hex digits")
        out.append(bytes.fromhex(text[2:]))
    return out


def _functions(abi: list[Any]) -> Iterator[dict[str, Any]]:
    """The ABI's function entries (events, errors, constructor, fallback and receive have no selector to decode)."""
    for i, entry in enumerate(abi):
        if not isinstance(entry, dict):
            raise ValueError(f"ABI entry {i} is not an object")
        if entry.get("type", "function") == "function":
            yield entry


def _function(entry: dict[str, Any], label: str, source: str) -> UserFunction:
    """A :class:`UserFunction` from one ABI function entry."""
    name = entry.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise ValueError(f"function name {name!r}: expected a string of 1-{MAX_NAME_CHARS} characters")
    inputs = entry.get("inputs", [])
    if not isinstance(inputs, list) or len(inputs) > MAX_INPUTS:
        raise ValueError(f"function {name}: \"inputs\" must be a list of at most {MAX_INPUTS} parameters")
    types = tuple(_canonical(p, f"function {name} input {i}", 0) for i, p in enumerate(inputs))
    names = tuple(_param_name(p, i, name) for i, p in enumerate(inputs))
    for t in types:
        if not default_codec.is_encodable_type(t):
            raise ValueError(f"function {name}: unsupported ABI type {t!r}")
    signature = f"{name}({','.join(types)})"
    return UserFunction(selector_of(signature), name, types, names, label, source)


def _param_name(param: dict[str, Any], index: int, function: str) -> str:
    name = param.get("name") or f"arg{index}"
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"function {function} input {index}: bad name {name!r}")
    return name


def _canonical(param: Any, where: str, depth: int) -> str:
    """The canonical type of an ABI parameter: tuples spelled out from their components, aliases resolved."""
    if not isinstance(param, dict) or not isinstance(param.get("type"), str):
        raise ValueError(f"{where}: expected an object with a \"type\" string")
    text: str = param["type"]
    base, brackets = text, ""
    if "[" in text:
        base, brackets = text[: text.index("[")], text[text.index("["):]
    depth += 1 + brackets.count("[")
    if depth > MAX_TYPE_DEPTH:
        raise ValueError(f"{where}: type nested deeper than {MAX_TYPE_DEPTH} tuple/array levels")
    if base == "tuple":
        components = param.get("components")
        if not isinstance(components, list) or len(components) > MAX_INPUTS:
            raise ValueError(f"{where}: a tuple needs a \"components\" list of at most {MAX_INPUTS}")
        inner = ",".join(_canonical(c, f"{where} component {j}", depth) for j, c in enumerate(components))
        return f"({inner}){brackets}"
    return _ALIASES.get(base, base) + brackets


#: Solidity's type aliases: the selector is computed over the canonical names.
_ALIASES = {"uint": "uint256", "int": "int256", "byte": "bytes1", "fixed": "fixed128x18", "ufixed": "ufixed128x18"}
