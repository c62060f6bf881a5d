"""A prepared batch in columns: the shape the single writer consumes with C-level loops.

The writer is the one part of processd that cannot run in parallel, and a Python loop over transactions and
events costs it more than its LMDB work, so batch preparation (``processd.analysis.prepare``, in the analysis workers)
emits each batch as columns: per-transaction and per-event lists that the writer zips, maps and hands to
``putmulti`` (see ``processd.storage.group_commit``). Every event value is complete (values carry no seq: the seq is
their key), so the writer's work per event is one LMDB put.

Event offsets are positions among the batch's events, in order: transaction ``t``'s events are ``seen_at[t]``
(TX_SEEN), ``seen_at[t] + 1`` (TX_DECODED), then one OPP_DETECTED per opportunity; ``tx_kinds[t]`` holds
their kinds, one byte each.

``sender``, ``to`` and ``selector`` repeat three envelope fields per transaction, as stored (20 bytes, 20 or 0,
the input's first 4 bytes or fewer): the filtered fan-out (``processd.views.filter_index``) looks a commit's
transactions up in its index of subscribers' filters by these columns, so a commit nobody's filter asks about
costs no parse of its events. The workers read the fields anyway (validation), so they cost an append each there.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from common.pb.v1 import events_pb2

#: (chain, category, protocol, decoded, source id): the feature counts, and the first-seen wins per source.
FeatureKey = tuple[int, int, str, bool, str]
#: What the transaction lifecycle needs of a transaction, read by preparation (in the workers) so the single writer
#: does not read the envelope, packed per transaction (one bytes object per batch: marshalled as one copy, unpacked
#: by the writer with ``iter_unpack``, both C loops): hash (32 bytes), sender (20), nonce (u64), bid (max_fee_per_gas
#: or gas_price, 32 bytes big-endian), first-seen unix ns (u64), cancel (a transfer of 0 to itself without calldata).
#: ``processd.storage.lifecycle.Pending`` is its seq, these fields, and a flag.
LIFE_ROW = struct.Struct(">32s20sQ32sQ?")


def life_row(tx_hash: bytes, sender: bytes, nonce: int, to: bytes, value: bytes, gas_price: bytes, max_fee: bytes,
             data: bytes, first_seen_ns: int) -> bytes:
    """The packed :data:`LIFE_ROW` of a (validated) transaction from its envelope's fields."""
    return LIFE_ROW.pack(tx_hash, sender, nonce, (max_fee or gas_price).rjust(32, b"\x00"), first_seen_ns,
                         to == sender and not data and not value.strip(b"\x00"))


class BatchColumns(NamedTuple):
    """One prepared batch as columns (cheap to send between processes: a handful of flat lists)."""

    #: One byte per envelope of the batch: its REJECT_REASON_* (0 = valid).
    reasons: bytes
    #: Transactions whose analysis raised (stored undecoded).
    analysis_errors: int
    # ---- per valid transaction
    chain: list[int]
    tx_key: list[bytes]  # tx_hash index key (eventlog.tx_key)
    seen_at: list[int]  # offset of its TX_SEEN event
    tx_kinds: list[bytes]  # kinds of its events (the chain_seq index value)
    # ---- per event
    values: list[bytes]  # the events values (kind byte + Event without seq_id)
    # ---- per batch
    #: (event offset, chain, score) of every OPP_DETECTED event.
    opps: list[tuple[int, int, int]]
    #: The distinct feature-count keys, each transaction's position in it, and transactions per key.
    fkeys: list[FeatureKey]
    fkey_of: list[int]
    tally: dict[FeatureKey, int]
    #: Per chain: offset of its last event, and its number of opportunities.
    last_event: dict[int, int]
    opp_count: dict[int, int]
    # ---- per valid transaction, for the filtered fan-out (module doc)
    sender: list[bytes]
    to: list[bytes]
    selector: list[bytes]
    #: Per valid transaction, its packed :data:`LIFE_ROW`, concatenated (empty when the columns were built without:
    #: the writer then reads the transaction's TX_SEEN value).
    life: bytes = b""


