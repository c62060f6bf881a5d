"""Locust load test of processd's ``Ingest.Stream``: each user keeps one bidi stream open and pushes
``TxBatch`` messages of synthetic envelopes, one batch in flight at a time, timing each batch until its
durable ack (processd acks only after the LMDB commit, so the response time is ingest-to-durable latency).

Run headless (``scripts/loadtest`` does this and writes CSV/HTML into ``artifacts/perf/``)::

    locust -f loadtests/locustfile_ingest.py --headless -u 4 -r 4 -t 30s --host 127.0.0.1:50051

``--host`` is processd's gRPC address (``grpc://`` prefix optional). Knobs (env):
``MEMPULSE_LOADTEST_BATCH_SIZE`` (envelopes per batch, default 500), ``MEMPULSE_LOADTEST_CHAIN_IDS``
(comma-separated, default ``1,137``), ``MEMPULSE_LOADTEST_SEED`` (default: the start time; each user derives
its own, so envelopes are new to processd and reproducible when the seed is given).
Each request event is one batch: Locust's req/s times the batch size is tx/s; ``response_length`` is the
number of envelopes processd newly stored, and a batch with rejects or unaccounted envelopes is a failure.

gRPC's sync client runs on gevent here through ``grpc.experimental.gevent.init_gevent()``, called once
before any channel exists, so blocking stream reads yield to the other Locust users instead of blocking
the whole worker.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator

import gevent.queue
import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, events, task
from locust.env import Environment

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc
from common.testing.synth import synthetic_envelopes

grpc_gevent.init_gevent()

_RUN_SEED = int(time.time())


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


@events.init.add_listener
def _load_templates(environment: Environment, **_kwargs: object) -> None:
    """Builds common.testing.synth's envelope templates (parsing the bundled fixture) before the clock starts, so the
    first batches of the run are not slowed by a one-off cost."""
    synthetic_envelopes(1)


class EnvelopeFactory:
    """Deterministic synthetic envelopes (:mod:`common.testing.synth`: real mainnet calldata, senders and targets, a
    unique hash per (seed, index)) stamped with the current time as ``first_seen``."""

    def __init__(self, seed: int, chain_ids: list[int]) -> None:
        self.seed = seed
        self.chain_ids = chain_ids
        self._next = 0

    def batch(self, session_id: str, batch_seq: int, size: int) -> ingest_pb2.TxBatch:
        envelopes = synthetic_envelopes(size, seed=self.seed, chain_ids=self.chain_ids, start=self._next,
                                        source_id="locust")
        self._next += size
        now = time.time_ns()
        for env in envelopes:
            env.first_seen_unix_ns = now
        return ingest_pb2.TxBatch(session_id=session_id, batch_seq=batch_seq, envelopes=envelopes)


class IngestStreamUser(User):
    """One ingest session: one bidi ``Ingest.Stream``, one batch in flight, timed until its ack."""

    _user_ids = itertools.count(1)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.batch_size = _env_int("MEMPULSE_LOADTEST_BATCH_SIZE", 500)
        chain_ids = [int(c) for c in os.environ.get("MEMPULSE_LOADTEST_CHAIN_IDS", "1,137").split(",") if c]
        user_id = next(self._user_ids)
        # Default seed: the run's start time, so a rerun against the same processd stores new transactions.
        self.factory = EnvelopeFactory(_env_int("MEMPULSE_LOADTEST_SEED", _RUN_SEED) * 1000 + user_id, chain_ids)
        self.session_id = f"locust-{uuid.uuid4().hex[:12]}"
        self._batch_seq = itertools.count(1)
        self._outbox: gevent.queue.Queue = gevent.queue.Queue(maxsize=1)
        self._channel: grpc.Channel | None = None
        self._acks: Iterator[ingest_pb2.IngestAck] | None = None

    def _requests(self) -> Iterator[ingest_pb2.TxBatch]:
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            yield batch

    def on_start(self) -> None:
        target = (self.host or "127.0.0.1:50051").removeprefix("grpc://")
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20),
                                                                ("grpc.max_receive_message_length", 64 << 20)])
        stub = ingest_pb2_grpc.IngestStub(self._channel)
        self._acks = iter(stub.Stream(self._requests()))

    def on_stop(self) -> None:
        self._outbox.put(None)
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @task
    def push_batch(self) -> None:
        assert self._acks is not None
        batch = self.factory.batch(self.session_id, next(self._batch_seq), self.batch_size)
        started = time.perf_counter()
        exc: Exception | None = None
        accepted = 0
        try:
            self._outbox.put(batch)
            ack = next(self._acks)
            accepted = ack.accepted
            rejected = sum(r.count for r in ack.rejected)
            if ack.batch_seq != batch.batch_seq:
                exc = RuntimeError(f"ack for batch {ack.batch_seq}, expected {batch.batch_seq}")
            elif rejected or ack.accepted + ack.duplicates != len(batch.envelopes):
                exc = RuntimeError(f"accepted {ack.accepted} duplicates {ack.duplicates} rejected {rejected} "
                                   f"of {len(batch.envelopes)}")
        except (grpc.RpcError, StopIteration) as err:
            exc = RuntimeError(f"stream ended: {err}")
            self.on_stop()
            self.on_start()  # a fresh stream for the next batch
        self.environment.events.request.fire(request_type="grpc", name=f"Ingest.Stream batch={self.batch_size}",
                            response_time=(time.perf_counter() - started) * 1000.0, response_length=accepted,
                            exception=exc, context={})
