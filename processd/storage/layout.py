"""The event log's layout: databases, keys, value framing, counter keys (``eventlog.py`` opens the log and reads
it, ``logwrite.py`` writes it). No LMDB import here: the analysis workers take the ``tx_hash`` key format from
this module without loading LMDB.

Layout (one LMDB environment, ten named databases; all integers big-endian so byte order = numeric order):

==============  ===============================  =============================================
database        key                              value
==============  ===============================  =============================================
``events``      seq (u64)                        kind (u8) + serialized ``mempulse.v1.Event``
                                                 without ``seq_id`` (see below)
``chain_seq``   chain_id (u64) + seq (u64) of    kinds (u8 each) of the transaction's events
                a transaction's TX_SEEN event
``tx_hash``     chain_id (u64) + the first 16 B  seq (u64) of the transaction's TX_SEEN event
                of the hash
``agg``         see ``AGG_*`` below              u64 counter
``meta``        ``schema_version`` / ``last_seq``  u32 / u64
``tx_sources``  a ``tx_hash`` key + source id    first-seen unix ns (u64) of that source's
                (utf-8) of every later source    announcement (its TX_SOURCE_SEEN event)
``blocks``      chain_id (u64) + number (u64) +  seq (u64) of the block's BLOCK event
                block hash (32 B)
``pools``       chain_id (u64) + pair (20 B) +   seq (u64) of the pool state's POOL_STATE event
                block number (u64) + block
                hash (32 B)
``tx_life``     a ``tx_hash`` key + seq (u64)    kind (u8) of that lifecycle event (written
                of a lifecycle event about it    before ``tx_life_seq``: read, pruned, no
                                                 longer written)
``tx_life_seq`` seq (u64) of a transaction's     kind (u8) of that lifecycle event
                TX_SEEN + seq (u64) of a
                lifecycle event about it
==============  ===============================  =============================================

The events of one transaction are contiguous: TX_SEEN at seq s, TX_DECODED at s+1, then one OPP_DETECTED per
opportunity; ``chain_seq`` has one entry per transaction, whose value lists those kinds. An event's seq is its
key and is not repeated in the value: :func:`decode_event` sets ``Event.seq_id`` (and, for OPP_DETECTED, the
opportunity's ``seq_id``) from the key. That keeps every value a function of the ingest batch alone, encoded in
full by the analysis workers. ``agg`` holds the cumulative counters of the read models, written in the same
transaction as the events they count, so they are exactly as durable as the log (a restart never recounts the
log).

``tx_hash`` keys hold 16 of the hash's 32 bytes: keccak hashes are uniform, so two transactions of one chain
share a 128-bit prefix with probability 2**-128 per pair (producing such a pair takes ~2**64 work and can only
get the producer's own second transaction counted as a duplicate). Shorter keys make the index, which takes
one random insert per stored transaction, about a third smaller and cheaper to update;
:meth:`processd.storage.eventlog.EventLog.find_tx`
checks the full hash on the TX_SEEN event it finds.

A later source's announcement of a stored transaction (a ``TxSighting`` of the ingest stream) is an event of its
own, TX_SOURCE_SEEN, at the seq it was committed at (it is not contiguous with its transaction's events, and has
its own ``chain_seq`` entry), indexed in ``tx_sources`` under its transaction's ``tx_hash`` key (written in the
same transaction, like every index), so a read of a transaction finds its sources with one cursor seek. Per
chain and source, ``agg`` counts first-seen wins and later sightings (``AGG_SOURCE``).

A block (``TxBatch.blocks``) is one BLOCK event with its own ``chain_seq`` entry, stored once per (chain, block
hash): ``blocks`` is its dedup index. Its key holds the number before the hash, so one chain's blocks sort by
height (the read model's window is rebuilt with one backward cursor walk per chain); a hash determines its number,
so (chain, number, hash) is as unique as (chain, hash). Two blocks at one height (a reorg) are two entries. The
BLOCK value records how many of the block's transactions the ``tx_hash`` index held when it was committed
(``BlockSeen.seen_pending``, by the same 16-byte prefix). ``agg`` counts a chain's stored blocks
(``AGG_BLOCKS``). Retention prunes a BLOCK event like a transaction (by count or age), with its index entries.

Lifecycle events (TX_INCLUDED, TX_REPLACED, TX_DROPPED, about one transaction; REORG, about a chain: see
``processd.storage.lifecycle``) are events of their own, each with its own ``chain_seq`` entry, written in the
transaction of the batch or block that caused them; those about a transaction are indexed in ``tx_life_seq`` under
its TX_SEEN seq (which the body names: ``tx_seq_id``), so a transaction's status and history are one cursor seek
once its TX_SEEN is found (a reader has it: ``tx_hash`` gives it). Keyed by that seq, the entries a block's
inclusions add are clustered near the end of the index (its transactions were stored recently), where the
``tx_hash`` key's uniform bytes put each one on its own page (one page copied and written per included
transaction; issue 16). Logs written before ``tx_life_seq`` existed hold their entries in ``tx_life`` (keyed by the
``tx_hash`` key): readers read both, retention prunes both, new events are indexed in ``tx_life_seq`` only.
``agg`` counts them per chain (``AGG_INCLUDED`` ...), the transactions blocks listed and those never seen pending
(``AGG_BLOCK_TXS``, ``AGG_PRIVATE``), and holds two marks of the lifecycle's restart (``AGG_LIFE_FLOOR``: the lowest
seq its state depends on; ``AGG_FIRST_BLOCK``: the seq of the chain's first block). Retention prunes a lifecycle
event like a sighting (its own entries).

A pool state (``TxBatch.pools``, issue 17: a pair's reserves as of a block) is one POOL_STATE event with its own
``chain_seq`` entry, stored once per (chain, pair, block number, block hash): ``pools`` is its dedup index. The
reserves are not part of the key: the reserves after a block are a function of the block, so two copies of one
(pair, block hash) are the same state (a resend, or another ingestd's read), and a copy with other reserves (a
node answering wrongly) is ignored like a repeat: the first one stored stays. Its key sorts a pair's states by
height (its states at one height, a reorg, side by side). The pool read model (``processd.views.pools``) is
rebuilt from these events in seq order. Retention prunes a POOL_STATE event like a block, with its ``pools`` key.

Schema 2 is this layout (``tx_sources``, ``blocks``, ``tx_life``, ``pools`` and ``tx_life_seq`` came later: a log
without them gets them at open, so an old log opens and takes the new kinds); schema 1 (seq inside values, one
``chain_seq`` entry per event) is refused at open.
"""

