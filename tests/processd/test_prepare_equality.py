"""prepare_batch (hand-encoded, fields read once, encoding and column appends in wire.batch.encode_batch's loop)
equals, byte for byte, a reference built the slow, obvious way from protobuf messages: ``validate(envelope)``, the
analyzer's decoding and scores with every message built by the protobuf library (``_reference.py``:
``reference_features``, ``reference_rank``) and serialized with ``SerializeToString``, the event values from
``encoding.event_header`` / ``encoding.event_value`` of ``envelope.SerializeToString()``, and the columns from
``ColumnsBuilder``.

Inputs: every bundled fixture call on every chain with a registry, synthetic streams of many seeds over all
known chains, and edge cases (empty calldata, contract creation, unknown selectors, plain value to each wrapped
native token, undecodable arguments, every reject reason, odd times and sources, calldata past the varint
tables, analysis functions that raise, decoded calls the hand encoders must refuse).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.chains import KNOWN_CHAINS, MAX_CHAIN_ID
from common.pb.v1 import events_pb2, ingest_pb2, tx_pb2
from common.testing.samples import fixture_envelopes
from common.testing.synth import synthetic_envelopes
from processd.analysis.analyzer import Analysis, Analyzer, encode_analysis
from processd.analysis.decoding.model import SWAP, UNISWAP_V2, DecodedCall
from processd.analysis.decoding.registry import _RAW, WRAPPED_NATIVE
from processd.analysis.decoding.userabi import load_abi_dir
from processd.analysis.prepare import prepare_batch
from processd.analysis.validation import (
    MAX_AUTHORIZATIONS,
    MAX_BLOB_HASHES,
    RAW_TX_OVERHEAD_BYTES,
    validate,
)
from processd.storage.eventlog import tx_key
from processd.wire import encoding
from processd.wire.columns import BatchColumns, ColumnsBuilder, life_row
from tests.processd._reference import reference_analyze

RECEIVED_NS = 1_700_000_000_987_654_321
MAX_INPUT = 128 * 1024
ALL_CHAINS = tuple(sorted(set(KNOWN_CHAINS.values())))
ANALYZER = Analyzer()
WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
V2_ROUTER = bytes.fromhex("7a250d5630b4cf539739df2c5dacb4c659f2488d")


# --- the reference ----------------------------------------------------------------------------------------


def reference_fallback(envelope: tx_pb2.TxEnvelope, exc: Exception) -> Analysis:
    """What a transaction whose analysis raised is stored as (category other, the error in decode_error)."""
    data = envelope.input
    return Analysis(events_pb2.TxFeatures(
        category=events_pb2.TX_CATEGORY_OTHER, selector=data[:4], value=envelope.value,
        gas_price=envelope.max_fee_per_gas if envelope.HasField("max_fee_per_gas") else envelope.gas_price,
        priority_fee=(envelope.max_priority_fee_per_gas if envelope.HasField("max_priority_fee_per_gas")
                      else envelope.gas_price),
        calldata_len=len(data), decode_error=f"analysis failed: {exc!r}"[:200]))


def reference_prepare(raw: bytes, received_ns: int, analyze: Callable[[tx_pb2.TxEnvelope], Analysis],
                      chain_ids: frozenset[int], max_input_bytes: int) -> BatchColumns:
    """prepare_batch the obvious way: protobuf messages, serialized, and encoding's functions one by one."""
    envelopes = ingest_pb2.TxBatch.FromString(raw).envelopes
    reasons = bytearray(len(envelopes))
    columns = ColumnsBuilder()
    errors = 0
    for index, envelope in enumerate(envelopes):
        reason = validate(envelope, chain_ids, max_input_bytes)
        if reason:
            reasons[index] = reason
            continue
        try:
            analysis = analyze(envelope)
        except Exception as exc:
            analysis = reference_fallback(envelope, exc)
            errors += 1
        f = analysis.features
        features = f.SerializeToString()
        header = encoding.event_header(envelope.chain_id, envelope.hash, envelope.first_seen_unix_ns, received_ns,
                                       envelope.source_id)
        values = [encoding.event_value(encoding.KIND_SEEN, header, envelope.SerializeToString()),
                  encoding.event_value(encoding.KIND_DECODED, header, features)]
        values += [encoding.event_value(encoding.KIND_OPP, header, o.SerializeToString())
                   for o in analysis.opportunities]
        kinds = bytes([encoding.KIND_SEEN, encoding.KIND_DECODED] + [encoding.KIND_OPP] * len(analysis.opportunities))
        e = envelope
        columns.add(envelope.chain_id, tx_key(envelope.chain_id, envelope.hash),
                    (envelope.chain_id, f.category, f.protocol, f.decoded, envelope.source_id), kinds, values,
                    [o.score for o in analysis.opportunities],
                    life=life_row(e.hash, e.sender, e.nonce, e.to, e.value, e.gas_price, e.max_fee_per_gas,
                                  e.input, e.first_seen_unix_ns))
    return columns.build(bytes(reasons), errors)


