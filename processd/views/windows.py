"""The bounded windows of the read models: newest transactions, newest features, best opportunities.

A window keeps events values (exact bytes) and parses them only when a query returns them: a message parsed out
of an ingest batch would keep that whole batch alive, and most entries leave their window without ever being read.

Commits add to the windows on the event loop thread, between receiving ingest batches, so adding must not cost
work per transaction: a commit may hold tens of thousands of transactions and a window keeps a few thousand.
:class:`TxWindow` therefore keeps *chunks*, references to the committed batches' columns, and builds an entry only
when a query or the digest reads it. (Building an entry tuple per kept transaction on every commit cost
0.3-0.8 us per transaction in ``ReadModels.apply`` alone, and the live tuples burdened every garbage collection:
in the bench the daemon's CPU fell from ~11.0 to ~9.3 us per transaction with chunks.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import compress, repeat

from common.pb.v1 import events_pb2
from processd.storage.eventlog import decode_event
from processd.storage.records import OppEntry, TxEntry

#: A stored batch seen by one window: (seq of each event, events values, the window's transactions as offsets of
#: their TX_SEEN event, shift from TX_SEEN to the window's event, chain of each transaction or one for all).
_Chunk = tuple[Sequence[int], Sequence[bytes], Sequence[int], int, "Sequence[int] | int"]

#: A chunk that refers to a batch holding more than this many events per transaction of its window is copied out
#: (only the window's events), so that a chain with one transaction in each big mixed batch cannot make its window
#: hold whole batches.
SPARSE_EVENTS_PER_TX = 8


class TxWindow:
    """The newest ``maxlen`` transactions of a stream of commits, as :data:`TxEntry` of one event kind.

    ``shift`` picks the event: 0 for TX_SEEN, 1 for TX_DECODED (it follows its TX_SEEN). Iteration yields entries
    oldest first, ``reversed()`` newest first (building only the entries it reaches). Chunks are dropped from the
    old end once the newer ones hold ``maxlen`` transactions, so memory is bounded by ``maxlen`` plus one batch.
    """

    __slots__ = ("_chunks", "_count", "maxlen", "shift")

    def __init__(self, maxlen: int, shift: int) -> None:
        self.maxlen = maxlen
        self.shift = shift
        self._chunks: deque[_Chunk] = deque()
        self._count = 0  # transactions in the chunks (the oldest chunk may hold more than the window keeps)

    def __len__(self) -> int:
        return min(self._count, self.maxlen)

    @property
    def held_values(self) -> int:
        """Event values the chunks refer to (at most ``SPARSE_EVENTS_PER_TX`` x (``maxlen`` + one batch's
        transactions)); values shared with other windows are counted in each."""
        return sum(len(chunk[1]) for chunk in self._chunks)

    def add_batch(self, first: int, values: list[bytes], seen_at: list[int], chain: Sequence[int] | int) -> None:
        """Adds a stored batch's transactions (``seen_at``: their TX_SEEN offsets, ascending; ``first``: the seq of
        the batch's first event; ``chain``: each transaction's chain, or the one chain of them all)."""
        if not seen_at or self.maxlen <= 0:
            return
        if len(values) > SPARSE_EVENTS_PER_TX * len(seen_at):
            shift = self.shift
            offsets = [at + shift for at in seen_at]
            self._add((list(map(first.__add__, offsets)), list(map(values.__getitem__, offsets)),
                       range(len(offsets)), 0, chain))
        else:
            self._add((range(first, first + len(values)), values, seen_at, self.shift, chain))

    def add_entries(self, entries: list[TxEntry]) -> None:
        """Adds entries, ascending by seq (the start-up rebuild)."""
        if entries and self.maxlen > 0:
            self._add(([e[0] for e in entries], [e[2] for e in entries], range(len(entries)), 0,
                       [e[1] for e in entries]))

    def _add(self, chunk: _Chunk) -> None:
        chunks = self._chunks
        chunks.append(chunk)
        self._count += len(chunk[2])
        while self._count - len(chunks[0][2]) >= self.maxlen:
            self._count -= len(chunks.popleft()[2])

    def __reversed__(self) -> Iterator[TxEntry]:
        left = len(self)
        for seqs, values, offsets, shift, chain in reversed(self._chunks):
            chains = repeat(chain) if isinstance(chain, int) else reversed(chain)
            for at, chain_id in zip(reversed(offsets), chains, strict=False):  # repeat() is endless
                if left <= 0:
                    return
                left -= 1
                at += shift
                yield seqs[at], chain_id, values[at]

    def __iter__(self) -> Iterator[TxEntry]:
        return reversed(list(reversed(self)))


def chain_offsets(seen_at: list[int], chains: list[int], chain_id: int) -> list[int]:
    """The TX_SEEN offsets of ``chain_id``'s transactions in a batch of several chains."""
    return list(compress(seen_at, map(chain_id.__eq__, chains)))


