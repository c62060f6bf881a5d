"""The hand-encoded lifecycle values (processd/wire/lifeencoding.py: included_value, flat_value) parse as the protobuf
library's Event with the same fields, zero fields included (omitted, as protobuf omits them), at the same size."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.pb.v1 import events_pb2
from common.testing.synth import synthetic_envelopes, typed_envelopes
from processd.storage.layout import decode_event
from processd.storage.lifeengine import pending_of, pendings_of_rows
from processd.wire.columns import LIFE_ROW, life_row
from processd.wire.lifeencoding import DroppedBody, IncludedBody, ReplacedBody, life_encode, life_value, life_values

_u64 = st.integers(0, 2**64 - 1)


@given(_u64, st.binary(max_size=32), st.integers(0, 2**32 - 1), st.integers(0, 2), _u64, _u64, _u64, st.booleans(),
       st.integers(0, 2**63), _u64, st.binary(max_size=32), st.text(max_size=20))
def test_hand_encoded_included_value_matches_protobuf(number: int, block_hash: bytes, index: int, status: int,
                                                      latency: int, tx_seq: int, block_seq: int, again: bool,
                                                      chain_id: int, first_seen: int, tx_hash: bytes,
                                                      source: str) -> None:
    body = IncludedBody(number, block_hash, index, status, latency, tx_seq, block_seq, again)
    value = life_value(events_pb2.EVENT_KIND_TX_INCLUDED, chain_id, tx_hash, first_seen, 123, source, body)
    want = events_pb2.Event(
        chain_id=chain_id, kind=events_pb2.EVENT_KIND_TX_INCLUDED, tx_hash=tx_hash, first_seen_unix_ns=first_seen,
        received_unix_ns=123, source_id=source,
        tx_included=events_pb2.TxIncluded(block_number=number, block_hash=block_hash, index=index,
                                          status=status,  # type: ignore[arg-type]
                                          inclusion_latency_ms=latency, tx_seq_id=tx_seq, block_seq_id=block_seq,
                                          reincluded=again))
    assert value[0] == events_pb2.EVENT_KIND_TX_INCLUDED
    assert decode_event(value, 0) == want
    assert len(value) - 1 == want.ByteSize()


@given(st.binary(max_size=32), st.integers(-(2**63), 2**63 - 1), st.booleans(), _u64, st.booleans(),
       st.integers(0, 3), _u64, st.text(max_size=20), st.integers(1, 2**63), st.binary(max_size=32))
def test_hand_encoded_replaced_and_dropped_values_match_protobuf(by_hash: bytes, bump: int, cancel: bool,
                                                                 tx_seq: int, by_block: bool, reason: int,
                                                                 drop_seq: int, source: str, chain_id: int,
                                                                 tx_hash: bytes) -> None:
    replaced = life_value(events_pb2.EVENT_KIND_TX_REPLACED, chain_id, tx_hash, 5, 6, source,
                          ReplacedBody(by_hash, bump, cancel, tx_seq, by_block))
    want = events_pb2.Event(chain_id=chain_id, kind=events_pb2.EVENT_KIND_TX_REPLACED, tx_hash=tx_hash,
                            first_seen_unix_ns=5, received_unix_ns=6, source_id=source,
                            tx_replaced=events_pb2.TxReplaced(by_hash=by_hash, fee_bump_bps=bump, cancel=cancel,
                                                              tx_seq_id=tx_seq, by_block=by_block))
    assert decode_event(replaced, 0) == want and len(replaced) - 1 == want.ByteSize()
    dropped = life_value(events_pb2.EVENT_KIND_TX_DROPPED, chain_id, tx_hash, 5, 6, source,
                         DroppedBody(reason, drop_seq, source))
    want = events_pb2.Event(chain_id=chain_id, kind=events_pb2.EVENT_KIND_TX_DROPPED, tx_hash=tx_hash,
                            first_seen_unix_ns=5, received_unix_ns=6, source_id=source,
                            tx_dropped=events_pb2.TxDropped(reason=reason,  # type: ignore[arg-type]
                                                            tx_seq_id=drop_seq, source_id=source))
    assert decode_event(dropped, 0) == want and len(dropped) - 1 == want.ByteSize()


#: Seqs: any u64, and the encoder's two-lookup range (2**14 .. 2**28) apart (a random u64 is rarely in it).
_seq = st.one_of(_u64, st.integers(2**14 - 2, 2**28 + 2))
_included = st.builds(IncludedBody, _u64, st.binary(max_size=32), st.integers(0, 2**32 - 1), st.integers(0, 2), _u64,
                      _seq, _u64, st.booleans())
_seen = st.one_of(st.just(0), _u64, st.integers(2**56, 2**63))  # (nanosecond times: the encoder's fast path)
_life_event = st.one_of(
    st.tuples(st.just(events_pb2.EVENT_KIND_TX_INCLUDED), st.sampled_from([0, 1, 137, 2**63]),
              st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=33)), _seen, _included),
    st.tuples(st.just(events_pb2.EVENT_KIND_TX_REPLACED), st.sampled_from([1, 137]),
              st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=32)), _seen,
              st.builds(ReplacedBody, st.binary(max_size=32), st.integers(-(2**63), 2**63 - 1), st.booleans(), _seq,
                        st.booleans())),
    st.tuples(st.just(events_pb2.EVENT_KIND_TX_DROPPED), st.sampled_from([1, 137]),
              st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=32)), _seen,
              st.builds(DroppedBody, st.one_of(st.integers(0, 3), st.integers(16380, 16390)), _seq,
                        st.text(max_size=5))),
    st.tuples(st.just(events_pb2.EVENT_KIND_REORG), st.sampled_from([1, 137]), st.just(b""), st.just(0),
              st.builds(events_pb2.Reorg, depth=st.integers(0, 9), too_deep=st.booleans())))


@given(st.lists(_life_event, max_size=12), st.integers(0, 2**63), st.text(max_size=8))
def test_lifecycle_values_in_bulk_equal_one_by_one(events: list, received: int, source: str) -> None:
    """The writer's bulk encoder (shared parts encoded once per commit, TX_INCLUDED written out) gives each event's
    value byte for byte as life_value does (which the tests above hold to protobuf)."""
    want = [life_value(kind, chain_id, tx_hash, seen, received, source, body)
            for kind, chain_id, tx_hash, seen, body in events]
    assert life_values(events, received, source) == want
    # What the same walk reads of each body for the writer's index and figures (lifeengine.encode_group).
    values, tx_seqs, figures = life_encode(events, received, source)
    assert values == want
    assert tx_seqs == [-1 if kind == events_pb2.EVENT_KIND_REORG else body.tx_seq_id for kind, _, _, _, body in events]
    assert figures == [_figure(kind, body) for kind, _, _, _, body in events]


def _figure(kind: int, body: object) -> int:
    """A lifecycle event's figure as docs/processd.md defines it (the reference for life_encode)."""
    if isinstance(body, IncludedBody):
        return body.inclusion_latency_ms
    if isinstance(body, DroppedBody):
        return body.reason
    if isinstance(body, ReplacedBody):
        return 0
    assert isinstance(body, events_pb2.Reorg) and kind == events_pb2.EVENT_KIND_REORG
    return body.depth * 2 + int(body.too_deep)