def raw_batch(envelopes: Iterable[tx_pb2.TxEnvelope]) -> bytes:
    return ingest_pb2.TxBatch(session_id="s", batch_seq=1, envelopes=list(envelopes)).SerializeToString()


def assert_equal(raw: bytes, analyzer: Analyzer = ANALYZER, chain_ids: frozenset[int] = frozenset(),
                 max_input_bytes: int = MAX_INPUT, received_ns: int = RECEIVED_NS) -> BatchColumns:
    got = prepare_batch(raw, received_ns, analyzer, chain_ids, max_input_bytes)
    want = reference_prepare(raw, received_ns, lambda e: reference_analyze(analyzer, e), chain_ids, max_input_bytes)
    assert got.reasons == want.reasons and got.analysis_errors == want.analysis_errors
    for name in BatchColumns._fields:
        assert getattr(got, name) == getattr(want, name), f"column {name} differs"
    # Equal bytes, and bytes (not bytearrays or memoryviews): the writer hashes and stores them.
    assert all(type(x) is bytes for x in (*got.tx_key, *got.tx_kinds, *got.values))
    return got


def typed_envelopes() -> list[tx_pb2.TxEnvelope]:
    """Valid envelopes of every transaction type with their signature and typed fields (stored as sent)."""
    sig: dict[str, object] = dict(r=b"\x11" * 32, s=b"\x22" * 31, raw_tx=b"\x02\xf8" + b"\x33" * 300)
    access = [tx_pb2.AccessListEntry(address=b"\x0c" * 20, storage_keys=[b"\x01" * 32, b"\x02" * 32]),
              tx_pb2.AccessListEntry(address=b"\x0d" * 20)]
    auth = tx_pb2.Authorization(chain_id=b"\x01", address=b"\x0e" * 20, nonce=3, y_parity=1, r=b"\x05" * 32,
                                s=b"\x06")
    return [
        env(tx_type=0, v=b"\x25", **sig, raw_tx_origin=tx_pb2.RAW_TX_ORIGIN_REENCODED),
        env(tx_type=1, v=b"", y_parity=0, access_list=access, **sig),
        env(tx_type=2, v=b"\x01", y_parity=1, max_fee_per_gas=b"\x09", max_priority_fee_per_gas=b"",
            access_list=access[:1], **sig, raw_tx_origin=tx_pb2.RAW_TX_ORIGIN_NODE),
        env(tx_type=3, y_parity=1, max_fee_per_gas=b"\x09", max_priority_fee_per_gas=b"\x01",
            max_fee_per_blob_gas=b"", blob_versioned_hashes=[b"\x01" * 32] * MAX_BLOB_HASHES, **sig),
        env(tx_type=4, y_parity=0, max_fee_per_gas=b"\x09", max_priority_fee_per_gas=b"\x01",
            authorization_list=[auth] * 3, **sig),
        env(tx_type=0, v=b"\xf4\xf5", r=b"", s=b""),  # anvil's impersonated senders: no signature
        env(raw_tx=b"\x01" * (MAX_INPUT + RAW_TX_OVERHEAD_BYTES)),  # at the bound
        env(access_list=[tx_pb2.AccessListEntry(address=b"\x01" * 20, storage_keys=[b"\x02" * 32] * 4095)]),
        env(authorization_list=[auth] * MAX_AUTHORIZATIONS),
    ]


