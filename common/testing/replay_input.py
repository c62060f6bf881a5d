"""The recorded input of the replay digest (:mod:`common.testing.replay_digest`): a fixed sequence of TxBatch messages.

:func:`build_batches` makes it from the real mainnet calls of ``common/testing/fixtures`` (through
:mod:`common.testing.synth` and :mod:`common.testing.samples`), deterministically: three chains, the real calls
with their real hashes, typed transactions (EIP-2718 types 0-4 with raw_tx), duplicates inside a batch and across
batches, sightings of a second source (first ones, repeats and one of an unknown transaction), per-chain ingest
counters, and envelopes processd must reject (bad hash, bad address, chain 0). It is recorded once into
:data:`RECORDING` (``scripts/replay_digest --record`` writes it again) so that a later change of the builders does
not change what old and new code are compared on.

Pool states (issue 17) are not in the recording (it predates them, and old revisions would only ack them as
ignored): :func:`pool_state_batches` builds, deterministically, batches of them to append to it (new states, a
resend, another copy at a stored block, an older block, a reorg, a malformed one) when a run must cover them.
Nor are blocks and TxGone reports (issue 16): :func:`with_lifecycle` wraps the batches in those that drive the
transaction lifecycle (inclusions, a replacement, a drop, a reorg, expiry).

File format: the magic line ``mempulse-replay-v1\\n``, then per batch a u32 big-endian length and the serialized
TxBatch.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from common.pb.v1 import block_pb2, ingest_pb2, pool_pb2, tx_pb2
from common.testing.samples import fixture_envelopes
from common.testing.synth import BASE_TIME_NS, synthetic_envelopes, typed_envelopes

RECORDING = Path(__file__).resolve().parent / "fixtures" / "replay" / "batches.bin"
MAGIC = b"mempulse-replay-v1\n"
_LEN = struct.Struct(">I")

SESSION_ID = "replay"
CHAINS = (1, 137, 56)
FIRST_SOURCE = "node-a"
SECOND_SOURCE = "node-b"
BATCH_SIZE = 40
#: Fixed ``as_of_unix_ms`` of the recorded ingest counters (ingestd stamps the wall clock there).
STATS_AS_OF_MS = BASE_TIME_NS // 1_000_000


def _envelopes() -> list[tx_pb2.TxEnvelope]:
    """Every envelope of the input, in sending order, before duplication."""
    real = fixture_envelopes(chain_id=1)[:160]
    for i, env in enumerate(real):
        env.source_id = FIRST_SOURCE
        env.first_seen_unix_ns = BASE_TIME_NS + 500 + i * 1000
        env.nonce = i
    synth = synthetic_envelopes(420, seed=15, chain_ids=CHAINS, source_id=FIRST_SOURCE)
    typed = typed_envelopes(60, seed=15, chain_ids=CHAINS, source_id=FIRST_SOURCE)
    out: list[tx_pb2.TxEnvelope] = []
    for i in range(max(len(real), len(synth), len(typed))):  # interleaved, so every batch mixes kinds
        for group in (synth, real, typed):
            if i < len(group):
                out.append(group[i])
    return out


def _rejects() -> list[tx_pb2.TxEnvelope]:
    """Envelopes processd must refuse, one per reason it can see here."""
    bad_hash = tx_pb2.TxEnvelope(chain_id=1, hash=b"\x01" * 31, sender=b"\x02" * 20, source_id=FIRST_SOURCE)
    bad_sender = tx_pb2.TxEnvelope(chain_id=1, hash=b"\x03" * 32, sender=b"\x04" * 19, source_id=FIRST_SOURCE)
    no_chain = tx_pb2.TxEnvelope(chain_id=0, hash=b"\x05" * 32, sender=b"\x06" * 20, source_id=FIRST_SOURCE)
    return [bad_hash, bad_sender, no_chain]


def _sightings(batch: Sequence[tx_pb2.TxEnvelope], index: int) -> list[tx_pb2.TxSighting]:
    """The second source's sightings sent with batch ``index``: every third envelope of it, the repeat of one
    from the batch before (ignored: already stored), and, in every fifth batch, one of an unknown hash."""
    out = [tx_pb2.TxSighting(chain_id=env.chain_id, hash=env.hash, source_id=SECOND_SOURCE,
                             seen_unix_ns=env.first_seen_unix_ns + 250_000 + j)
           for j, env in enumerate(batch) if j % 3 == 0]
    if index % 5 == 4:
        out.append(tx_pb2.TxSighting(chain_id=CHAINS[index % 3], hash=bytes([index]) * 32,
                                     source_id=SECOND_SOURCE, seen_unix_ns=BASE_TIME_NS + index))
    return out


def _stats(index: int) -> list[ingest_pb2.ChainIngestStats]:
    """Cumulative ingest counters as ingestd sends them every second, here every fourth batch."""
    return [ingest_pb2.ChainIngestStats(
        chain_id=chain, seen=index * 50 + chain, delivered=index * 40, visibility=ingest_pb2.MEMPOOL_VISIBILITY_VISIBLE,
        dropped=[ingest_pb2.DropCount(reason="fetch_queue_full", count=index)],
        sources=[ingest_pb2.SourceHealth(source_id=FIRST_SOURCE, connected=True, notifications=index * 60,
                                         last_notification_unix_ms=STATS_AS_OF_MS + index)],
        as_of_unix_ms=STATS_AS_OF_MS + index * 1000) for chain in CHAINS]


def build_batches() -> list[ingest_pb2.TxBatch]:
    """The replay input (see the module doc); the same list on every call."""
    envelopes = _envelopes()
    batches: list[ingest_pb2.TxBatch] = []
    for index, start in enumerate(range(0, len(envelopes), BATCH_SIZE)):
        chunk = envelopes[start:start + BATCH_SIZE]
        batch = ingest_pb2.TxBatch(session_id=SESSION_ID, batch_seq=index + 1, envelopes=chunk)
        if index % 3 == 1:  # resends: the first envelopes of the batch before, and one twice in this batch
            batch.envelopes.extend(envelopes[start - BATCH_SIZE:start - BATCH_SIZE + 5])
            batch.envelopes.append(chunk[0])
        if index == 2:
            batch.envelopes.extend(_rejects())
        batch.sightings.extend(_sightings(chunk, index))
        if index:
            batch.sightings.append(batch.sightings[0] if index % 2 else _sightings(envelopes[start - 3:start], 0)[0])
        if index % 4 == 0:
            batch.chain_stats.extend(_stats(index))
        batches.append(batch)
    return batches


def _pool_state(chain_id: int, pair: int, block: int, reserve0: int, reserve1: int, tag: int = 0) -> pool_pb2.PoolState:
    return pool_pb2.PoolState(
        chain_id=chain_id, pair=bytes([0xA0 + pair]) * 20, factory=b"\x5c" * 20, token0=bytes([pair]) * 20,
        token1=bytes([pair + 1]) * 20, reserve0=reserve0.to_bytes(14, "big").lstrip(b"\x00"),
        reserve1=reserve1.to_bytes(14, "big").lstrip(b"\x00"), block_number=block,
        block_hash=bytes([block % 256, tag, pair, chain_id % 256]) * 8,
        source=pool_pb2.POOL_STATE_SOURCE_GET_RESERVES if block == 100 else pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)


def pool_state_batches(first_batch_seq: int) -> list[ingest_pb2.TxBatch]:
    """Batches of pool states only, numbered from ``first_batch_seq`` (see the module doc); the same on every call."""
    batches: list[ingest_pb2.TxBatch] = []
    for index in range(6):
        block = 100 + index
        states = [_pool_state(chain_id, pair, block, 10**21 + 7 * block * pair, 3 * 10**18 + block + pair)
                  for chain_id in CHAINS[:2] for pair in range(1, 4)]
        if index:
            states.append(batches[-1].pools[0])  # a resend
            states.append(_pool_state(CHAINS[0], 1, block - 1, 1, 1))  # another copy of a stored block's state
            states.append(_pool_state(CHAINS[1], 2, block - 3, 5, 5))  # an older block
        if index == 3:
            states.append(_pool_state(CHAINS[0], 3, block, 42, 43, tag=1))  # a reorg at the same height
            bad = _pool_state(CHAINS[0], 9, block, 1, 1)
            bad.token1 = bad.token0  # malformed: token0 < token1 does not hold
            states.append(bad)
        batches.append(ingest_pb2.TxBatch(session_id=SESSION_ID, batch_seq=first_batch_seq + index, pools=states))
    return batches


def write_recording(path: Path, batches: Sequence[ingest_pb2.TxBatch]) -> None:
    """Writes ``batches`` to ``path`` in the recording format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(MAGIC)
        for batch in batches:
            data = batch.SerializeToString(deterministic=True)
            fh.write(_LEN.pack(len(data)))
            fh.write(data)