from __future__ import annotations

import struct

from common.pb.v1 import events_pb2

SCHEMA_VERSION = 2
U64 = struct.Struct(">Q")
U32 = struct.Struct(">I")
CHAIN_SEQ = struct.Struct(">QQ")
META_SCHEMA = b"schema_version"
META_LAST_SEQ = b"last_seq"
#: The named databases of the log: the main database of its LMDB environment holds exactly these keys.
DB_NAMES = frozenset((b"events", b"chain_seq", b"tx_hash", b"agg", b"meta", b"tx_sources", b"blocks", b"tx_life",
                      b"pools", b"tx_life_seq"))
#: Databases a log written before they existed lacks (created at open).
LATER_DB_NAMES = frozenset((b"tx_sources", b"blocks", b"tx_life", b"pools", b"tx_life_seq"))
#: A ``tx_life_seq`` key: the transaction's TX_SEEN seq, then the lifecycle event's seq.
LIFE_SEQ = struct.Struct(">QQ")

#: agg keys: b"C" + chain (u64) + one field byte; b"F" + chain (u64) + category (u8) + protocol (utf-8).
AGG_CHAIN = b"C"
AGG_FEATURE = b"F"
AGG_TX = b"t"
AGG_DECODED = b"d"
AGG_OPPS = b"o"
AGG_RETAINED_TX = b"p"
AGG_HIGH_WATER = b"h"
AGG_COMMITTED_NS = b"n"
#: Blocks stored (BLOCK events, retained or not).
AGG_BLOCKS = b"b"
#: Pool states stored (POOL_STATE events, retained or not).
AGG_POOL_STATES = b"P"
#: Lifecycle outcomes (lifecycle events stored), reorgs, and deeper-than-tracked reorgs.
AGG_INCLUDED = b"i"
AGG_REPLACED = b"r"
AGG_DROPPED = b"x"
AGG_REORGS = b"g"
AGG_REORGS_DEEP = b"G"
#: Transactions listed by stored blocks, and those of them the tx_hash index did not hold (never seen pending).
AGG_BLOCK_TXS = b"k"
AGG_PRIVATE = b"v"
#: Restart marks of the lifecycle (set, not counted): the lowest seq its state depends on, the first block's seq.
AGG_LIFE_FLOOR = b"L"
AGG_FIRST_BLOCK = b"B"
#: b"S" + chain (u64) + one field byte + source id (utf-8): first-seen wins / later sightings of a source.
AGG_SOURCE = b"S"
AGG_SOURCE_WINS = b"w"
AGG_SOURCE_LATER = b"l"