def env(**fields: object) -> tx_pb2.TxEnvelope:
    base: dict[str, object] = dict(chain_id=1, hash=b"\x07" * 32, sender=b"\x0a" * 20, to=b"\x0b" * 20,
                                   gas_price=(30 * 10**9).to_bytes(5, "big"), source_id="ws-1",
                                   first_seen_unix_ns=1_700_000_000_000_000_001)
    base.update(fields)
    return tx_pb2.TxEnvelope(**base)  # type: ignore[arg-type]


# --- inputs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chain_id", [*sorted(_RAW), 10])
def test_every_fixture_call(chain_id: int) -> None:
    envelopes = fixture_envelopes(chain_id)
    for i, e in enumerate(envelopes):
        e.source_id = f"node-{i % 3}"
        e.first_seen_unix_ns = 1_700_000_000_000_000_000 + i
    got = assert_equal(raw_batch(envelopes))
    assert len(got.chain) == len(envelopes) and got.analysis_errors == 0
    if chain_id == 1:
        assert len(got.opps) > 100  # opportunities were encoded, not only features


def test_fixture_calls_with_user_abis() -> None:
    """With ``--abi-dir`` (tests/processd/abis): the user ABI calls' records, args included, as protobuf's."""
    analyzer = Analyzer(user_abis=load_abi_dir(Path(__file__).resolve().parent / "abis"))
    envelopes = fixture_envelopes(1)
    vault = bytes.fromhex("00000000000000000000000000000000000c0de1")
    envelopes += [env(to=vault, input=e.input) for e in envelopes[:50]]  # scoped: transfers decode as user ABI
    assert_equal(raw_batch(envelopes), analyzer=analyzer)
    decoded = [analyzer.decode_call(e.chain_id, e.to, 0, e.sender, e.input) for e in envelopes]
    user_calls = [(call, protocol) for call, protocol in decoded if call is not None and call.args]
    assert len(user_calls) > 150 and any(call.args_truncated for call, _ in user_calls)
    assert sum(protocol == "custom_vault" for _, protocol in user_calls) > 10


@pytest.mark.parametrize("seed", range(12))
def test_synthetic_streams_on_all_chains(seed: int) -> None:
    envelopes = synthetic_envelopes(500, seed=seed, chain_ids=ALL_CHAINS, source_id=f"synth-{seed}")
    assert_equal(raw_batch(envelopes))


def test_chain_filter_and_custom_min_score() -> None:
    envelopes = synthetic_envelopes(600, seed=99, chain_ids=ALL_CHAINS)
    got = assert_equal(raw_batch(envelopes), chain_ids=frozenset({1, 56, 137}))
    assert got.reasons.count(ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN) and got.chain
    assert_equal(raw_batch(envelopes), analyzer=Analyzer(min_score=0))  # every kind scoring >= 1 is emitted
    assert_equal(raw_batch(envelopes), analyzer=Analyzer(min_score=60))


