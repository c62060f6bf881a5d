"""What one ingest batch puts in a commit's write transaction: its new transactions, its sightings (later
sources), the sources of its duplicates, its blocks (and a branch the chain went back to), its TxGone reports and
its pool states, in that order, each through ``processd.storage.logwrite.LogWrite``; the lifecycle's inputs go to
``processd.storage.lifewrite.LifeWriter`` as they are met.

Apart from the single writer (``processd.storage.writer``), which queues, groups, commits and acks batches: this
module is the order and the counting of what a batch stores, that one when and in which transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.pb.v1 import block_pb2
from processd.storage.blockbranch import returning_branch
from processd.storage.layout import KIND_BLOCK, KIND_POOL_STATE, KIND_SOURCE
from processd.storage.lifewrite import LifeWriter
from processd.storage.logwrite import LogWrite, Sighting, duplicate_sightings
from processd.storage.records import CommitResult

if TYPE_CHECKING:
    from processd.storage.writer import CommitJob


class BatchStore:
    """Stores batches in a write transaction (module doc); its counts go to each batch's ack and the commit's
    result."""

    def __init__(self, life: LifeWriter | None, *, max_sources_per_tx: int, max_reorg_depth: int) -> None:
        self.life = life
        #: Sources kept per transaction (the first included).
        self.max_sources_per_tx = max_sources_per_tx
        #: How far down a new block's parent is followed to a branch the chain goes back to (``blockbranch``).
        self.max_reorg_depth = max_reorg_depth

    def store(self, write: LogWrite, batch: CommitJob, seq: int, result: CommitResult) -> int:
        """Stores one batch after ``seq``: its new transactions, then its sightings, then the sources of its
        duplicates (another ingestd's envelope of a stored transaction is a later sighting), then its blocks, its
        TxGone reports and its pool states; returns the last seq. The lifecycle events its transactions and blocks
        cause are stored at the commit's end (``LifeWriter.finish``), or before a later TxGone report's."""
        columns = batch.prepared.result()
        # A group aborted by MapFull is written again after the map grows: start the ack's counts afresh.
        batch.sightings_stored = batch.sightings_ignored = batch.blocks_stored = batch.blocks_duplicate = 0
        batch.pools_stored = batch.pools_duplicate = 0
        batch.gone_stored = batch.gone_ignored = 0
        result.analysis_errors += columns.analysis_errors
        n = len(columns.tx_key)
        columns, duplicate_values = write.claim_hashes(columns, seq + 1)
        if columns.tx_key:
            first = seq + 1
            seq += len(columns.values)
            write.append(columns, first)
            result.add_stored(first, columns)
            batch.first_seq, batch.last_seq = first, seq
            if self.life is not None:
                self.life.stored(write, columns, first, batch.received_ns)
        else:
            batch.first_seq = batch.last_seq = 0
        batch.duplicates = len(duplicate_values)
        batch.accepted = n - batch.duplicates
        result.envelopes += n
        if batch.sightings:
            seq = self._store_sightings(write, batch, batch.sightings, seq, result)
        if duplicate_values:
            seq = self._store_sightings(write, batch, duplicate_sightings(duplicate_values), seq, result,
                                        from_duplicates=True)
        if batch.blocks:
            seq = self._store_blocks(write, batch, seq, result)
        if batch.gone:
            applied = 0
            if self.life is not None:
                applied, seq = self.life.gone(write, batch.gone, seq, batch.received_ns, result)
            batch.gone_stored, batch.gone_ignored = applied, len(batch.gone) - applied
            result.gone_applied += applied
            result.gone_ignored += len(batch.gone) - applied
        if batch.pools:
            seq = self._store_pools(write, batch, seq, result)
        return seq

    @staticmethod
    def _store_pools(write: LogWrite, batch: CommitJob, seq: int, result: CommitResult) -> int:
        """Stores the batch's pool states after its blocks and TxGone reports; one already stored (same chain, pair,
        block number and hash) is only counted. Returns the last seq used."""
        for state in batch.pools:
            value = write.add_pool_state(seq + 1, state, batch.received_ns)
            if not value:
                batch.pools_duplicate += 1
                result.pool_duplicates += 1
                continue
            seq += 1
            batch.pools_stored += 1
            result.pool_states.append((seq, state.chain_id, value))
            result.add_event(seq, state.chain_id, KIND_POOL_STATE, value)
        return seq

    def _store_blocks(self, write: LogWrite, batch: CommitJob, seq: int, result: CommitResult) -> int:
        """Stores the batch's blocks after its transactions and sightings (so ``seen_pending`` counts the batch's
        own transactions); a block already stored is only counted, and a new one whose parent is a stored block the
        chain had left brings that branch back first (``processd.storage.blockbranch``). With the lifecycle on, a
        block's value (which holds the tracker's figures) and the events it causes are stored at the commit's end.
        Returns the last seq used."""
        for block in batch.blocks:
            if write.has_block(block):
                batch.blocks_duplicate += 1
                result.block_duplicates[block.chain_id] = result.block_duplicates.get(block.chain_id, 0) + 1
                continue
            # A parent the chain had left (A, B at its height, now A's child): A's branch is stored again first.
            for again in returning_branch(write, block, self.max_reorg_depth):
                seq += 1
                self._store_block(write, again, seq, batch.received_ns, result, again=True)
                result.blocks_returned[block.chain_id] = result.blocks_returned.get(block.chain_id, 0) + 1
            seq += 1
            batch.blocks_stored += 1
            self._store_block(write, block, seq, batch.received_ns, result)
        return seq

    def _store_block(self, write: LogWrite, block: block_pb2.BlockEnvelope, seq: int, received_ns: int,
                     result: CommitResult, again: bool = False) -> None:
        """One BLOCK event at ``seq`` (``again``: a stored block the chain went back to,
        ``processd.storage.blockbranch``). With the lifecycle on, its value and the lifecycle events it causes are
        stored at the commit's end."""
        if self.life is not None:
            self.life.block(write, block, seq, received_ns, result, again)
            return
        value = write.add_block(seq, block, received_ns, again)
        result.blocks.append((seq, block.chain_id, value))
        result.add_event(seq, block.chain_id, KIND_BLOCK, value)

    def _store_sightings(self, write: LogWrite, batch: CommitJob, sightings: list[Sighting], seq: int,
                         result: CommitResult, from_duplicates: bool = False) -> int:
        """Stores ``sightings`` of ``batch`` (after its envelopes, so one of them may name a transaction of this
        very batch); returns the last seq used. Idempotent: a sighting of a transaction not in the log, a repeated
        (transaction, source), the first source itself, or one past ``max_sources_per_tx`` is only counted
        (:meth:`LogWrite.add_sighting`).

        ``from_duplicates``: the sightings are duplicate envelopes (another ingestd's, or a resend). They are not
        the batch's ``TxBatch.sightings`` (its ack does not count them), and a repeat, a resend's usual case, is
        not counted at all."""
        outcomes = result.sightings
        stored = 0
        for sighting in sightings:
            outcome, value = write.add_sighting(seq + 1, sighting, batch.received_ns, self.max_sources_per_tx)
            if outcome == "stored":
                seq += 1
                stored += 1
                result.add_event(seq, sighting[0], KIND_SOURCE, value)
            elif outcome == "repeat" and from_duplicates:
                continue
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if not from_duplicates:
            batch.sightings_stored += stored
            batch.sightings_ignored += len(sightings) - stored
        return seq
