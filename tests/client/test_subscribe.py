"""Client.subscribe against a real in-process processd: filters (processd's and the client's), from now or from a
seq, a slow consumer cut off by processd and resumed without loss, closing, giving up on an unreachable server.

Expected events are computed from a ScanEvents walk of the log over raw gRPC, independently of the client. A
subscription is read until it passes the last expected seq: an extra or missing event shows as a list mismatch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from common.client import Backoff, Client, EventKind, Filter, UnavailableError
from common.pb.v1 import events_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.client._helpers import DECODED, SEEN, expected, raw_log, read_until, tx_index


async def test_catch_up_then_live_with_processd_side_filter(seeded: ProcessdServer) -> None:
    flt = Filter(chain_ids={137}, kinds={"tx_seen", "opp_detected"})
    kinds = {SEEN, events_pb2.EVENT_KIND_OPP_DETECTED}
    async with Client(seeded.address) as c, c.subscribe(flt, from_seq=1) as sub:
        before = await raw_log(seeded.address)
        first = await read_until(sub, max(expected(before, lambda e: e.chain_id == 137 and e.kind in kinds)))
        await push_envelopes(seeded.address, synthetic_envelopes(60, seed=8), batch_size=20, session_id="live")
        log = await raw_log(seeded.address)
        want = expected(log, lambda e: e.chain_id == 137 and e.kind in kinds)
        rest = await read_until(sub, want[-1])
    got = first + rest
    assert [e.seq_id for e in got] == want
    assert {e.kind for e in got} == {EventKind.TX_SEEN, EventKind.OPP_DETECTED}
    assert sub.last_seq == want[-1] and sub.resume_seq == want[-1] + 1


async def test_several_chains_are_filtered_by_the_client(seeded: ProcessdServer) -> None:
    log = await raw_log(seeded.address)
    want = expected(log, lambda e: e.chain_id in (1, 56) and e.kind == DECODED)
    async with Client(seeded.address) as c, c.subscribe(Filter(chain_ids={1, 56}, kinds={"tx_decoded"}),
                                                         from_seq=1) as sub:
        got = await read_until(sub, want[-1])
    assert [e.seq_id for e in got] == want
    assert all(e.features is not None for e in got)


async def test_client_side_transaction_filters(seeded: ProcessdServer) -> None:
    log = await raw_log(seeded.address)
    txs = tx_index(log)
    envs = [env for env, _ in txs.values()]
    sender = "0x" + envs[0].sender.hex()
    target = "0x" + next(env.to for env in envs if env.to and env.to != envs[0].sender).hex()
    method = next(m for _, m in txs.values() if m and m != "transfer")
    selector = "0x" + next(env.input[:4] for env in envs if len(env.input) >= 4).hex()
    values = sorted(int.from_bytes(env.value, "big") for env in envs)
    min_value = values[len(values) // 2] or 1

    def facts(e: events_pb2.Event) -> tuple[str, str | None, int, str | None, str]:
        env, name = txs[(e.chain_id, e.tx_hash)]
        return ("0x" + env.sender.hex(), "0x" + env.to.hex() if env.to else None, int.from_bytes(env.value, "big"),
                "0x" + env.input[:4].hex() if len(env.input) >= 4 else None, name)

    cases: list[tuple[Filter, Callable[[events_pb2.Event], bool]]] = [
        (Filter(senders={sender}), lambda e: facts(e)[0] == sender),
        (Filter(to={target}, kinds={"tx_decoded"}), lambda e: facts(e)[1] == target and e.kind == DECODED),
        (Filter(addresses={sender, target}), lambda e: sender in facts(e)[:2] or target in facts(e)[:2]),
        (Filter(methods={method}, kinds={"tx_seen"}), lambda e: facts(e)[4] == method and e.kind == SEEN),
        (Filter(methods={selector}), lambda e: facts(e)[3] == selector),
        (Filter(min_value_wei=min_value, chain_ids={1}),
         lambda e: facts(e)[2] >= min_value and e.chain_id == 1),
    ]
    async with Client(seeded.address) as c:
        for flt, keep in cases:
            want = expected(log, keep)
            assert want, f"{flt}: nothing in the seed matches, the case is blind"
            async with c.subscribe(flt, from_seq=1) as sub:
                got = await read_until(sub, want[-1])
            assert [e.seq_id for e in got] == want, flt


async def test_protocol_token_and_score_fields_are_applied_by_processd(seeded: ProcessdServer) -> None:
    """protocols, tokens_in, tokens_out and min_score (fields only processd judges) select the events of the
    transactions whose features / opportunities say so, as computed here from the raw log."""
    log = await raw_log(seeded.address)
    feats = {(e.chain_id, e.tx_hash): e.tx_decoded.features for e in log if e.kind == DECODED}
    best: dict[tuple[int, bytes], int] = {}
    for e in log:
        if e.kind == events_pb2.EVENT_KIND_OPP_DETECTED:
            key = (e.chain_id, e.tx_hash)
            best[key] = max(best.get(key, 0), e.opp_detected.opportunity.score)

    def feat(e: events_pb2.Event) -> events_pb2.TxFeatures | None:
        return feats.get((e.chain_id, e.tx_hash))

    protocol = Counter(f.protocol for f in feats.values() if f.protocol).most_common(1)[0][0]
    token_in = Counter(f.token_in for f in feats.values() if f.token_in).most_common(1)[0][0]
    token_out = Counter(f.token_out for f in feats.values() if f.token_out).most_common(2)[1][0]
    dex = Counter(f.protocol for key, f in feats.items() if best.get(key)).most_common(1)[0][0]
    cases: list[tuple[Filter, Callable[[events_pb2.Event], bool]]] = [
        (Filter(protocols={protocol}), lambda e: (f := feat(e)) is not None and f.protocol == protocol),
        (Filter(tokens_in={"0x" + token_in.hex()}, kinds={"tx_decoded"}),
         lambda e: (f := feat(e)) is not None and f.token_in == token_in and e.kind == DECODED),
        (Filter(tokens_out={"0x" + token_out.hex().upper()}),
         lambda e: (f := feat(e)) is not None and f.token_out == token_out),
        (Filter(min_score=30, chain_ids={137, 56}),
         lambda e: best.get((e.chain_id, e.tx_hash), 0) >= 30 and e.chain_id in (137, 56)),
        (Filter(protocols={dex, "nothing_here"}, min_score=1),
         lambda e: (f := feat(e)) is not None and f.protocol == dex and best.get((e.chain_id, e.tx_hash), 0) > 0),
    ]
    async with Client(seeded.address) as c:
        for flt, keep in cases:
            want = expected(log, keep)
            assert 0 < len(want) < len(log), f"{flt}: the case is blind"
            async with c.subscribe(flt, from_seq=1) as sub:
                got = await read_until(sub, want[-1])
            assert [e.seq_id for e in got] == want, flt


async def test_starting_inside_a_transaction_looks_its_facts_up(seeded: ProcessdServer) -> None:
    """From the seq of a TX_DECODED, the stream never carries that transaction's TX_SEEN: the client looks the
    transaction up to judge the sender filter, and delivers its TX_DECODED (and later events) all the same."""
    log = await raw_log(seeded.address)
    decoded = next(e for e in log if e.kind == DECODED and e.seq_id > 10)
    sender = "0x" + tx_index(log)[(decoded.chain_id, decoded.tx_hash)][0].sender.hex()
    want = [e.seq_id for e in log if e.seq_id >= decoded.seq_id
            and "0x" + tx_index(log)[(e.chain_id, e.tx_hash)][0].sender.hex() == sender]
    async with Client(seeded.address) as c, c.subscribe(Filter(senders={sender}), from_seq=decoded.seq_id) as sub:
        got = await read_until(sub, want[-1])
    assert [e.seq_id for e in got] == want and got[0].seq_id == decoded.seq_id


async def test_from_now_sends_only_newer_events(seeded: ProcessdServer) -> None:
    head = seeded.models.last_seq
    async with Client(seeded.address) as c, c.subscribe() as sub:
        assert await sub.wait_admitted() == head
        assert sub.head_seq == head and sub.resume_seq == head + 1
        await push_envelopes(seeded.address, synthetic_envelopes(10, seed=9), batch_size=10, session_id="new")
        got = await read_until(sub, seeded.models.last_seq)
    assert [e.seq_id for e in got] == list(range(head + 1, seeded.models.last_seq + 1))


async def test_slow_consumer_is_cut_off_by_processd_and_resumes_without_loss(server_factory) -> None:
    """The consumer reads nothing while 2,000 transactions commit: the client's queue fills, its stream stops
    reading, processd's buffer for it overflows and processd cuts it off. The subscription reconnects and catches
    up from the log: every event arrives once, in order."""
    srv: ProcessdServer = await server_factory(subscriber_queue_events=200)
    async with Client(srv.address, queue_events=8) as c, c.subscribe(from_seq=1) as sub:
        await sub.wait_admitted()
        for _ in range(500):  # registered live (after an empty catch-up): commits now go to its buffer
            if srv.hub.subscribers:
                break
            await asyncio.sleep(0.01)
        await push_envelopes(srv.address, synthetic_envelopes(2000, seed=45), batch_size=500)
        last = srv.models.last_seq
        got = await read_until(sub, last)
    cuts = srv.metrics.registry.get_sample_value("mempulse_processd_subscriber_cuts_total",
                                                 {"reason": "slow_subscriber"})
    assert cuts and cuts >= 1, "processd never cut the subscriber off: the test did not exercise the resume"
    assert sub.reconnects >= 1
    assert [e.seq_id for e in got] == list(range(1, last + 1))


async def test_close_ends_the_iteration_and_client_stop_closes_subscriptions(seeded: ProcessdServer) -> None:
    c = await Client(seeded.address).start()
    sub = c.subscribe(from_seq=1)
    first = await sub.__anext__()
    assert first.seq_id == 1
    await sub.aclose()
    await sub.aclose()
    assert [ev async for ev in sub] == []
    other = c.subscribe()
    await other.start()
    await c.stop()
    assert [ev async for ev in other] == []


async def test_unreachable_server_fails_the_subscription_after_the_attempts() -> None:
    backoff = Backoff(initial_s=0.01, max_s=0.05, max_attempts=3)
    async with Client(f"127.0.0.1:{free_port()}", reconnect=backoff) as c:
        sub = c.subscribe(Filter(chain_ids={1}))
        with pytest.raises(UnavailableError):
            await sub.wait_admitted()
        with pytest.raises(UnavailableError) as info:
            await sub.__anext__()
    assert info.value.retriable and info.value.method == "SubscribeEvents"
    assert sub.reconnects == 3


def test_backoff_grows_to_its_bound_with_jitter() -> None:
    import random

    b = Backoff(initial_s=0.1, max_s=2.0, multiplier=2.0, jitter=0.25)
    rng = random.Random(1)
    delays = [b.delay(n, rng) for n in range(1, 12)]
    assert 0.075 <= delays[0] <= 0.125 and 0.15 <= delays[1] <= 0.25
    assert all(d <= 2.0 for d in delays) and delays[-1] >= 1.5
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not in step


def test_every_filter_field_goes_to_processd() -> None:
    """Filter.to_pb: what processd applies (the subscription sends it with the older chain_id/kinds fields)."""
    from common.pb.v1 import query_pb2

    a, b = "0x" + "ab" * 20, "0x" + "cd" * 20
    flt = Filter(chain_ids={137, 1}, kinds={"tx_seen"}, senders={a.upper().replace("0X", "0x")}, to={b},
                 addresses={a, b}, methods={"transfer", "0xA9059CBB"}, min_value_wei=256)
    assert flt.to_pb() == query_pb2.EventFilter(
        chain_ids=[1, 137], kinds=[SEEN], senders=[bytes.fromhex("ab" * 20)], to=[bytes.fromhex("cd" * 20)],
        addresses=[bytes.fromhex("ab" * 20), bytes.fromhex("cd" * 20)], selectors=[bytes.fromhex("a9059cbb")],
        methods=["transfer"], min_value=b"\x01\x00")
    assert Filter().to_pb() is None  # takes everything: the request carries no filter, as before
    c = "0x" + "ef" * 20
    flt = Filter(protocols=["uniswap_v2", "sushiswap", "uniswap_v2"], tokens_in=[c.upper().replace("0X", "0x")],
                 tokens_out={a, c}, min_score=40)
    assert flt.to_pb() == query_pb2.EventFilter(
        protocols=["sushiswap", "uniswap_v2"], tokens_in=[bytes.fromhex("ef" * 20)],
        tokens_out=[bytes.fromhex("ab" * 20), bytes.fromhex("ef" * 20)], min_score=40)
    assert flt.needs_server_filter and not flt.needs_tx_facts and flt == Filter(
        protocols={"sushiswap", "uniswap_v2"}, tokens_in={c}, tokens_out=[c, a], min_score=40)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"protocols": "uniswap_v2"}, "protocols must be a collection"),
    ({"protocols": [""]}, "protocols"),
    ({"protocols": ["x" * 65]}, "protocols"),
    ({"protocols": [f"p{i}" for i in range(65)]}, "protocols: at most 64"),
    ({"tokens_in": ["0x1234"]}, "tokens_in"),
    ({"tokens_out": ["0x" + "11" * 20, 7]}, "tokens_out"),
    ({"tokens_in": [f"0x{i:040x}" for i in range(200)], "tokens_out": [f"0x{i:040x}" for i in range(57)]},
     "tokens_in and tokens_out"),
    ({"senders": [f"0x{i:040x}" for i in range(1001)]}, "senders: at most 1000"),
    ({"min_score": 101}, "min_score"),
    ({"min_score": -1}, "min_score"),
    ({"min_score": True}, "min_score"),
    ({"min_value_wei": 2**256}, "min_value_wei"),
    ({"chain_ids": set(range(1, 66))}, "chain_ids: at most 64"),
])
def test_filter_values_past_processds_bounds_are_refused_before_any_call(kwargs: dict, needle: str) -> None:
    from common.client import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=needle.replace("*", r"\*")):
        Filter(**kwargs)
