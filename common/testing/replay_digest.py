"""Replay digest: what a revision of processd makes of the recorded input, as one SHA-256, to compare revisions.

``scripts/replay_digest OLD_REV [NEW_REV]`` (NEW_REV defaults to the working tree) checks each revision out
with ``git worktree add`` into a temporary directory, starts that revision's processd (``python -m processd``
with the current venv, ``PYTHONPATH`` and cwd set to the checkout) on a fresh data dir, pushes the recorded
batches (:mod:`common.testing.replay_input`) over the real ``Ingest.Stream`` one at a time (each waits for its
ack, so commit groups and seqs do not depend on timing), reads back through the Query API, stops processd with
SIGTERM and opens the LMDB environment read-only. ``--pool-states`` appends the pool state batches of
:func:`common.testing.replay_input.pool_state_batches` (issue 17, not in the recording) to the input of both
revisions: their POOL_STATE events show in ``lmdb:events``, ``lmdb:pools``, ``lmdb:chain_seq`` and
``query:ScanEvents``. The digest covers, in named parts:

- ``acks``: every IngestAck;
- ``lmdb:<db>``: every key and value of every named database of the environment (the names are read from its
  main database, so a database added or lost shows);
- ``query:ScanEvents`` (every page from seq 1 to the end), ``query:GetTransaction`` (every (chain, hash) of the
  input and every hash again with chain 0, NOT_FOUND answers included), ``query:GetSnapshot`` (all chains, then
  each chain), ``query:ListTransactions`` / ``ListFeatures`` / ``ListOpportunities`` (each chain).

Responses are re-serialized deterministically after normalisation. Normalised values, the ones processd takes
from the wall clock (found by digesting one revision twice and diffing; every other byte must repeat):

- ``Event.received_unix_ns`` (field 6 of every stored event value; in ScanEvents and GetTransaction answers);
- ``StoredTx.received_unix_ns`` (GetTransaction, GetSnapshot, ListTransactions);
- ``ReplayPoint.committed_unix_ns`` (GetSnapshot, per chain and overall);
- the ``agg`` counter of a chain's last commit time (key ``b"C" + chain + b"n"``).

A stored value keeps every other byte as written: only the varint of field 6 is replaced by 0, its tag stays.
The JSON artifact (``artifacts/replay_digest/``) lists both digests, each part's digest and, for a part that
differs, its first differing record.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import lmdb
from google.protobuf.message import Message

from common.limits import MAX_PAGE_LIMIT
from common.pb.v1 import ingest_pb2, query_pb2, query_pb2_grpc
from common.testing.ingest_push import channel, push_batches
from common.testing.netutil import free_port
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.replay_input import (
    CHAINS,
    RECORDING,
    build_batches,
    pool_state_batches,
    read_recording,
    write_recording,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
WORKING_TREE = "worktree"
#: Event.received_unix_ns: processd stamps it when the batch arrives.
EVENT_TIME_FIELDS = frozenset((6,))
#: Response fields (any message, any depth) that hold processd's wall clock.
QUERY_TIME_FIELDS = frozenset(("received_unix_ns", "committed_unix_ns"))
#: What the digest normalises (the module doc says where each comes from).
NORMALISED = ("Event.received_unix_ns (stored events, ScanEvents, GetTransaction)",
              "StoredTx.received_unix_ns", "ReplayPoint.committed_unix_ns", "agg C<chain>n (last commit time)")
#: agg key of a chain's last commit time: b"C" + chain (u64) + b"n" (processd/storage/eventlog.py AGG_*).
_AGG_COMMITTED = (b"C", b"n")


@dataclass
class Digest:
    """Per part, the records that went into it (label, sha256 of the bytes); ``hexdigest`` combines them."""

    parts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, part: str, label: str, data: bytes) -> None:
        self.parts.setdefault(part, []).append((label, hashlib.sha256(data).hexdigest()))

    def part_digests(self) -> dict[str, str]:
        """Each part's sha256 over its records' labels and hashes, in record order."""
        return {part: hashlib.sha256("".join(f"{label}\0{h}\n" for label, h in records).encode()).hexdigest()
                for part, records in sorted(self.parts.items())}

    def hexdigest(self) -> str:
        """The digest of the whole run: sha256 over every part's name and digest."""
        return hashlib.sha256("".join(f"{p}={d}\n" for p, d in self.part_digests().items()).encode()).hexdigest()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def zero_varint_fields(data: bytes, numbers: frozenset[int]) -> bytes:
    """``data`` (a serialized message) with the value of each top-level varint field in ``numbers`` replaced by
    0, every other byte (tags included) unchanged."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            end = _varint(data, pos)[1]
        elif wire == 2:
            size, body = _varint(data, pos)
            end = body + size
        elif wire in (1, 5):
            end = pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unexpected wire type {wire} at byte {start}")
        out += data[start:pos] + b"\x00" if wire == 0 and number in numbers else data[start:end]
        pos = end
    return bytes(out)


def normalise(message: Message) -> Message:
    """Clears every field named in :data:`QUERY_TIME_FIELDS`, at any depth of ``message`` (in place)."""
    for fd, value in message.ListFields():
        if fd.name in QUERY_TIME_FIELDS:
            message.ClearField(fd.name)
        elif fd.message_type is not None:
            for sub in (value if fd.is_repeated else [value]):
                normalise(sub)
    return message


def _add_response(digest: Digest, part: str, label: str, message: Message) -> None:
    digest.add(part, label, normalise(message).SerializeToString(deterministic=True))


def digest_lmdb(data_dir: Path, digest: Digest) -> None:
    """Adds every key/value of every named database of the environment in ``data_dir`` (opened read-only)."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=64, subdir=True)
    try:
        with env.begin() as txn:
            names = sorted(key for key, _ in txn.cursor())
        for name in names:
            db = env.open_db(name, create=False)
            with env.begin(db=db) as txn:
                for key, value in txn.cursor():
                    digest.add(f"lmdb:{name.decode()}", key.hex(), _normalise_stored(name, key, value))
    finally:
        env.close()