def read_recording(path: Path = RECORDING) -> list[ingest_pb2.TxBatch]:
    """The batches recorded in ``path``; raises ValueError on a file that is not a recording."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a mempulse replay recording")
    batches = []
    pos = len(MAGIC)
    while pos < len(data):
        (size,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + size > len(data):
            raise ValueError(f"{path} ends inside a batch")
        batches.append(ingest_pb2.TxBatch.FromString(data[pos:pos + size]))
        pos += size
    return batches


def with_lifecycle(batches: Sequence[ingest_pb2.TxBatch]) -> list[ingest_pb2.TxBatch]:
    """``batches`` with what drives the transaction lifecycle around them (issue 16), deterministically: a first
    block of each chain before them (tracking starts at a chain's first block), then per chain a block including
    some of their transactions, another hash of a pending one's (sender, nonce) and a higher nonce of a sender, a
    TxGone, a reorg of the chain's last block and the new branch's block, and a block far in the future (block
    time past the lifecycle TTL: what is left expires)."""
    envelopes = [env for batch in batches for env in batch.envelopes if len(env.hash) == 32 and env.chain_id in CHAINS]
    first_seen = {env.hash: env.first_seen_unix_ns for env in envelopes}
    start_s = min(v for v in first_seen.values() if v) // 10**9
    head = [ingest_pb2.TxBatch(session_id=SESSION_ID, batch_seq=10_000 + i, blocks=[_block(chain, 1, start_s, [])])
            for i, chain in enumerate(CHAINS)]
    tail: list[ingest_pb2.TxBatch] = []
    for chain in CHAINS:
        mine = sorted({env.hash: env for env in envelopes if env.chain_id == chain}.values(), key=lambda e: e.hash)
        included = [(env.hash, env.sender, env.nonce) for env in mine[0:8]]
        replaced = [(b"\xee" * 31 + bytes([chain % 256]), env.sender, env.nonce) for env in mine[8:10]]
        passed = [(b"\xef" * 31 + bytes([chain % 256]), env.sender, env.nonce + 1) for env in mine[10:11]]
        gone = [ingest_pb2.TxGone(chain_id=chain, hash=env.hash, reason=ingest_pb2.GONE_REASON_EVICTED,
                                  source_id=FIRST_SOURCE, seen_unix_ns=BASE_TIME_NS) for env in mine[11:13]]
        block2 = _block(chain, 2, start_s + 60, included + replaced + passed)
        block2b = _block(chain, 2, start_s + 61, included[:3], tag=1)
        block3 = _block(chain, 3, start_s + 72, included[3:])
        block4 = _block(chain, 4, start_s + 10 * 86400, [])
        base = 20_000 + 10 * chain
        tail += [ingest_pb2.TxBatch(session_id=SESSION_ID, batch_seq=base, gone=gone, blocks=[block2]),
                 ingest_pb2.TxBatch(session_id=SESSION_ID, batch_seq=base + 1, blocks=[block2b, block3]),
                 ingest_pb2.TxBatch(session_id=SESSION_ID, batch_seq=base + 2, blocks=[block4])]
    return [*head, *batches, *tail]


def _block(chain: int, number: int, timestamp: int, txs: list[tuple[bytes, bytes, int]],
           tag: int = 0) -> block_pb2.BlockEnvelope:
    """A block of (hash, sender, nonce) transactions."""
    return block_pb2.BlockEnvelope(
        chain_id=chain, number=number, hash=bytes([number, tag, chain % 256]) + b"\xbb" * 29, parent_hash=b"\x07" * 32,
        timestamp=timestamp, source_id=FIRST_SOURCE, seen_unix_ns=timestamp * 10**9, tx_count=len(txs),
        txs=[block_pb2.IncludedTx(hash=h, index=i, sender=s, nonce=n, status=block_pb2.TX_STATUS_OK, gas_used=21000)
             for i, (h, s, n) in enumerate(txs)])
