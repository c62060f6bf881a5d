"""The reference of ``EventFilter`` semantics, written the obvious way over parsed events (for the tests).

It shares no code with ``processd.views.filter_*`` and ``tx_view``: a transaction is its parsed TX_SEEN, TX_DECODED and
OPP_DETECTED events, and each field is checked as query.proto documents it.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.pb.v1 import events_pb2, query_pb2

SEEN = events_pb2.EVENT_KIND_TX_SEEN
DECODED = events_pb2.EVENT_KIND_TX_DECODED
OPP = events_pb2.EVENT_KIND_OPP_DETECTED
SOURCE = events_pb2.EVENT_KIND_TX_SOURCE_SEEN


def group_transactions(events: Sequence[events_pb2.Event]) -> list[list[events_pb2.Event]]:
    """Events in seq order as transactions (TX_SEEN and the events of the same hash right after it) and
    sightings (one event each)."""
    out: list[list[events_pb2.Event]] = []
    for e in events:
        if e.kind in (DECODED, OPP) and out and out[-1][0].kind == SEEN and out[-1][0].tx_hash == e.tx_hash:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def tx_matches(f: query_pb2.EventFilter, tx: list[events_pb2.Event],
               of_sighting: list[events_pb2.Event] | None = None) -> bool:
    """Whether a transaction (or a lone sighting, whose transaction is ``of_sighting``) matches ``f``: AND across
    fields, OR within one."""
    head = tx[0]
    if f.chain_ids and head.chain_id not in f.chain_ids:
        return False
    uses_tx_fields = any((f.senders, f.to, f.addresses, f.selectors, f.methods, f.protocols, f.tokens_in, f.tokens_out,
                          int.from_bytes(f.min_value, "big"), f.min_score, int.from_bytes(f.min_profit_wei, "big")))
    if head.kind == SOURCE:
        return not uses_tx_fields or (of_sighting is not None and tx_matches(f, of_sighting))
    env = head.tx_seen.tx
    features = next(e.tx_decoded.features for e in tx if e.kind == DECODED)
    scores = [e.opp_detected.opportunity.score for e in tx if e.kind == OPP]
    nets = [int.from_bytes(e.opp_detected.opportunity.net_profit_wei, "big") for e in tx if e.kind == OPP]
    checks = [
        (f.senders, env.sender), (f.to, env.to),
        (f.protocols, features.protocol), (f.tokens_in, features.token_in), (f.tokens_out, features.token_out),
    ]
    if any(wanted and have not in wanted for wanted, have in checks):
        return False
    if f.addresses and env.sender not in f.addresses and env.to not in f.addresses:
        return False
    # selectors and methods: one condition, either matches (query.proto).
    if (f.selectors or f.methods) and env.input[:4] not in f.selectors and features.method not in f.methods:
        return False
    if f.min_value and int.from_bytes(env.value, "big") < int.from_bytes(f.min_value, "big"):
        return False
    if f.min_profit_wei and max(nets, default=0) < int.from_bytes(f.min_profit_wei, "big"):
        return False
    return not (f.min_score and max(scores, default=0) < f.min_score)


def reference_filter(f: query_pb2.EventFilter, events: Sequence[events_pb2.Event],
                     chain_id: int = 0, kinds: Sequence[int] = ()) -> list[int]:
    """The seq_ids a subscriber with ``f`` (and the request's own ``chain_id`` / ``kinds``) gets from
    ``events`` (the whole log, in seq order)."""
    seqs: list[int] = []
    groups = group_transactions(events)
    by_hash = {(t[0].chain_id, t[0].tx_hash): t for t in groups if t[0].kind == SEEN}
    for tx in groups:
        if chain_id and tx[0].chain_id != chain_id:
            continue
        if tx_matches(f, tx, by_hash.get((tx[0].chain_id, tx[0].tx_hash))):
            seqs.extend(e.seq_id for e in tx if (not f.kinds or e.kind in f.kinds) and (not kinds or e.kind in kinds))
    return seqs