def envelope_keys(seen_value: bytes) -> tuple[bytes, bytes, bytes]:
    """(sender, to, selector) of a stored TX_SEEN value (the slow path: a parse)."""
    env = events_pb2.Event.FromString(seen_value[1:]).tx_seen.tx
    return env.sender, env.to, env.input[:4]


class ColumnsBuilder:
    """Appends transactions to a :class:`BatchColumns` (the rare path: filtering a prepared batch).

    Batch preparation uses :func:`processd.wire.batch.encode_batch` instead, which encodes the values too.
    """

    def __init__(self) -> None:
        self.chain: list[int] = []
        self.tx_key: list[bytes] = []
        self.seen_at: list[int] = []
        self.tx_kinds: list[bytes] = []
        self.values: list[bytes] = []
        self.opps: list[tuple[int, int, int]] = []
        self.fkeys: list[FeatureKey] = []
        self.fkey_ids: dict[FeatureKey, int] = {}
        self.fkey_of: list[int] = []
        self.tally: dict[FeatureKey, int] = {}
        self.last_event: dict[int, int] = {}
        self.opp_count: dict[int, int] = {}
        self.sender: list[bytes] = []
        self.to: list[bytes] = []
        self.selector: list[bytes] = []
        self.life: list[bytes] = []

    def add(self, chain_id: int, tx_key: bytes, fkey: FeatureKey, kinds: bytes, values: list[bytes] | tuple[bytes, ...],
            scores: list[int] | tuple[int, ...], keys: tuple[bytes, bytes, bytes] | None = None,
            life: bytes | None = None) -> None:
        """One transaction: its events' ``kinds`` and ``values``, and the ``scores`` of its opportunities;
        ``keys`` its (sender, to, selector), parsed from its TX_SEEN value when not given; ``life`` its packed
        :data:`LIFE_ROW` (all transactions of a batch have one, or none has)."""
        if life is not None:
            self.life.append(life)
        offset = len(self.values)
        sender, to, selector = envelope_keys(values[0]) if keys is None else keys
        self.sender.append(sender)
        self.to.append(to)
        self.selector.append(selector)
        self.chain.append(chain_id)
        self.tx_key.append(tx_key)
        self.seen_at.append(offset)
        self.tx_kinds.append(kinds)
        self.values.extend(values)
        fid = self.fkey_ids.get(fkey)
        if fid is None:
            fid = self.fkey_ids[fkey] = len(self.fkeys)
            self.fkeys.append(fkey)
        self.fkey_of.append(fid)
        self.tally[fkey] = self.tally.get(fkey, 0) + 1
        if scores:
            self.opps.extend((offset + 2 + i, chain_id, score) for i, score in enumerate(scores))
            self.opp_count[chain_id] = self.opp_count.get(chain_id, 0) + len(scores)
        self.last_event[chain_id] = len(self.values) - 1

    def build(self, reasons: bytes, analysis_errors: int) -> BatchColumns:
        """The columns of the transactions added so far."""
        return BatchColumns(reasons, analysis_errors, self.chain, self.tx_key, self.seen_at, self.tx_kinds,
                            self.values, self.opps, self.fkeys, self.fkey_of, self.tally, self.last_event,
                            self.opp_count, self.sender, self.to, self.selector, b"".join(self.life))


def keep_only(columns: BatchColumns, keep: list[bool]) -> BatchColumns:
    """The columns of the transactions whose ``keep`` flag is set (chain refused, duplicates: the rare path)."""
    scores = {offset: score for offset, _, score in columns.opps}
    builder = ColumnsBuilder()
    n = len(columns.chain)
    for t, kept in enumerate(keep):
        if not kept:
            continue
        start = columns.seen_at[t]
        end = columns.seen_at[t + 1] if t + 1 < n else len(columns.values)
        builder.add(columns.chain[t], columns.tx_key[t], columns.fkeys[columns.fkey_of[t]], columns.tx_kinds[t],
                    columns.values[start:end], [scores[o] for o in range(start + 2, end)],
                    (columns.sender[t], columns.to[t], columns.selector[t]),
                    columns.life[t * LIFE_ROW.size:(t + 1) * LIFE_ROW.size] if columns.life else None)
    return builder.build(columns.reasons, columns.analysis_errors)