KIND_SEEN: int = events_pb2.EVENT_KIND_TX_SEEN
KIND_DECODED: int = events_pb2.EVENT_KIND_TX_DECODED
KIND_OPP: int = events_pb2.EVENT_KIND_OPP_DETECTED
KIND_SOURCE: int = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
KIND_BLOCK: int = events_pb2.EVENT_KIND_BLOCK
KIND_INCLUDED: int = events_pb2.EVENT_KIND_TX_INCLUDED
KIND_REPLACED: int = events_pb2.EVENT_KIND_TX_REPLACED
KIND_DROPPED: int = events_pb2.EVENT_KIND_TX_DROPPED
KIND_REORG: int = events_pb2.EVENT_KIND_REORG
#: The lifecycle kinds (each event its own unit in the log, like a sighting).
LIFE_KINDS = frozenset((KIND_INCLUDED, KIND_REPLACED, KIND_DROPPED, KIND_REORG))
BLOCK_KEY = struct.Struct(">QQ32s")
KIND_POOL_STATE: int = events_pb2.EVENT_KIND_POOL_STATE
POOL_KEY = struct.Struct(">Q20sQ32s")


def seq_key(seq: int) -> bytes:
    """Key of event ``seq`` in ``events``."""
    return U64.pack(seq)


def chain_seq_key(chain_id: int, seq: int) -> bytes:
    """Key of event ``seq`` in ``chain_seq``."""
    return CHAIN_SEQ.pack(chain_id, seq)


#: Bytes of the hash in a ``tx_hash`` key (see the module doc).
TX_KEY_HASH_BYTES = 16


def tx_key(chain_id: int, tx_hash: bytes) -> bytes:
    """Key of a transaction in ``tx_hash``: chain id and the first :data:`TX_KEY_HASH_BYTES` of its hash."""
    return U64.pack(chain_id) + tx_hash[:TX_KEY_HASH_BYTES]


def block_key(chain_id: int, number: int, block_hash: bytes) -> bytes:
    """Key of a block in ``blocks``: chain id, number, hash (so a chain's blocks sort by height)."""
    return BLOCK_KEY.pack(chain_id, number, block_hash)


def pool_key(chain_id: int, pair: bytes, number: int, block_hash: bytes) -> bytes:
    """Key of a pool state in ``pools``: chain id, pair, block number, block hash (a pair's states sort by height)."""
    return POOL_KEY.pack(chain_id, pair, number, block_hash)


def agg_chain_key(chain_id: int, field: bytes) -> bytes:
    """Key of one per-chain counter in ``agg``."""
    return AGG_CHAIN + U64.pack(chain_id) + field


def agg_feature_key(chain_id: int, category: int, protocol: str) -> bytes:
    """Key of one (chain, category, protocol) feature count in ``agg``."""
    return AGG_FEATURE + U64.pack(chain_id) + bytes((category,)) + protocol.encode()


def agg_source_key(chain_id: int, field: bytes, source_id: str) -> bytes:
    """Key of one per-(chain, source) counter in ``agg`` (``AGG_SOURCE_WINS`` or ``AGG_SOURCE_LATER``)."""
    return AGG_SOURCE + U64.pack(chain_id) + field + source_id.encode()


def decode_event(value: bytes | memoryview, seq: int) -> events_pb2.Event:
    """The event stored under key ``seq`` (its value: kind byte + Event without seq_id)."""
    event = events_pb2.Event()
    event.ParseFromString(memoryview(value)[1:])  # type: ignore[arg-type]  # upb accepts any buffer
    event.seq_id = seq
    if value[0] == KIND_OPP:
        event.opp_detected.opportunity.seq_id = seq
    return event


def life_tx_seq(event: events_pb2.Event) -> int:
    """The TX_SEEN seq a lifecycle event about a transaction names (its ``tx_life_seq`` key's first part); 0 for
    any other event."""
    body = event.WhichOneof("body")
    if body == "tx_included":
        return event.tx_included.tx_seq_id
    if body == "tx_replaced":
        return event.tx_replaced.tx_seq_id
    if body == "tx_dropped":
        return event.tx_dropped.tx_seq_id
    return 0