def test_edge_cases() -> None:
    wrapped = [(chain, bytes.fromhex(addr)) for chain, entries in _RAW.items() for addr, c in entries.items()
               if WRAPPED_NATIVE in c.labels]
    selector_only = bytes.fromhex("a9059cbb")
    cases = [
        env(),  # empty calldata, no value: a transfer of nothing
        env(value=b"\x01"),  # plain value transfer
        env(value=(10**18).to_bytes(8, "big"), max_fee_per_gas=b"\x09" * 5, max_priority_fee_per_gas=b"\x01"),
        env(to=b"", input=b"\x60\x80\x60\x40\x52"),  # contract creation
        env(to=b""),  # contract creation without code
        env(input=b"\xde\xad\xbe\xef" + bytes(64)),  # unknown selector
        env(input=b"\x01\x02"),  # shorter than a selector
        env(to=WETH, input=b"\x01\x02\x03"),  # unknown selector on a known contract
        env(to=WETH, input=b"\x01\x02\x03\x04"),
        env(input=selector_only),  # known selector, no arguments: undecodable
        env(input=selector_only + b"\x01" * 40),
        env(to=V2_ROUTER, input=bytes.fromhex("7ff36ab5") + b"\xff" * 200),  # a swap that does not decode
        env(input=b"\x00" * 20_000),  # calldata past the 2**14 varint tables
        env(to=b"", input=b"\x33" * 17_000, value=b"\x05"),
        env(first_seen_unix_ns=0),
        env(first_seen_unix_ns=5),
        env(first_seen_unix_ns=2**56 - 1),
        env(first_seen_unix_ns=2**56),
        env(first_seen_unix_ns=2**64 - 1),
        env(source_id=""),
        env(source_id="nœud-ü-☃"),
        env(source_id="x" * 256),
        env(chain_id=MAX_CHAIN_ID),
        env(chain_id=250, to=bytes.fromhex("21be370d5312f44cb42ce377bc9b8a0cef1a4c83")),
        env(value=b"\x01" * 32, gas_price=b"\xff" * 32, max_fee_per_gas=b"\xff" * 32,
            max_priority_fee_per_gas=b"\xff" * 32),
        env(gas_price=b""),  # no gas price at all
        env(nonce=7, gas=21_000, tx_type=2),
        *typed_envelopes(),
    ]
    for chain, addr in wrapped:
        cases.append(env(chain_id=chain, to=addr, value=(3 * 10**18).to_bytes(8, "big")))  # deposit by value
        cases.append(env(chain_id=chain, to=addr))  # zero value: a deposit of nothing
    for h in (b"\x01", b"\x02"):  # the same transactions again, from another source, later
        cases += [env(hash=h * 32, source_id="ws-2", first_seen_unix_ns=2 * 10**18)]
    for received in (RECEIVED_NS, 0, 1):
        assert len(assert_equal(raw_batch(cases), received_ns=received).chain) == len(cases)


def test_every_reject_reason() -> None:
    too_long = b"\x01" * 33
    invalid = [
        env(chain_id=0),
        env(chain_id=MAX_CHAIN_ID + 1),
        env(chain_id=424242),  # not in the accepted set below
        env(hash=b"\x01" * 31),
        env(hash=b""),
        env(sender=b"\x01" * 19),
        env(sender=b""),
        env(to=b"\x01" * 5),
        env(value=too_long),
        env(gas_price=too_long),
        env(max_fee_per_gas=too_long),
        env(max_priority_fee_per_gas=too_long),
        env(input=b"\x01" * (MAX_INPUT + 1)),
        env(source_id="y" * 257),
        # the signature and typed-transaction fields (validation.validate_typed)
        env(raw_tx=b"\x01" * (MAX_INPUT + RAW_TX_OVERHEAD_BYTES + 1)),
        env(r=too_long), env(s=too_long), env(v=too_long), env(y_parity=2), env(max_fee_per_blob_gas=too_long),
        env(access_list=[tx_pb2.AccessListEntry(address=b"\x01" * 19)]),
        env(access_list=[tx_pb2.AccessListEntry(address=b"\x01" * 20, storage_keys=[b"\x02" * 31])]),
        env(access_list=[tx_pb2.AccessListEntry(address=b"\x01" * 20, storage_keys=[b"\x02" * 32] * 4096)]),
        env(blob_versioned_hashes=[b"\x01" * 33]),
        env(blob_versioned_hashes=[b"\x01" * 32] * (MAX_BLOB_HASHES + 1)),
        env(authorization_list=[tx_pb2.Authorization(address=b"\x01" * 21)]),
        env(authorization_list=[tx_pb2.Authorization(address=b"\x01" * 20, r=too_long)]),
        env(authorization_list=[tx_pb2.Authorization(address=b"\x01" * 20, y_parity=2)]),
        env(authorization_list=[tx_pb2.Authorization(address=b"\x01" * 20)] * (MAX_AUTHORIZATIONS + 1)),
    ]
    # Invalid envelopes between valid ones, the first of their chain too (the per-chain cache).
    mixed = []
    for i, bad in enumerate(invalid):
        mixed += [bad, env(hash=bytes([i + 1]) * 32)]
    chain_ids = frozenset({1, MAX_CHAIN_ID, MAX_CHAIN_ID + 1})
    columns = assert_equal(raw_batch(mixed), chain_ids=chain_ids)
    reasons = columns.reasons
    got = {reasons[2 * i] for i in range(len(invalid))}
    assert got == {
        ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN, ingest_pb2.REJECT_REASON_BAD_HASH,
        ingest_pb2.REJECT_REASON_BAD_ADDRESS, ingest_pb2.REJECT_REASON_BAD_QUANTITY,
        ingest_pb2.REJECT_REASON_TOO_LARGE,
    }
    assert all(reasons[2 * i] for i in range(len(invalid))) and len(columns.chain) == len(invalid)
    assert_equal(raw_batch(mixed))  # no chain filter
    assert_equal(raw_batch([]))