def _normalise_stored(db: bytes, key: bytes, value: bytes) -> bytes:
    if db == b"events":  # kind byte + Event
        return value[:1] + zero_varint_fields(value[1:], EVENT_TIME_FIELDS)
    if db == b"agg" and len(key) == 10 and key[:1] == _AGG_COMMITTED[0] and key[9:] == _AGG_COMMITTED[1]:
        return b"<commit time>"
    return value


async def _scan_all(stub: query_pb2_grpc.QueryStub, digest: Digest) -> None:
    cursor = 1
    while True:
        page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=MAX_PAGE_LIMIT))
        done = not page.events and page.next_seq_id > page.last_seq_id
        _add_response(digest, "query:ScanEvents", f"from {cursor}", page)
        if done or page.next_seq_id <= cursor:
            return
        cursor = page.next_seq_id


async def _get_transactions(stub: query_pb2_grpc.QueryStub, keys: Sequence[tuple[int, bytes]],
                            digest: Digest) -> None:
    for chain_id, tx_hash in keys:
        label = f"{chain_id}:{tx_hash.hex()}"
        try:
            answer = await stub.GetTransaction(query_pb2.GetTransactionRequest(chain_id=chain_id, hash=tx_hash))
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            digest.add("query:GetTransaction", label, f"{code.name if code else '?'} {exc.details()}".encode())
            continue
        _add_response(digest, "query:GetTransaction", label, answer)


