"""mempulse's Python client: typed async access to processd's Query service.

::

    from common.client import Client, Filter

    async with Client("127.0.0.1:50051") as c:
        print((await c.snapshot()).last_seq_id)
        async for ev in c.subscribe(Filter(chain_ids={1}, kinds={"tx_decoded"})):
            print(ev.seq_id, ev.tx_hash, ev.features.method)

Records are frozen dataclasses of hex strings and ints (:mod:`common.client.records`); errors derive from
:class:`ClientError` and say whether a retry may help (``retriable``). Reference: ``docs/client.md``.
"""

from __future__ import annotations

from common.client._many import ManySubscription, TaggedEvent
from common.client._stream import Backoff
from common.client._subscribe import Subscription
from common.client.client import Client, service_config
from common.client.errors import (
    ClientClosedError,
    ClientError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from common.client.filter import Filter
from common.client.records import (
    AccessListEntry,
    Authorization,
    ChainTotals,
    DecodedArg,
    Dropped,
    Event,
    EventKind,
    EventPage,
    FeatureRecord,
    Features,
    FeatureSummary,
    Included,
    LifecycleTotals,
    Opportunity,
    PoolState,
    Reorg,
    Replaced,
    ReplayPoint,
    Sighting,
    Snapshot,
    SourceSeen,
    SourceStanding,
    Transaction,
    TransactionDetail,
    TransactionPage,
)

__all__ = [
    "AccessListEntry",
    "Authorization",
    "Backoff",
    "ChainTotals",
    "Client",
    "ClientClosedError",
    "ClientError",
    "DeadlineExceededError",
    "DecodedArg",
    "Dropped",
    "Event",
    "EventKind",
    "EventPage",
    "FeatureRecord",
    "FeatureSummary",
    "Features",
    "Filter",
    "Included",
    "InvalidArgumentError",
    "LifecycleTotals",
    "ManySubscription",
    "NotFoundError",
    "Opportunity",
    "PoolState",
    "Reorg",
    "Replaced",
    "ReplayPoint",
    "Sighting",
    "Snapshot",
    "SourceSeen",
    "SourceStanding",
    "Subscription",
    "TaggedEvent",
    "Transaction",
    "TransactionDetail",
    "TransactionPage",
    "UnavailableError",
    "service_config",
]
