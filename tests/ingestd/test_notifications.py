"""Parsing of newPendingTransactions WebSocket messages (typed records, hash as bytes, counted errors)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.notifications import (
    NotificationError,
    PendingHash,
    PendingTx,
    SubscribeFailure,
    SubscribeResult,
    parse_message,
    subscribe_request,
)

HASH = "0x3c4bd6e9c61ebf0f0cf1baa6c63c25853469314a37bf079e4a03a56521f21955"
SUB = "0x774246386b3265646e7a393673623149"


def test_subscription_handshake() -> None:
    msg = parse_message(b'{"jsonrpc":"2.0","id":7,"result":"0x774246386b3265646e7a393673623149"}')
    assert msg == SubscribeResult(7, SUB)


def test_subscription_refused() -> None:
    msg = parse_message(b'{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"invalid params"}}')
    assert msg == SubscribeFailure(3, -32602, "invalid params")


def test_hash_payload_keeps_raw_bytes() -> None:
    raw = orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": SUB,
                                                                                   "result": HASH}})
    msg = parse_message(raw)
    assert isinstance(msg, PendingHash)
    assert msg.subscription_id == SUB
    assert msg.tx_hash == bytes.fromhex(HASH[2:]) and len(msg.tx_hash) == 32


def test_full_tx_payload() -> None:
    tx = {"hash": HASH, "from": "0x" + "11" * 20, "to": None, "nonce": "0x0", "gas": "0x5208", "value": "0x1",
          "input": "0x", "type": "0x2"}
    raw = orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": SUB,
                                                                                   "result": tx}})
    msg = parse_message(raw)
    assert isinstance(msg, PendingTx)
    assert msg.tx_hash == bytes.fromhex(HASH[2:])
    assert msg.tx["from"] == "0x" + "11" * 20


def test_str_input_accepted() -> None:
    raw = orjson.dumps({"method": "eth_subscription", "params": {"subscription": SUB, "result": HASH}}).decode()
    assert isinstance(parse_message(raw), PendingHash)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "malformed_json"),
    (b"", "malformed_json"),
    (b"[1,2]", "not_an_object"),
    (b'"x"', "not_an_object"),
    (b'{"method":"eth_subscription","params":{"subscription":"0x1","result":"0x12"}}', "bad_hash"),
    (b'{"method":"eth_subscription","params":{"subscription":"0x1","result":"0x' + b"zz" * 32 + b'"}}', "bad_hash"),
    (b'{"method":"eth_subscription","params":{"subscription":"0x1","result":12}}', "bad_result"),
    (b'{"method":"eth_subscription","params":{"subscription":"0x1","result":{"hash":null}}}', "bad_hash"),
    (b'{"method":"eth_subscription","params":{"result":"' + HASH.encode() + b'"}}', "bad_subscription_id"),
    (b'{"method":"eth_other","params":{}}', "unexpected_method"),
    (b'{"jsonrpc":"2.0","id":1,"result":17}', "bad_subscription_id"),
    (b'{"jsonrpc":"2.0","id":true,"result":"0x1"}', "bad_request_id"),
    (b'{"jsonrpc":"2.0"}', "unexpected_message"),
])
def test_malformed_payloads_have_stable_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(NotificationError) as info:
        parse_message(raw)
    assert info.value.reason == reason


def test_subscribe_request_shapes() -> None:
    assert orjson.loads(subscribe_request(5, True)) == {
        "jsonrpc": "2.0", "id": 5, "method": "eth_subscribe", "params": ["newPendingTransactions", True]}
    assert orjson.loads(subscribe_request(6, False))["params"] == ["newPendingTransactions"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        parse_message(raw)
    except NotificationError as exc:
        assert exc.reason


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error"]), json_values,
                       max_size=5))
def test_arbitrary_json_objects_parse_or_raise_a_reason(doc: dict) -> None:
    try:
        msg = parse_message(orjson.dumps(doc))
    except NotificationError as exc:
        assert exc.reason
    else:
        assert isinstance(msg, SubscribeResult | SubscribeFailure | PendingHash | PendingTx)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.text(min_size=1, max_size=40))
def test_any_valid_hash_round_trips(tx_hash: bytes, sub: str) -> None:
    raw = orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                        "params": {"subscription": sub, "result": "0x" + tx_hash.hex()}})
    msg = parse_message(raw)
    assert isinstance(msg, PendingHash) and msg.tx_hash == tx_hash and msg.subscription_id == sub