async def _lists(stub: query_pb2_grpc.QueryStub, digest: Digest) -> None:
    big = MAX_PAGE_LIMIT
    _add_response(digest, "query:GetSnapshot", "all", await stub.GetSnapshot(
        query_pb2.GetSnapshotRequest(tx_limit=big, opp_limit=big, feature_limit=big)))
    for chain in CHAINS:
        _add_response(digest, "query:GetSnapshot", str(chain), await stub.GetSnapshot(
            query_pb2.GetSnapshotRequest(chain_id=chain, tx_limit=big, opp_limit=big, feature_limit=big)))
        for ascending in (False, True):
            _add_response(digest, "query:ListTransactions", f"{chain} asc={ascending}", await stub.ListTransactions(
                query_pb2.ListTransactionsRequest(chain_id=chain, limit=big, ascending=ascending)))
        _add_response(digest, "query:ListFeatures", str(chain), await stub.ListFeatures(
            query_pb2.ListFeaturesRequest(chain_id=chain, limit=big)))
        _add_response(digest, "query:ListOpportunities", str(chain), await stub.ListOpportunities(
            query_pb2.ListOpportunitiesRequest(chain_id=chain, limit=big)))


def _lookup_keys(batches: Sequence[ingest_pb2.TxBatch]) -> list[tuple[int, bytes]]:
    keys = {(env.chain_id, env.hash) for batch in batches for env in batch.envelopes}
    keys |= {(0, tx_hash) for _, tx_hash in keys}  # the any-chain lookup
    return sorted(keys)


async def _exercise(target: str, batches: Sequence[ingest_pb2.TxBatch], digest: Digest) -> None:
    acks = await push_batches(target, batches, max_inflight=1)
    for ack in acks:
        digest.add("acks", str(ack.batch_seq), ack.SerializeToString(deterministic=True))
    async with channel(target) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        await _scan_all(stub, digest)
        await _get_transactions(stub, _lookup_keys(batches), digest)
        await _lists(stub, digest)


def _daemon_env(tree: Path) -> dict[str, str]:
    """Our environment without processd knobs (the defaults are what is compared), importing from ``tree``."""
    env = {k: v for k, v in child_env().items() if not k.startswith("MEMPULSE_PROCESSD_")}
    env["PYTHONPATH"] = str(tree)
    return env


def _check_imports_from(tree: Path, env: dict[str, str]) -> None:
    """Fails unless ``python -m processd`` with ``env`` in ``tree`` runs that tree's code (not an editable install
    of another checkout)."""
    out = subprocess.run([sys.executable, "-c", "import processd; print(processd.__file__)"], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"processd imports from {out}, not from {tree}")


def digest_tree(tree: Path, batches: Sequence[ingest_pb2.TxBatch], workdir: Path) -> Digest:
    """Runs ``tree``'s processd on a fresh data dir under ``workdir`` over ``batches`` and digests the result."""
    env = _daemon_env(tree)
    _check_imports_from(tree, env)
    data_dir = workdir / "data"
    port = free_port()
    proc = ManagedProcess("processd", python_module_argv(
        "processd", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", "--metrics-port", "0"),
        workdir / "processd.log", env=env, cwd=tree, ready_log=r"processd listening on", ready_timeout_s=120)
    digest = Digest()
    proc.start()
    try:
        asyncio.run(_exercise(f"127.0.0.1:{port}", batches, digest))
    finally:
        code = proc.stop(timeout_s=60)
    if code != 0:
        raise RuntimeError(f"processd exited with {code}; log {workdir / 'processd.log'}:\n{proc.log_tail()}")
    digest_lmdb(data_dir, digest)
    return digest


def resolve(rev: str) -> str:
    """The commit id of ``rev`` in this repository."""
    return subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


def digest_revision(rev: str, batches: Sequence[ingest_pb2.TxBatch], workdir: Path) -> Digest:
    """:func:`digest_tree` of revision ``rev`` (a temporary ``git worktree``), or of the working tree for
    :data:`WORKING_TREE`."""
    if rev == WORKING_TREE:
        return digest_tree(ROOT, batches, workdir)
    checkout = workdir / "checkout"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(checkout), resolve(rev)], cwd=ROOT,
                   check=True)
    try:
        return digest_tree(checkout, batches, workdir)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False)


