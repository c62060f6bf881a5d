"""The hand-rolled event encoding equals protobuf's; config precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.envconfig import ConfigError
from common.pb.v1 import events_pb2, tx_pb2
from common.testing.synth import synthetic_envelopes
from processd.config import load_config
from processd.storage.eventlog import decode_event
from processd.wire import encoding
from processd.wire.tags import varint_slow


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(1, 2**64 - 1), chain=st.integers(0, 2**63 - 1), first=st.integers(0, 2**64 - 1),
       received=st.integers(0, 2**64 - 1), source=st.text(max_size=300), tx_hash=st.binary(max_size=40),
       calldata=st.binary(max_size=20000))
def test_event_values_parse_as_the_protobuf_encoding(seq, chain, first, received, source, tx_hash, calldata):
    env = tx_pb2.TxEnvelope(chain_id=chain, hash=tx_hash, input=calldata)
    header = encoding.event_header(chain, tx_hash, first, received, source)
    value = encoding.event_value(encoding.KIND_SEEN, header, env.SerializeToString())
    expected = events_pb2.Event(chain_id=chain, kind=encoding.KIND_SEEN, tx_hash=tx_hash,
                                first_seen_unix_ns=first, received_unix_ns=received, source_id=source,
                                tx_seen=events_pb2.TxSeen(tx=env))
    # The stored bytes parse as the event without its seq (the key) ...
    assert value[0] == encoding.KIND_SEEN and events_pb2.Event.FromString(value[1:]) == expected
    # ... and decode_event puts the seq back.
    expected.seq_id = seq
    assert decode_event(value, seq) == expected


def test_decoded_and_opportunity_bodies() -> None:
    env = synthetic_envelopes(1, seed=1)[0]
    header = encoding.event_header(env.chain_id, env.hash, 7, 8, "s")
    features = events_pb2.TxFeatures(protocol="uniswap_v2", method="swap", calldata_len=100, decoded=True)
    opp = events_pb2.Opportunity(chain_id=env.chain_id, tx_hash=env.hash, score=77, reasons=["big"])
    dec = decode_event(encoding.event_value(encoding.KIND_DECODED, header, features.SerializeToString()), 11)
    assert dec.seq_id == 11 and dec.kind == encoding.KIND_DECODED and dec.tx_decoded.features == features
    o = decode_event(encoding.event_value(encoding.KIND_OPP, header, opp.SerializeToString()), 12)
    assert o.seq_id == 12 and o.source_id == "s" and o.first_seen_unix_ns == 7
    opp.seq_id = 12  # the opportunity's seq is its event's
    assert o.opp_detected.opportunity == opp


def test_varint_matches_reference() -> None:
    for n in [*range(0, 70000, 3), 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35, 2**63, 2**64 - 1]:
        assert encoding.varint(n) == varint_slow(n)


def test_config_precedence_cli_over_env_over_default(tmp_path: Path) -> None:
    env = {"MEMPULSE_PROCESSD_FLUSH_MAX_EVENTS": "100", "MEMPULSE_PROCESSD_DURABILITY": "nosync",
           "MEMPULSE_PROCESSD_DATA_DIR": str(tmp_path),
           "MEMPULSE_PROCESSD_CHAINS": "ethereum,137"}
    cfg = load_config(["--flush-max-events", "7"], env)
    assert cfg.flush_max_events == 7 and cfg.durability == "nosync" and cfg.data_dir == tmp_path
    assert cfg.chain_ids == frozenset({1, 137}) and cfg.flush_interval_ms == 2
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 50051)
    with pytest.raises(AttributeError):
        cfg.flush_max_events = 1  # type: ignore[misc]


def test_storage_safety_knobs_from_flag_and_env(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path)]
    assert not load_config(base, {}).start_empty_over_damaged_log  # consent is never the default
    assert load_config([*base, "--start-empty-over-damaged-log"], {}).start_empty_over_damaged_log
    assert load_config(base, {"MEMPULSE_PROCESSD_START_EMPTY_OVER_DAMAGED_LOG": "1"}).start_empty_over_damaged_log
    assert load_config(base, {}).disk_full_retry_ms == 1000
    assert load_config([*base, "--disk-full-retry-ms", "50"], {"MEMPULSE_PROCESSD_DISK_FULL_RETRY_MS": "9"}
                            ).disk_full_retry_ms == 50


def test_valuation_is_on_by_default_flag_over_env(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path)]
    assert load_config(base, {}).valuation
    assert not load_config(base, {"MEMPULSE_PROCESSD_VALUATION": "0"}).valuation
    assert load_config([*base, "--valuation", "on"], {"MEMPULSE_PROCESSD_VALUATION": "0"}).valuation
    assert not load_config([*base, "--valuation", "off"], {}).valuation


def test_capital_bound_knob(tmp_path: Path) -> None:
    base = ["--data-dir", str(tmp_path)]
    assert load_config(base, {}).valuation_max_capital_wei == 0
    env = {"MEMPULSE_PROCESSD_VALUATION_MAX_CAPITAL_WEI": str(5 * 10**18)}
    assert load_config(base, env).valuation_max_capital_wei == 5 * 10**18
    assert load_config([*base, "--valuation-max-capital-wei", "7"], env).valuation_max_capital_wei == 7
    for bad in ("-1", "1e18", str(2**256)):
        with pytest.raises(ConfigError, match="VALUATION_MAX_CAPITAL_WEI"):
            load_config(base, {"MEMPULSE_PROCESSD_VALUATION_MAX_CAPITAL_WEI": bad})


@pytest.mark.parametrize("argv, env, needle", [
    ([], {}, "--data-dir"),
    (["--data-dir", "x", "--listen", "nohost"], {}, "--listen"),
    (["--data-dir", "x"], {"MEMPULSE_PROCESSD_FLUSH_MAX_EVENTS": "0"}, "FLUSH_MAX_EVENTS"),
    (["--data-dir", "x"], {"MEMPULSE_PROCESSD_DURABILITY": "maybe"}, "DURABILITY"),
    (["--data-dir", "x", "--chains", "narnia"], {}, "narnia"),
    (["--data-dir", "x"], {"MEMPULSE_PROCESSD_MAX_INPUT_BYTES": "99999999"}, "max_input_bytes"),
    # calldata under the message limit, but twice of it (raw_tx repeats it) with the lists is not
    (["--data-dir", "x"], {"MEMPULSE_PROCESSD_MAX_INPUT_BYTES": "8200000"}, "max_input_bytes"),
    (["--data-dir", "x"], {"MEMPULSE_PROCESSD_MAX_PAGE_BYTES": "16000000"}, "max_page_bytes"),
    (["--data-dir", "x"], {"MEMPULSE_PROCESSD_START_EMPTY_OVER_DAMAGED_LOG": "perhaps"},
     "START_EMPTY_OVER_DAMAGED_LOG"),
    (["--data-dir", "x", "--disk-full-retry-ms", "0"], {}, "disk-full-retry-ms"),
])
def test_bad_config_is_one_clear_error(argv, env, needle) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, env)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_page_byte_budget_is_derived_from_the_message_limit() -> None:
    """Issue 14: pages are cut by bytes; the budget defaults to half the gRPC message limit."""
    assert load_config(["--data-dir", "x"], {}).page_bytes == 8 * 1024 * 1024
    small = load_config(["--data-dir", "x"], {"MEMPULSE_PROCESSD_MAX_MESSAGE_BYTES": "4194304"})
    assert small.page_bytes == 2 * 1024 * 1024
    assert load_config(["--data-dir", "x"], {"MEMPULSE_PROCESSD_MAX_PAGE_BYTES": "1000000"}).page_bytes == 1_000_000