def test_analysis_that_raises() -> None:
    envelopes = synthetic_envelopes(40, seed=5)

    def flaky(envelope: tx_pb2.TxEnvelope) -> Analysis:
        if envelope.nonce % 3 == 0:
            raise RuntimeError(f"boom {envelope.nonce}")
        return reference_analyze(ANALYZER, envelope)

    raw = raw_batch(envelopes)
    got = prepare_batch(raw, RECEIVED_NS, lambda e: encode_analysis(flaky(e)), frozenset(), MAX_INPUT)
    want = reference_prepare(raw, RECEIVED_NS, flaky, frozenset(), MAX_INPUT)
    assert got == want and got.analysis_errors == 14


class CraftedDecoder:
    """Decodes every call as a fixed DecodedCall: values no decoder produces, some of which protobuf rejects."""

    def __init__(self, call: DecodedCall | Exception) -> None:
        self.call = call

    def decode(self, data: bytes, to: bytes, value: int, sender: bytes) -> DecodedCall:
        if isinstance(self.call, Exception):
            raise self.call
        return DecodedCall(**{f.name: getattr(self.call, f.name) for f in dataclasses.fields(DecodedCall)})


def crafted_analyzer(call: DecodedCall | Exception) -> Analyzer:
    analyzer = Analyzer()
    analyzer.decoder = CraftedDecoder(call)  # type: ignore[assignment]
    return analyzer


def swap(**fields: object) -> DecodedCall:
    call = DecodedCall("swapExactTokensForTokens", SWAP, UNISWAP_V2, token_in=b"\x01" * 20, token_out=b"\x02" * 20,
                       amount_in=10**21, amount_out_min=10**18, path=(b"\x01" * 20, b"\x02" * 20),
                       recipient=b"\x03" * 20, deadline=1_700_000_000, swap_count=1)
    for name, value in fields.items():
        setattr(call, name, value)
    return call


