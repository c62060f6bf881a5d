"""Local factories as data: the venues file (--valuation-venues-file) adds a chain's own factory, routers, fee and
wrapped native token; a malformed file stops processd at start naming the entry and field."""

from __future__ import annotations

import json
from pathlib import Path

import eth_abi
import pytest

from common.envconfig import ConfigError
from common.pb.v1 import events_pb2
from processd.analysis.analyzer import Analyzer
from processd.analysis.valuation.amm import swap_out
from processd.analysis.valuation.pairs import VenueConfigError, load_venues, pair_address
from processd.analysis.valuation.state import PoolReserves
from processd.config import load_config

FACTORY, ROUTER, WETH, TOKEN = b"\x11" * 20, b"\x22" * 20, b"\x33" * 20, b"\x44" * 20
INIT = bytes(range(32))
ENTRY = {"name": "local_v2", "chain_id": 31337, "factory": "0x" + FACTORY.hex(), "init_code_hash": "0x" + INIT.hex(),
         "routers": ["0x" + ROUTER.hex()], "fee_bps": 25, "wrapped_native": "0x" + WETH.hex()}


def write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "venues.json"
    path.write_text(json.dumps(entries))
    return path


def test_a_local_factory_values_its_swaps(tmp_path: Path) -> None:
    venues = load_venues(write(tmp_path, [ENTRY]))
    factory = venues.factory_of_router(31337, ROUTER)
    assert factory is not None and factory.fee_bps == 25 and venues.wrapped_native(31337) == WETH
    assert venues.factory_of_router(1, bytes.fromhex("7a250d5630b4cf539739df2c5dacb4c659f2488d")) is not None
    pair = pair_address(FACTORY, INIT, WETH, TOKEN)
    r_weth, r_token = 500 * 10**18, 10**24
    state = {(31337, pair): PoolReserves(31337, pair, WETH, TOKEN, r_weth, r_token, 9)}  # WETH < TOKEN
    amount = 10 * 10**18
    out_min = swap_out(amount, r_weth, r_token, 25) * 97 // 100
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"],
        [amount, out_min, [WETH, TOKEN], b"\x09" * 20, 2**40])
    analyzer = Analyzer(venues=venues)
    encoded = analyzer.analyze_fields(31337, b"\x05" * 32, b"\x09" * 20, ROUTER, b"", (10**9).to_bytes(4, "big"),
                                      None, None, data, state)
    opps = [events_pb2.Opportunity.FromString(o) for _, o in encoded.opportunities]
    sandwich = [o for o in opps if o.kind == events_pb2.OPPORTUNITY_KIND_SANDWICH_CANDIDATE]
    assert sandwich and sandwich[0].valued and sandwich[0].state_block_number == 9
    # with the 0.25% fee of the entry, not Uniswap's 0.3%: the victim's bound holds at the reported front-run
    x = int.from_bytes(sandwich[0].frontrun_amount_in, "big")
    bought = swap_out(x, r_weth, r_token, 25)
    assert swap_out(amount, r_weth + x, r_token - bought, 25) >= out_min


@pytest.mark.parametrize(("entries", "needle"), [
    ({"not": "a list"}, "must hold a JSON list"),
    ([{**ENTRY, "factory": "0x12"}], "entry 0: factory"),
    ([ENTRY, {**ENTRY, "init_code_hash": "0x" + "00" * 31}], "entry 1: init_code_hash"),
    ([{**ENTRY, "chain_id": 0}], "chain_id"),
    ([{**ENTRY, "fee_bps": 10_000}], "fee_bps"),
    ([{**ENTRY, "routers": "0x" + "22" * 20}], "routers must be a list"),
    ([{**ENTRY, "name": ""}], "name"),
])
def test_bad_venues_files_are_named(tmp_path: Path, entries: object, needle: str) -> None:
    path = write(tmp_path, entries)
    with pytest.raises(VenueConfigError, match=needle):
        load_venues(path)
    with pytest.raises(ConfigError, match="MEMPULSE_PROCESSD_VALUATION_VENUES_FILE"):
        load_config(["--data-dir", str(tmp_path)], {"MEMPULSE_PROCESSD_VALUATION_VENUES_FILE": str(path)})


def test_the_knob_reaches_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, [ENTRY])
    config = load_config(["--data-dir", str(tmp_path), "--valuation-venues-file", str(path)])
    assert config.valuation_venues_file == path
    assert load_config(["--data-dir", str(tmp_path)], {}).valuation_venues_file is None
    with pytest.raises(ConfigError, match=r"valuation venues file .*missing\.json"):
        load_config(["--data-dir", str(tmp_path), "--valuation-venues-file", str(tmp_path / "missing.json")])
