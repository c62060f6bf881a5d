"""Property tests of the batch-response parser: any body gives per-hash results or a FetchError, never a crash."""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.fetcher import FetchError, parse_batch_response

BY_ID = {i: bytes([i]) * 32 for i in range(1, 9)}

json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10)
items = st.fixed_dictionaries({}, optional={
    "jsonrpc": st.just("2.0"),
    "id": st.integers(-2, 12) | st.booleans() | st.text(max_size=3) | st.none(),
    "result": st.none() | st.dictionaries(st.text(max_size=5), json_leaf, max_size=3) | json_leaf,
    "error": st.fixed_dictionaries({}, optional={"code": st.integers(-32800, -32000) | json_leaf,
                                                 "message": json_leaf}) | json_leaf,
})


@settings(max_examples=200, deadline=None)
@given(st.lists(items | json_leaf, max_size=12))
def test_any_batch_body_maps_each_hash_at_most_once(body: list) -> None:
    out = parse_batch_response(orjson.dumps(body), BY_ID)
    hashes = [h for h, _, _ in out]
    assert len(hashes) == len(set(hashes)) and set(hashes) <= set(BY_ID.values())
    for _, kind, value in out:
        assert kind in {"tx", "null", "error", "error_retriable"}
        if kind == "tx":
            assert isinstance(value, dict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100) | st.builds(orjson.dumps, json_leaf | st.dictionaries(st.text(max_size=5), json_leaf)))
def test_non_array_bodies_raise_fetch_error(raw: bytes) -> None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    try:
        parse_batch_response(raw, BY_ID)
    except FetchError as exc:
        assert exc.retriable and exc.code
    else:
        assert isinstance(doc, list)


def test_shuffled_complete_response_matches_by_id() -> None:
    body = [{"jsonrpc": "2.0", "id": i, "result": {"hash": "0x" + h.hex()}} for i, h in BY_ID.items()]
    random.Random(4).shuffle(body)
    out = parse_batch_response(orjson.dumps(body), BY_ID)
    assert all(kind == "tx" and value["hash"] == "0x" + h.hex() for h, kind, value in out) and len(out) == 8


def test_bool_ids_and_codes_are_not_integers() -> None:
    body = [{"id": True, "result": {"hash": "x"}}, {"id": 2, "error": {"code": True}},
            {"id": 3, "error": {"code": -32005}}]
    out = parse_batch_response(orjson.dumps(body), BY_ID)
    assert out == [(BY_ID[2], "error", "bad_error"), (BY_ID[3], "error_retriable", "-32005")]