def first_differences(old: Digest, new: Digest) -> dict[str, str]:
    """For each part whose digest differs, where: the first record that differs, or a count mismatch."""
    out: dict[str, str] = {}
    old_parts, new_parts = old.part_digests(), new.part_digests()
    for part in sorted(set(old_parts) | set(new_parts)):
        if old_parts.get(part) == new_parts.get(part):
            continue
        a, b = old.parts.get(part, []), new.parts.get(part, [])
        where = next((f"record {i} ({x[0]} / {y[0]})" for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                     f"{len(a)} records vs {len(b)}")
        out[part] = where
    return out


def _report(revs: tuple[str, str], ids: tuple[str, str], digests: tuple[Digest, Digest], recording: Path,
            artifacts: Path) -> dict[str, object]:
    old, new = digests
    report: dict[str, object] = {
        "old": {"rev": revs[0], "commit": ids[0], "digest": old.hexdigest(), "parts": old.part_digests()},
        "new": {"rev": revs[1], "commit": ids[1], "digest": new.hexdigest(), "parts": new.part_digests()},
        "equal": old.hexdigest() == new.hexdigest(),
        "differences": first_differences(old, new),
        "input": {"path": str(recording), "sha256": hashlib.sha256(recording.read_bytes()).hexdigest()},
        "normalised": list(NORMALISED),
    }
    artifacts.mkdir(parents=True, exist_ok=True)
    name = f"{ids[0][:12]}_vs_{ids[1][:12]}.json"
    (artifacts / name).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    report["artifact"] = str(artifacts / name)
    return report


def _tree_id(rev: str) -> str:
    if rev != WORKING_TREE:
        return resolve(rev)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
    return resolve("HEAD") + ("-dirty" if dirty else "")


def compare(old_rev: str, new_rev: str, recording: Path, artifacts: Path,
            digest_of: Callable[[str, Sequence[ingest_pb2.TxBatch], Path], Digest] = digest_revision,
            pool_states: bool = False) -> dict[str, object]:
    """Digests both revisions over the recording (and, with ``pool_states``, the pool state batches of
    :func:`common.testing.replay_input.pool_state_batches` after it) and writes the JSON artifact; returns the
    report."""
    batches = read_recording(recording)
    if pool_states:
        batches += pool_state_batches(len(batches) + 1)
    ids = (_tree_id(old_rev), _tree_id(new_rev))
    digests = []
    for rev in (old_rev, new_rev):
        workdir = Path(tempfile.mkdtemp(prefix="replay-digest-"))
        try:
            log.info("digesting %s", rev)
            digests.append(digest_of(rev, batches, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return _report((old_rev, new_rev), ids, (digests[0], digests[1]), recording, artifacts)


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/replay_digest``: 0 when both digests are equal, 1 when they differ."""
    p = argparse.ArgumentParser(prog="replay_digest", description=__doc__.split("\n\n")[0])
    p.add_argument("old_rev", nargs="?", help="git revision of the old code")
    p.add_argument("new_rev", nargs="?", default=WORKING_TREE,
                   help=f"git revision of the new code (default: {WORKING_TREE}, this checkout as it is)")
    p.add_argument("--input", type=Path, default=RECORDING, help=f"recorded batches (default {RECORDING})")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts" / "replay_digest")
    p.add_argument("--record", action="store_true",
                   help="write the input recording from common.testing.replay_input.build_batches and exit")
    p.add_argument("--pool-states", action="store_true",
                   help="append pool state batches (issue 17; not in the recording) to the input of both revisions")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.record:
        write_recording(args.input, build_batches())
        print(f"recorded {len(read_recording(args.input))} batches to {args.input}")
        return 0
    if not args.old_rev:
        p.error("OLD_REV is required (or --record)")
    report = compare(args.old_rev, args.new_rev, args.input, args.artifacts, pool_states=args.pool_states)
    for side in ("old", "new"):
        info = report[side]
        assert isinstance(info, dict)
        print(f"{side}  {info['rev']} ({info['commit']}): {info['digest']}")
    for part, where in dict(report["differences"]).items():  # type: ignore[call-overload]
        print(f"differs: {part} at {where}")
    print(f"{'EQUAL' if report['equal'] else 'DIFFERENT'}; report {report['artifact']}")
    return 0 if report["equal"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
