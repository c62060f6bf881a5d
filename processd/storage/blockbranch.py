"""A chain that goes back to blocks it had left: the stored branch a new block's parent returns to.

A reorg replaces the block at a height with another one (B stored at A's height): the lifecycle tracker orphans A
and puts its transactions back to pending. When the node later goes back to A's branch (A, then B, then A again:
a re-reorg), ingestd sends A once more (a head at a height it delivered with another hash, or the branch it walked
back by parent hash before A's child) and then A's child C. A is in the ``blocks`` index already, so it is a
duplicate; and C alone, a height above the tracker's head, orphans nothing: A's transactions would stay pending
(and B's included) until they expired, though the node says A's are mined.

So a *new* block whose parent is a stored block that is not the current one at its height (the current one is the
block stored there last, by seq) brings that branch back: :func:`returning_branch` gives the stored blocks of the
branch, lowest first, down to where it joins the current chain (at most ``max_depth`` of them), and the writer
stores each again, as a new BLOCK event, before the new block (``processd.storage.writer``). The tracker then sees
each as a block at a height it holds with another hash: a reorg, back. A stored block met again *without* a new
child stays a duplicate: a resent batch, or another ingestd's copy of an older block, must not flip the chain
back and forth; the node's next block, whose parent says which branch is current, decides. The log keeps every
report in order (A, B, A again, C), so replaying it gives the same state.
"""

from __future__ import annotations

from common.pb.v1 import block_pb2
from processd.storage.layout import BLOCK_KEY, U64, decode_event, seq_key
from processd.storage.logwrite import LogWrite

_HEIGHT_BYTES = 16  # (a ``blocks`` key: chain id and number, 8 bytes each, then the hash)


def blocks_at(write: LogWrite, chain_id: int, number: int) -> dict[bytes, int]:
    """The stored blocks of ``chain_id`` at height ``number``: hash -> the seq of its latest BLOCK event."""
    prefix = BLOCK_KEY.pack(chain_id, number, b"")[:_HEIGHT_BYTES]
    cursor = write.txn.cursor(db=write.log.blocks_db)
    found: dict[bytes, int] = {}
    positioned = cursor.set_range(prefix)
    while positioned:
        key = cursor.key()
        if key[:_HEIGHT_BYTES] != prefix:
            break
        found[bytes(key[_HEIGHT_BYTES:])] = U64.unpack(cursor.value())[0]
        positioned = cursor.next()
    return found


def stored_block(write: LogWrite, seq: int) -> block_pb2.BlockEnvelope | None:
    """The envelope of the BLOCK event at ``seq``: from the write transaction when its value is not put yet (the
    lifecycle puts a block's value at the commit's end), else from the log (None if it is not there)."""
    block = write.unput_blocks.get(seq)
    if block is not None:
        return block
    value = write.txn.get(seq_key(seq), db=write.log.events_db)
    if value is None:
        return None
    return decode_event(value, seq).block.block


def returning_branch(write: LogWrite, block: block_pb2.BlockEnvelope, max_depth: int) -> list[block_pb2.BlockEnvelope]:
    """The stored blocks that ``block`` (new, not stored) builds on but that are not the current ones at their
    heights (module doc), lowest first; [] in the usual case (its parent is the current block below it, or not
    stored). At most ``max_depth`` blocks, walked down by parent hash: past that, or at a height with nothing
    stored, the walk ends (the blocks found are still returned: the tracker reorgs what it holds)."""
    branch: list[block_pb2.BlockEnvelope] = []
    chain_id, number, parent = block.chain_id, block.number, block.parent_hash
    while number > 0 and len(branch) < max_depth:
        number -= 1
        stored = blocks_at(write, chain_id, number)
        seq = stored.get(parent)
        if seq is None or seq == max(stored.values()):  # not stored, or the current block there: joined
            break
        found = stored_block(write, seq)
        if found is None:
            break
        branch.append(found)
        parent = found.parent_hash
    branch.reverse()
    return branch