def test_the_life_column_equals_pending_from_the_stored_value() -> None:
    """What preparation reads for the lifecycle (wire.columns.life_row, inlined in prepare_batch: its columns are held
    to this function by test_prepare_equality.py) is what the restart reads from the TX_SEEN value."""
    envelopes = synthetic_envelopes(60, seed=31) + typed_envelopes(20, seed=31)
    cancel = envelopes[0].__deepcopy__()
    cancel.to, cancel.value, cancel.input = cancel.sender, b"", b""
    zero_value = envelopes[2].__deepcopy__()  # a cancel whose value is written with leading zero bytes
    zero_value.to, zero_value.value, zero_value.input = zero_value.sender, b"\x00\x00", b""
    legacy = envelopes[1].__deepcopy__()
    legacy.ClearField("max_fee_per_gas")
    legacy.gas_price = b"\x05"
    for i, env in enumerate([*envelopes, cancel, zero_value, legacy]):
        value = bytes((events_pb2.EVENT_KIND_TX_SEEN,)) + events_pb2.Event(
            chain_id=env.chain_id, kind=events_pb2.EVENT_KIND_TX_SEEN, tx_hash=env.hash,
            first_seen_unix_ns=env.first_seen_unix_ns, tx_seen=events_pb2.TxSeen(tx=env)).SerializeToString()
        row = life_row(env.hash, env.sender, env.nonce, env.to, env.value, env.gas_price, env.max_fee_per_gas,
                       env.input, env.first_seen_unix_ns)
        [built] = pendings_of_rows([LIFE_ROW.unpack(row)], [0], i, [0])  # (as LifeWriter.stored builds it)
        assert built == pending_of(value, i)[1] and type(built.fee) is int
    assert pending_of(bytes((events_pb2.EVENT_KIND_TX_SEEN,)) + events_pb2.Event(
        tx_seen=events_pb2.TxSeen(tx=cancel)).SerializeToString(), 0)[1].cancel
    assert LIFE_ROW.unpack(life_row(b"\x02" * 32, b"\x01" * 20, 2**64 - 1, b"\x01" * 20, b"\x00", b"\x05", b"", b"",
                                    7)) == (b"\x02" * 32, b"\x01" * 20, 2**64 - 1, b"\x05".rjust(32, b"\x00"), 7, True)


def test_bulk_values_of_events_sharing_a_block_seq_or_crossing_chains() -> None:
    """The bulk encoder caches a block's parts by its seq and a kind's start by the first event's chain: events
    naming another block under the same seq, or of another chain, get their own (not the cached) bytes."""
    h = b"\x11" * 32
    first = IncludedBody(5, b"\xaa" * 32, 1, 1, 10, 7, 99, False)
    other_block = IncludedBody(6, b"\xbb" * 32, 2, 1, 11, 8, 99, True)
    events = [(events_pb2.EVENT_KIND_TX_INCLUDED, 137, h, 2**60, first),
              (events_pb2.EVENT_KIND_TX_INCLUDED, 137, h, 2**60 + 1, other_block),
              (events_pb2.EVENT_KIND_TX_INCLUDED, 1, h, 2**60 + 2, first),
              (events_pb2.EVENT_KIND_TX_DROPPED, 1, h, 2**60 + 3, DroppedBody(3, 4)),
              (events_pb2.EVENT_KIND_TX_INCLUDED, 137, h, 2**60 + 4, first)]
    assert life_values(events, 6, "node") == [life_value(kind, chain_id, tx_hash, seen, 6, "node", body)
                                              for kind, chain_id, tx_hash, seen, body in events]