@pytest.mark.parametrize("call", [
    swap(),
    swap(method="", token_in=b"", token_out=None, amount_in=0, recipient=b""),
    swap(path=(b"", b"\x05" * 20, b"\x06" * 3), fee_tiers=(0, 500, 3000, 2**32 - 1)),
    swap(amount_in=2**256 - 1, amount_out_min=0, amount_in_max=2**255, amount_out=1),
    swap(amount_in=2**300),  # longer than a uint256: protobuf takes it, the hand encoder hands it over
    swap(amount_in=-1),  # raises in both paths: stored undecoded with the same error
    swap(deadline=2**64 - 1),
    swap(deadline=2**64),  # out of range for uint64: protobuf's ValueError
    swap(fee_tiers=(2**32,)),
    swap(fee_tiers=(-1,)),
    swap(token_in=memoryview(b"\x01" * 20)),  # protobuf takes only bytes
    swap(path=(memoryview(b"\x01" * 20),)),
    swap(recipient="0x03"),
    swap(method="ünï-☃", swap_count=3, fee_on_transfer=True),
    swap(decoded=False, error="bad args ☃"),
    swap(decoded=False, error=""),
    swap(decoded=False, error=None),
    swap(method=None),
    swap(category=99),
    swap(args=(("amount", "uint256", "1"), ("", "", ""), ("note", "string", "ünï ☃ " * 40)), args_truncated=True),
    swap(decoded=False, error="user abi", args=(("a", "bool", "true"),)),  # undecoded: no args written
    swap(args_truncated=True),
    swap(args=(("a", "uint256", 1),)),  # not a string: protobuf's error in both paths
    swap(args=(("a", "uint256"),)),

    swap(token_in=b"\x01" * 20, token_out=b"\x01" * 20, path=(b"\x01" * 20, b"\x02" * 20, b"\x01" * 20)),
    RuntimeError("decoder bug"),
])
def test_crafted_calls_fall_back_to_protobuf_exactly(call: DecodedCall | Exception) -> None:
    envelopes = [*synthetic_envelopes(12, seed=3), env(), env(to=b"", value=b"\x02", input=b"\x01\x02\x03\x04"),
                 env(input=b"\x01\x02")]
    assert_equal(raw_batch(envelopes), analyzer=crafted_analyzer(call))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.builds(
    dict,
    chain_id=st.sampled_from([0, 1, 56, 137, 250, 31337, MAX_CHAIN_ID + 1]),
    hash=st.binary(min_size=31, max_size=33),
    sender=st.binary(min_size=20, max_size=20),
    to=st.sampled_from([b"", WETH, V2_ROUTER, b"\x0b" * 20, b"\x0c" * 3]),
    value=st.binary(max_size=33),
    gas_price=st.binary(max_size=33),
    max_fee_per_gas=st.binary(max_size=4),
    max_priority_fee_per_gas=st.binary(max_size=4),
    input=st.one_of(st.binary(max_size=300), st.sampled_from(
        [bytes.fromhex(s) for s in ("a9059cbb", "7ff36ab5", "38ed1739", "3593564c", "ac9650d8", "d0e30db0")]
    ).flatmap(lambda sel: st.binary(max_size=400).map(lambda rest: sel + rest))),
    source_id=st.text(max_size=4),
    first_seen_unix_ns=st.integers(min_value=0, max_value=2**64 - 1),
), max_size=8), st.integers(min_value=0, max_value=2**64 - 1))
def test_random_envelopes(fields: list[dict[str, object]], received_ns: int) -> None:
    raw = raw_batch(tx_pb2.TxEnvelope(**f) for f in fields)  # type: ignore[arg-type]
    assert_equal(raw, received_ns=received_ns)
    assert_equal(raw, chain_ids=frozenset({1, 137}), max_input_bytes=200, received_ns=received_ns)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 200, 16_379, 16_380, 16_381, 16_383, 16_384, 70_000])
def test_body_lengths_complete_event_value(n: int) -> None:
    header = encoding.event_header(137, b"\x05" * 32, 2**60 + 3, RECEIVED_NS, "src")
    inner = bytes(range(256)) * (n // 256) + bytes(n % 256)
    table = encoding.body_lengths_table()
    assert len(table) == encoding.BODY_LENGTHS_MAX and (n >= len(table) or table[n] == encoding.body_lengths(n))
    for kind, prefix, tag in ((encoding.KIND_SEEN, encoding.SEEN_PREFIX, encoding.SEEN_BODY_TAG),
                              (encoding.KIND_DECODED, encoding.DECODED_PREFIX, encoding.DECODED_BODY_TAG),
                              (encoding.KIND_OPP, encoding.OPP_PREFIX, encoding.OPP_BODY_TAG)):
        assert encoding.event_value(kind, header, inner) == prefix + header + tag + encoding.body_lengths(n) + inner


def test_varint_of_every_width() -> None:
    def slow(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    for bits in range(0, 80):
        for n in {2**bits - 1, 2**bits, 2**bits + 1, (2**bits) * 3 // 2}:
            if n >= 0:
                assert encoding.varint(n) == slow(n), n
