"""The node's truth (common/testing/lifecycle_truth.py) on a real anvil: mined (ok and reverted), replaced by a
speed-up and by a cancel (the replayer's replacements), dropped (anvil_dropTransaction) and still pending; and the
comparison function."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.envconfig import ConfigError
from common.testing.anvil import AnvilNode
from common.testing.demo import DemoConfig, build_parser, parse_block_times
from common.testing.fixtures import load_mainnet_calls
from common.testing.generate import main as generate_main
from common.testing.lifecycle_truth import SentRecord, compare, load_records, node_truth, summary
from common.testing.replay import REPLACEMENT_BUMP_PERCENT, Replayer, SentTx
from common.testing.traffic import TrafficGenerator

CHAIN = 1
#: anvil's first dev account, and init code that reverts at once (status 0 once mined with a fixed gas limit).
DEV = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
REVERTING_INIT = "0x60006000fd"


def rpc(url: str, method: str, params: list[object]) -> object:
    answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10).json()
    assert "error" not in answer, answer
    return answer["result"]


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode(chain_id=CHAIN) as node:
        yield node


def record(s: SentTx) -> SentRecord:
    return SentRecord(s.tx_hash, CHAIN, s.sender, s.nonce, s.fee, s.kind)


def distinct_senders(count: int) -> list:
    seen, out = set(), []
    for call in load_mainnet_calls():
        if call.sender.lower() not in seen and call.to:
            seen.add(call.sender.lower())
            out.append(call)
        if len(out) == count:
            return out
    raise AssertionError("not enough distinct senders in the fixture")


def test_the_node_says_what_happened_to_each_sent_transaction(anvil: AnvilNode) -> None:
    url = anvil.http_url
    calls = distinct_senders(6)

    async def send() -> tuple[list[SentTx], list[SentTx]]:
        async with Replayer(url) as replayer:
            sent = await replayer.send(calls)
            replacements = await replayer.replace(sent[:2], ["speedup", "cancel"])
            return sent, replacements

    sent, replacements = asyncio.run(send())
    assert len(sent) == 6 and [r.kind for r in replacements] == ["speedup", "cancel"]
    for original, repl in zip(sent, replacements, strict=False):
        assert (repl.sender, repl.nonce) == (original.sender, original.nonce)
        assert repl.fee == original.fee * (100 + REPLACEMENT_BUMP_PERCENT) // 100 + 1
    reverting = rpc(url, "eth_sendTransaction", [{"from": DEV, "gas": hex(200_000), "data": REVERTING_INIT}])
    rpc(url, "anvil_dropTransaction", [sent[2].tx_hash])
    rpc(url, "evm_mine", [])
    later = calls[3:4]

    async def send_later() -> list[SentTx]:
        async with Replayer(url) as replayer:
            return await replayer.send(later)

    pending = asyncio.run(send_later())  # the same sender, the next nonce: not mined yet
    records = [record(s) for s in [*sent, *replacements, *pending]]
    records.append(SentRecord(str(reverting), CHAIN, DEV, 0, 0))
    truth = node_truth(url, records)

    block = rpc(url, "eth_getBlockByNumber", ["0x1", False])
    assert isinstance(block, dict)
    order = block["transactions"]
    for s in [*replacements, sent[3], sent[4], sent[5]]:
        assert truth[s.tx_hash] == {"status": "included", "block_number": 1, "index": order.index(s.tx_hash),
                                    "receipt_status": truth[s.tx_hash]["receipt_status"], "replaced_by": None}
    assert truth[sent[0].tx_hash] == {"status": "replaced", "block_number": None, "index": None,
                                      "receipt_status": None, "replaced_by": replacements[0].tx_hash}
    assert truth[sent[1].tx_hash]["replaced_by"] == replacements[1].tx_hash
    assert truth[sent[1].tx_hash]["status"] == "replaced"
    assert truth[replacements[1].tx_hash]["receipt_status"] == 1  # a cancel is a plain transfer
    assert truth[sent[2].tx_hash]["status"] == "dropped"
    assert truth[str(reverting)]["status"] == "included" and truth[str(reverting)]["receipt_status"] == 0
    assert truth[pending[0].tx_hash]["status"] == "pending" and pending[0].nonce == sent[3].nonce + 1
    assert summary(truth) == {"included": 6, "replaced": 2, "dropped": 1, "pending": 1}
    assert len(order) == 6

    # The comparison: agreeing, then a wrong status, a wrong block, a missing hash; "" matches any replacement.
    assert compare(truth, truth) == {}
    reported = {h: dict(t) for h, t in truth.items()}
    reported[sent[2].tx_hash]["status"] = "pending"
    reported[sent[3].tx_hash]["block_number"] = 2
    del reported[pending[0].tx_hash]
    assert compare(truth, reported) == {sent[2].tx_hash: ["status"], sent[3].tx_hash: ["block_number"],
                                        pending[0].tx_hash: ["missing"]}
    unknown = {sent[0].tx_hash: {**truth[sent[0].tx_hash], "replaced_by": ""}}
    assert compare(unknown, {sent[0].tx_hash: truth[sent[0].tx_hash]}) == {}


def test_a_mining_anvil_and_a_replacing_generator_give_included_and_replaced_truth() -> None:
    """anvil --block-time 1 mines the generator's traffic; every sender replaced (share 1.0): each (sender, nonce)
    ends with exactly one included transaction, the others replaced by it; nothing dropped for lack of balance."""
    with AnvilNode(chain_id=137, block_time_s=1) as node:
        gen = TrafficGenerator(node.http_url, 20, chain_id=137, duration_s=2.5, replace_share=1.0).start()
        assert gen.wait(30)
        stats = gen.stats()
        records = gen.records()
        for _ in range(50):  # a deadline for a hung node, not a timed assertion: the pool empties block by block
            if rpc(node.http_url, "txpool_status", []) == {"pending": "0x0", "queued": "0x0"}:
                break
            time.sleep(0.2)
        truth = node_truth(node.http_url, records)
    kinds = [r.kind for r in records]
    assert stats.speedups + stats.cancels == kinds.count("speedup") + kinds.count("cancel") > 0
    assert stats.speedups and stats.cancels and stats.records_dropped == 0
    by_key: dict[tuple[str, int], list[SentRecord]] = {}
    for r in records:
        assert r.chain_id == 137 and r.fee > 0 and r.nonce >= 0
        by_key.setdefault((r.sender, r.nonce), []).append(r)
    counts = summary(truth)
    assert counts["dropped"] == 0 and counts["pending"] == 0 and counts["replaced"] > 0
    for (sender, nonce), group in by_key.items():
        included = [r for r in group if truth[r.tx_hash]["status"] == "included"]
        assert len(included) == 1, (sender, nonce, [(r.kind, truth[r.tx_hash]) for r in group])
        for r in group:
            if r is not included[0]:
                assert truth[r.tx_hash] == {"status": "replaced", "block_number": None, "index": None,
                                            "receipt_status": None, "replaced_by": included[0].tx_hash}
    assert sum(1 for t in truth.values() if t["status"] == "included" and t["block_number"] >= 1) == len(by_key)


def test_the_demo_mines_each_chain_at_its_block_time_and_replaces_a_share() -> None:
    cfg = DemoConfig.from_args(build_parser().parse_args([]))
    assert (cfg.block_time_s(1), cfg.block_time_s(137), cfg.block_time_s(56), cfg.replace_share) == (3, 2, 2, 0.05)
    cfg = DemoConfig.from_args(build_parser().parse_args(["--block-times-s", "ethereum=0,polygon=0.5",
                                                          "--replace-share", "0"]))
    assert (cfg.block_time_s(1), cfg.block_time_s(137), cfg.replace_share) == (0, 0.5, 0)
    for bad in ("1", "1=x", "nochain=2", "1=-1"):
        with pytest.raises(ConfigError):
            parse_block_times(bad)
    with pytest.raises(ConfigError):
        DemoConfig.from_args(build_parser().parse_args(["--replace-share", "1.5"]))


def test_scripts_generate_writes_the_records_the_truth_reads(anvil: AnvilNode, tmp_path: Path) -> None:
    out = tmp_path / "records.jsonl"
    assert generate_main(["--rpc", anvil.http_url, "--rate-tx-s", "20", "--duration-s", "1.5", "--quiet",
                          "--replace-share", "1", "--records-out", str(out)]) == 0
    records = load_records(str(out))
    kinds = {r.kind for r in records}
    assert kinds == {"original", "speedup", "cancel"} and all(r.chain_id == CHAIN for r in records)
    truth = node_truth(anvil.http_url, records)  # nothing mined (--no-mining): replacements pending
    counts = summary(truth)
    assert counts["included"] == counts["dropped"] == 0
    assert counts["pending"] == sum(r.kind != "original" for r in records)
    replacement = {(r.sender, r.nonce): r.tx_hash for r in records if r.kind != "original"}
    for r in records:
        if r.kind == "original":  # replaced in the pool by the pending speed-up or cancel of its nonce
            assert truth[r.tx_hash]["status"] == "replaced", truth[r.tx_hash]
            assert truth[r.tx_hash]["replaced_by"] == replacement[(r.sender, r.nonce)]


def test_an_original_whose_replacement_the_node_dropped_is_replaced_and_the_replacement_dropped(
        anvil: AnvilNode) -> None:
    """anvil may drop a speed-up when it mines (or a test evicts it): the original was still replaced by it (the node
    took the speed-up in its place), and the speed-up itself is dropped."""
    url = anvil.http_url
    calls = distinct_senders(1)

    async def send() -> tuple[list[SentTx], list[SentTx]]:
        async with Replayer(url) as replayer:
            sent = await replayer.send(calls)
            return sent, await replayer.replace(sent, ["speedup"])

    sent, replacements = asyncio.run(send())
    rpc(url, "anvil_dropTransaction", [replacements[0].tx_hash])
    truth = node_truth(url, [record(s) for s in [*sent, *replacements]])
    assert truth[sent[0].tx_hash] == {"status": "replaced", "block_number": None, "index": None,
                                      "receipt_status": None, "replaced_by": replacements[0].tx_hash}
    assert truth[replacements[0].tx_hash]["status"] == "dropped"
