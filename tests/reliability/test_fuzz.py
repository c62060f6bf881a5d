"""Property-based fuzzing (hypothesis) of the parsers and validators that face untrusted input.

Complements (does not repeat) tests/ingestd/test_notifications.py (WS notification parsing) and
tests/gatewayd/test_params.py + test_routes_integration.py (every REST parameter). Covered here:

* ingestd's batch-response handling (``BatchFetcher.fetch``) against a node answering anything: garbage
  bodies, batch-level errors, HTTP errors, and per item: right / wrong / duplicated / missing ids, null,
  non-object results, error objects of any shape. Every requested hash ends in exactly one outcome list
  (found / gone / failed) with a stable code; nothing raises.
* ingestd's transaction mapper on arbitrary objects: an envelope or ``MappingError``, nothing else.
* processd's envelope validation against an independent oracle, and the analysis (decoder + features +
  searcher) on arbitrary calldata behind every known selector: never raises, never loses the envelope.
* processd for real: a seeded stream of malformed and valid envelopes through gRPC; every envelope is
  accepted, a duplicate, or rejected with the oracle's reason, and ``mempulse_processd_rejects_total`` agrees.

Example counts: ``MEMPULSE_RELIABILITY_FUZZ_EXAMPLES`` (short 100, long 3000 per property).
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.chains import MAX_CHAIN_ID
from common.pb.v1 import ingest_pb2, tx_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from tests.reliability._support import ProcessdProc, knob, metric_sum, scrape, write_artifact

EXAMPLES = knob("fuzz_examples", 100, 3000)
# Derandomized in the gating run, randomized in the long run: the profile of tests/conftest.py decides.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRIED: dict[str, int] = {}


def _count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=20) | st.floats(
    allow_nan=False)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _tx_object(h: bytes) -> dict[str, Any]:
    return {"hash": "0x" + h.hex(), "from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "nonce": "0x1",
            "value": "0x0", "gas": "0x5208", "gasPrice": "0x3b9aca00", "input": "0x", "type": "0x0"}


def _dumps(doc: Any) -> bytes:
    """JSON like a node may send it: the stdlib writes integers of any size (orjson refuses > 64 bits)."""
    return json.dumps(doc).encode()


ITEM_KINDS = ["tx", "null", "error_32005", "error_other", "error_weird", "result_scalar", "missing", "dup",
              "wrong_id", "string_id", "not_object", "empty_object", "tx_wrong_hash"]
BODY_KINDS = ["items"] * 6 + ["garbage", "batch_error", "http_500", "http_429", "object", "scalar"]


@FUZZ
@given(st.lists(st.sampled_from(ITEM_KINDS), min_size=1, max_size=8), st.sampled_from(BODY_KINDS),
       st.booleans(), st.binary(max_size=40), json_values)
def test_batch_responses_every_hash_gets_exactly_one_outcome(kinds: list[str], body_kind: str, shuffle: bool,
                                                             garbage: bytes, weird: Any) -> None:
    _count("batch_response")
    hashes = [bytes([i + 1]) * 32 for i in range(len(kinds))]
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        req = orjson.loads(request.content)
        if calls > 1:  # retries get a clean answer, so the final outcome is the parser's, not the budget's
            return httpx.Response(200, content=_dumps(
                [{"jsonrpc": "2.0", "id": it["id"], "result": None} for it in req]))
        if body_kind == "garbage":
            return httpx.Response(200, content=garbage + b"\x00{")
        if body_kind == "batch_error":
            return httpx.Response(200, content=_dumps({"jsonrpc": "2.0", "id": None, "error": weird}))
        if body_kind in ("http_500", "http_429"):
            return httpx.Response(int(body_kind[5:]), content=garbage, headers={"retry-after": "0"})
        if body_kind == "object":
            return httpx.Response(200, content=_dumps({"result": weird}))
        if body_kind == "scalar":
            return httpx.Response(200, content=_dumps(weird))
        out: list[Any] = []
        for item, kind in zip(req, kinds, strict=True):
            rid = item["id"]
            h = bytes.fromhex(item["params"][0][2:])
            if kind == "tx":
                out.append({"jsonrpc": "2.0", "id": rid, "result": _tx_object(h)})
            elif kind == "tx_wrong_hash":
                out.append({"jsonrpc": "2.0", "id": rid, "result": _tx_object(b"\xff" * 32)})
            elif kind == "null":
                out.append({"jsonrpc": "2.0", "id": rid, "result": None})
            elif kind == "error_32005":
                out.append({"jsonrpc": "2.0", "id": rid, "error": {"code": -32005, "message": "limit"}})
            elif kind == "error_other":
                out.append({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": "x"}})
            elif kind == "error_weird":
                out.append({"jsonrpc": "2.0", "id": rid, "error": weird})
            elif kind == "result_scalar":
                out.append({"jsonrpc": "2.0", "id": rid, "result": weird if not isinstance(weird, dict | None)
                            else 7})
            elif kind == "dup":
                out += [{"jsonrpc": "2.0", "id": rid, "result": None}, {"jsonrpc": "2.0", "id": rid, "result": 1}]
            elif kind == "wrong_id":
                out.append({"jsonrpc": "2.0", "id": rid + 10_000, "result": None})
            elif kind == "string_id":
                out.append({"jsonrpc": "2.0", "id": str(rid), "result": None})
            elif kind == "not_object":
                out.append(weird)
            elif kind == "empty_object":
                out.append({})
        if shuffle:
            random.Random(len(out)).shuffle(out)
        return httpx.Response(200, content=_dumps(out))

    from ingestd.fetcher import BatchFetcher
    from ingestd.mapping import MappingError, tx_to_envelope

    codes: list[str] = []

    async def go():  # type: ignore[no-untyped-def]
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with BatchFetcher(["http://node.invalid"], retries=1, backoff_s=0, cooldown_s=0, client=client,
                                on_error=lambda ep, code: codes.append(code)) as fetcher:
            outcome = await fetcher.fetch(hashes)
        await client.aclose()
        return outcome

    outcome = asyncio.run(go())
    found = [h for h, _ in outcome.found]
    failed = [h for h, _ in outcome.failed]
    assert sorted(found + outcome.gone + failed) == sorted(hashes), "each hash in exactly one outcome"
    for h, tx in outcome.found:
        assert isinstance(tx, dict)
        try:
            tx_to_envelope(tx, 137, "fuzz", 1, expected_hash=h)
        except MappingError:
            pass  # counted by the worker as malformed
    for code in [c for _, c in outcome.failed] + codes:
        assert isinstance(code, str) and code and len(code) < 40, code


_hexish = st.text(alphabet="0123456789abcdefxX", max_size=70)
#: The typed-transaction fields with plausible shapes (so the mapper gets past its top-level checks to them).
_typed_values = st.one_of(
    json_values, _hexish,
    st.lists(st.fixed_dictionaries({"address": _hexish | json_scalars, "storageKeys": st.lists(_hexish, max_size=2)}),
             max_size=2),
    st.lists(st.dictionaries(st.sampled_from(["chainId", "address", "nonce", "yParity", "r", "s"]),
                             _hexish | json_scalars, max_size=6), max_size=2))


@FUZZ
@given(st.dictionaries(st.sampled_from(["hash", "from", "to", "nonce", "value", "gas", "gasPrice", "type", "input",
                                        "data", "maxFeePerGas", "maxPriorityFeePerGas", "v", "r", "s", "yParity",
                                        "accessList", "maxFeePerBlobGas", "blobVersionedHashes",
                                        "authorizationList"]),
                       _typed_values, max_size=20))
def test_tx_mapper_gives_an_envelope_or_mapping_error(obj: dict[str, Any]) -> None:
    """An envelope or MappingError, never another exception; and re-encoding it gives bytes or RawTxError."""
    _count("tx_mapper")
    from common.rawtx import RawTxError, encode_signed
    from ingestd.mapping import MappingError, tx_to_envelope

    try:
        env = tx_to_envelope(obj, 1, "fuzz", 1)
    except MappingError:
        return
    assert len(env.hash) == 32 and len(env.sender) == 20 and len(env.to) in (0, 20)
    assert all(len(q) <= 32 for q in (env.value, env.gas_price, env.max_fee_per_gas, env.max_priority_fee_per_gas,
                                      env.v, env.r, env.s, env.max_fee_per_blob_gas))
    assert all(len(e.address) == 20 and all(len(k) == 32 for k in e.storage_keys) for e in env.access_list)
    assert all(len(h) == 32 for h in env.blob_versioned_hashes) and env.y_parity <= 1
    try:
        assert isinstance(encode_signed(env), bytes)
    except RawTxError:
        pass


# ---- processd: validation oracle and analysis ------------------------------------------------------------


def _oracle(e: tx_pb2.TxEnvelope, max_input: int) -> int:
    """The documented validation rules, written independently of processd.analysis.validation."""
    if not 0 < e.chain_id <= MAX_CHAIN_ID:
        return ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN
    if len(e.hash) != 32:
        return ingest_pb2.REJECT_REASON_BAD_HASH
    if len(e.sender) != 20 or len(e.to) not in (0, 20):
        return ingest_pb2.REJECT_REASON_BAD_ADDRESS
    if max(len(e.value), len(e.gas_price), len(e.max_fee_per_gas), len(e.max_priority_fee_per_gas)) > 32:
        return ingest_pb2.REJECT_REASON_BAD_QUANTITY
    if len(e.input) > max_input or len(e.source_id) > 256:
        return ingest_pb2.REJECT_REASON_TOO_LARGE
    return ingest_pb2.REJECT_REASON_UNSPECIFIED


def _sizes(*boundaries: int) -> st.SearchStrategy[int]:
    return st.sampled_from([b + d for b in boundaries for d in (-1, 0, 1) if b + d >= 0])


@st.composite
def fuzzed_envelopes(draw: st.DrawFn) -> tx_pb2.TxEnvelope:
    return tx_pb2.TxEnvelope(
        chain_id=draw(st.sampled_from([0, 1, 137, 56, MAX_CHAIN_ID, MAX_CHAIN_ID + 1, 2**64 - 1]) | st.integers(
            0, 2**64 - 1)),
        hash=bytes(draw(_sizes(0, 32))),
        sender=bytes(draw(_sizes(0, 20))), to=bytes(draw(_sizes(0, 20))),
        value=b"\x01" * draw(_sizes(0, 32)), gas_price=b"\x01" * draw(_sizes(0, 32)),
        max_fee_per_gas=b"\x01" * draw(_sizes(0, 32)), max_priority_fee_per_gas=b"\x01" * draw(_sizes(0, 32)),
        input=bytes(draw(_sizes(0, 4, 1024))), source_id="s" * draw(_sizes(0, 256)),
        nonce=draw(st.integers(0, 2**64 - 1)), gas=draw(st.integers(0, 2**64 - 1)), tx_type=draw(st.integers(0, 255)))


@FUZZ
@given(fuzzed_envelopes())
def test_validation_matches_the_documented_rules(envelope: tx_pb2.TxEnvelope) -> None:
    _count("envelope_validation")
    from processd.analysis.validation import OK, REASON_NAMES, validate

    reason = validate(envelope, frozenset(), 1024)
    assert reason == _oracle(envelope, 1024)
    assert reason == OK or REASON_NAMES[reason]


def _selectors() -> list[bytes]:
    from processd.analysis.decoding import all_methods

    return sorted(all_methods())


@FUZZ
@given(st.data())
def test_analysis_never_raises_on_any_calldata_behind_a_known_selector(data: st.DataObject) -> None:
    _count("calldata")
    from processd.analysis.analyzer import analyze

    selector = data.draw(st.sampled_from(_selectors()) | st.binary(min_size=0, max_size=4))
    words = data.draw(st.lists(st.sampled_from([b"\x00" * 32, b"\xff" * 32, (32).to_bytes(32, "big"),
                                                (64).to_bytes(32, "big"), (2**40).to_bytes(32, "big"),
                                                b"\x00" * 12 + b"\x11" * 20]) | st.binary(min_size=32, max_size=32),
                               max_size=12))
    tail = data.draw(st.binary(max_size=40))
    envelope = tx_pb2.TxEnvelope(chain_id=data.draw(st.sampled_from([1, 137, 56, 8453, 424242])), hash=b"\x01" * 32,
                                 sender=b"\x02" * 20, to=data.draw(st.sampled_from([b"", b"\x03" * 20])),
                                 value=data.draw(st.binary(max_size=32)).lstrip(b"\x00"),
                                 input=selector + b"".join(words) + tail)
    result = analyze(envelope)
    f = result.features
    assert f.calldata_len == len(envelope.input)
    assert f.decoded or f.decode_error or f.category is not None
    for opp in result.opportunities:
        assert 0 <= opp.score <= 100 and opp.reasons


# ---- processd for real ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_processd_maps_every_fuzzed_envelope_to_an_outcome(tmp_path: Path) -> None:
    rng = random.Random(knob("seed", 13, 13))
    n = knob("fuzz_envelopes", 2000, 20000)
    max_input = 4096
    valid = synthetic_envelopes(n // 2, seed=77, chain_ids=(1, 137))
    envelopes: list[tx_pb2.TxEnvelope] = []
    for i in range(n):
        e = tx_pb2.TxEnvelope()
        e.CopyFrom(valid[i % len(valid)])
        e.input = e.input[:max_input]
        mutation = rng.randrange(8)
        if mutation == 0:
            e.hash = rng.randbytes(rng.choice([0, 31, 33]))
        elif mutation == 1:
            e.chain_id = rng.choice([0, MAX_CHAIN_ID + 1, 2**64 - 1])
        elif mutation == 2:
            e.sender = rng.randbytes(rng.choice([0, 19, 21]))
        elif mutation == 3:
            e.value = b"\x01" * 33
        elif mutation == 4:
            e.input = rng.randbytes(max_input + 1)
        elif mutation == 5:
            e.input = e.input[:4] + rng.randbytes(rng.randrange(0, 300))  # a known selector, garbage args
        envelopes.append(e)
    expected: dict[int, int] = {}
    for e in envelopes:
        r = _oracle(e, max_input)
        if r:
            expected[r] = expected.get(r, 0) + 1
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", metrics=True,
                        env={"MEMPULSE_PROCESSD_MAX_INPUT_BYTES": str(max_input)})
    try:
        proc.start()
        try:
            acks = asyncio.run(push_envelopes(proc.addr, envelopes, batch_size=250, timeout_s=90))
        except grpc.aio.AioRpcError as exc:
            raise AssertionError(f"stream failed: {exc.code()} {exc.details()}; processd log:\n"
                                 f"{proc.log_tail(40)}") from None
        got: dict[int, int] = {}
        for a in acks:
            for r in a.rejected:
                got[r.reason] = got.get(r.reason, 0) + r.count
        assert got == expected
        accepted = sum(a.accepted for a in acks)
        duplicates = sum(a.duplicates for a in acks)
        assert accepted + duplicates + sum(got.values()) == n
        assert accepted == len({(e.chain_id, e.hash) for e in envelopes if not _oracle(e, max_input)})
        m = scrape(proc.metrics_port)
        from processd.analysis.validation import REASON_NAMES

        for reason, count in expected.items():
            assert metric_sum(m, "mempulse_processd_rejects_total", reason=REASON_NAMES[reason]) == count
        assert proc.alive
        TRIED["processd_envelopes"] = n
    finally:
        proc.stop()


def test_zz_record_fuzz_figures() -> None:
    """Writes how many cases each fuzz target tried (runs last in this module)."""
    write_artifact("fuzz", {"examples_per_property": EXAMPLES, "cases_tried": dict(TRIED),
                            "cases_tried_total": sum(TRIED.values())})