class OpportunityWindow:
    """The newest ``maxlen`` opportunities (:data:`OppEntry`), read best first (:func:`rank_key`): those valued on
    pool state with a known net profit first, highest net profit (native wei) first; then the others (heuristic
    only, or valued without a native value) by heuristic score; newer first among equals.

    Commits only append to a bounded deque (C-level, no Python work per opportunity); the ranking is sorted when
    a query asks for it, at most once per change and over at most ``maxlen`` entries (a few ms for 5,000), so
    ingest never pays for rankings nobody reads. An opportunity is parsed only when a ranking first needs its net
    profit (once: its key is kept while it stays in the window) or a query returns it.
    """

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._by_age: deque[OppEntry] = deque(maxlen=maxlen)
        self._ranked: list[OppEntry] | None = []
        #: How many entries of the ranking lead with a net profit (they come first).
        self._valued = 0
        #: Each entry's rank key by seq, for the entries of the window (rebuilt with each ranking: bounded by it).
        self._keys: dict[int, tuple[int, int, int]] = {}

    def __len__(self) -> int:
        return len(self._by_age)

    def add(self, opp: OppEntry) -> None:
        self._by_age.append(opp)
        self._ranked = None

    def extend(self, opps: list[OppEntry]) -> None:
        """Adds opportunities in seq order (the oldest leave the window)."""
        if opps:
            self._by_age.extend(opps)
            self._ranked = None

    def _ranking(self) -> list[OppEntry]:
        ranked = self._ranked
        if ranked is None:
            old, keys = self._keys, {}
            for entry in self._by_age:
                key = old.get(entry[0])
                keys[entry[0]] = key if key is not None else rank_key(entry)
            self._keys = keys
            ranked = self._ranked = sorted(self._by_age, key=lambda e: keys[e[0]], reverse=True)
            self._valued = sum(1 for key in keys.values() if key[0])
        return ranked

    def top(self, limit: int, min_score: int = 0, keep: Callable[[int, int], bool] | None = None,
            min_profit_wei: int = 0) -> list[events_pb2.Opportunity]:
        """Best first (class doc). ``min_score`` leaves out opportunities scoring below it (the score-ranked part
        stops at the first); ``keep`` (seq, chain) -> bool leaves out the opportunities of transactions an
        ``EventFilter`` refuses; ``min_profit_wei`` those whose net profit (valued opportunities only) is below it
        (so the ranking stops at the first valued one below it)."""
        out: list[events_pb2.Opportunity] = []
        ranking = self._ranking()
        valued = self._valued
        keys = self._keys
        for i, (seq, chain_id, score, value) in enumerate(ranking):
            if len(out) >= limit:
                break
            if i < valued:
                if min_profit_wei and keys[seq][1] < min_profit_wei:
                    break  # the rest nets less, and heuristic opportunities never match a profit bound
                if score < min_score:
                    continue
            elif score < min_score or min_profit_wei:
                break
            if keep is None or keep(seq, chain_id):
                out.append(decode_event(value, seq).opp_detected.opportunity)
        return out

    def seqs(self) -> list[int]:
        """The seqs of the window, best first."""
        return [entry[0] for entry in self._ranking()]

    def seqs_by_age(self) -> list[int]:
        """The seqs of the window, oldest first: its content without ranking it (the ranking is a function of the
        content, so the replay digest hashes this and parses no opportunity)."""
        return [entry[0] for entry in self._by_age]


def rank_key(entry: OppEntry) -> tuple[int, int, int]:
    """(1, net profit wei, seq) for an opportunity valued with a known net profit, else (0, score, seq): sorted
    descending, valued ones by net profit first, then the rest by heuristic score, newer first among equals."""
    seq, _, score, value = entry
    opp = decode_event(value, seq).opp_detected.opportunity
    if opp.valued and opp.HasField("net_profit_wei"):
        return 1, int.from_bytes(opp.net_profit_wei, "big"), seq
    return 0, score, seq
