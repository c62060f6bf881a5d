"""Merging the pages of several processd shards into one page, and the cursors that page across them.

seq ids are positions in ONE processd's log, so an all-chain page over several shards cannot be continued from a
seq id. Its cursor carries a position per shard instead (:func:`encode_cursor`): opaque to clients, versioned,
tied to the route and to the shard layout (a fingerprint of the configured chain sets), and validated: a bad,
truncated or foreign cursor is a 400 ``invalid_cursor``, never a crash.

:func:`merge_page` is a k-way merge of per-shard pages, each in its shard's seq order, by a sort key (first-seen
time for transactions, score for opportunities, ...). Each shard's own order is kept as it is, and a shard's
position only moves past the records actually returned, so paging with the returned cursor yields every record
of every shard exactly once, whatever the keys (tested: tests/gatewayd/test_merge.py). The merge stops before
it would have to guess: when a shard that has more records than its page held has no record left in the page,
the next record could be that shard's, so the page ends there (it is flagged ``truncated`` when shorter than
the limit). Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gatewayd.params import UINT64_MAX, ParamError

T = TypeVar("T")

#: Version tag of the cursor format; a cursor of another version is refused (400), not guessed at.
CURSOR_VERSION = "m1"
#: Longest cursor accepted (bounds parsing; 64 shards of 20-digit positions fit).
MAX_CURSOR_CHARS = 1500
#: Position of a shard with nothing left in a descending walk (its oldest record was returned).
EXHAUSTED = -1
_CURSOR = re.compile(r"m1\.([a-z]{1,8})\.([0-9a-f]{8})\.([0-9x.]*)")


def layout_fingerprint(chain_sets: Sequence[Sequence[int]]) -> str:
    """8 hex digits naming the shard layout (which chains each shard, in order, owns). A cursor made under
    another layout names other logs: it is refused rather than read against the wrong shard."""
    text = ";".join(",".join(str(c) for c in sorted(chains)) for chains in chain_sets)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def encode_cursor(route: str, fingerprint: str, positions: Sequence[int]) -> str:
    """``m1.<route>.<fingerprint>.<p0>.<p1>...``: one seq position per shard, ``x`` for :data:`EXHAUSTED`."""
    parts = ["x" if p == EXHAUSTED else str(p) for p in positions]
    return f"{CURSOR_VERSION}.{route}.{fingerprint}.{'.'.join(parts)}"


def decode_cursor(name: str, text: str, route: str, fingerprint: str, shards: int) -> list[int]:
    """The per-shard positions of a cursor made by :func:`encode_cursor` for ``route`` under this layout, or
    :class:`ParamError` ``invalid_cursor`` naming what is wrong with it."""
    if len(text) > MAX_CURSOR_CHARS:
        raise ParamError("invalid_cursor", f"{name}: longer than {MAX_CURSOR_CHARS} characters", name)
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise ParamError("invalid_cursor", f"{name}: not a cursor of this gateway (use next_cursor as given)", name)
    if match.group(1) != route:
        raise ParamError("invalid_cursor", f"{name}: a cursor of another route ({match.group(1)})", name)
    if match.group(2) != fingerprint:
        raise ParamError("invalid_cursor", f"{name}: made under another processd shard layout; start again "
                         "without a cursor", name)
    parts = match.group(3).split(".")
    if len(parts) != shards:
        raise ParamError("invalid_cursor", f"{name}: {len(parts)} positions for {shards} shards", name)
    positions: list[int] = []
    for part in parts:
        if part == "x":
            positions.append(EXHAUSTED)
        elif part.isdigit() and len(part) <= 20 and int(part) <= UINT64_MAX:
            positions.append(int(part))
        else:
            raise ParamError("invalid_cursor", f"{name}: bad position {part[:24]!r}", name)
    return positions


@dataclass(slots=True)
class ShardPage(Generic[T]):
    """One shard's page: its records in its seq order, whether it holds more beyond them right now, and where
    its walk goes on once the whole page is taken (processd's own cursor: it may skip records a filter left out;
    0 = none given)."""

    items: Sequence[T]
    more: bool
    resume: int = 0


@dataclass(slots=True)
class Merged(Generic[T]):
    """A merged page: (shard index, record) pairs in merged order, and how many were taken from each shard."""

    items: list[tuple[int, T]]
    taken: list[int]
    #: True when the page ended before ``limit`` because a shard's page ran out while it had more.
    cut: bool


def merge_page(pages: Sequence[ShardPage[T] | None], key: Callable[[T], Any], limit: int,
               descending: bool = True) -> Merged[T]:
    """Up to ``limit`` records of ``pages`` (None = a shard left out: down, or exhausted) in order of ``key``
    (largest first when ``descending``; ties go to the lower shard index), each shard's own order kept."""
    heads = [0] * len(pages)
    out: list[tuple[int, T]] = []
    cut = False
    while len(out) < limit:
        best = -1
        best_key: Any = None
        for i, page in enumerate(pages):
            if page is None:
                continue
            if heads[i] >= len(page.items):
                if page.more:  # its next record is unknown: it could come first
                    best = -2
                    break
                continue
            k = key(page.items[heads[i]])
            if best < 0 or (k > best_key if descending else k < best_key):
                best, best_key = i, k
        if best == -2:
            cut = True
            break
        if best < 0:
            break
        page = pages[best]
        assert page is not None
        out.append((best, page.items[heads[best]]))
        heads[best] += 1
    return Merged(out, heads, cut)


def next_positions(pages: Sequence[ShardPage[T] | None], merged: Merged[T], start: Sequence[int],
                   seq: Callable[[T], int], descending: bool) -> list[int]:
    """Where each shard's walk goes on after ``merged``: in a descending walk (newest first) the seq of the
    last record taken (an exclusive upper bound), :data:`EXHAUSTED` once a shard's oldest record is taken; in
    an ascending walk one past it (an inclusive lower bound; a shard that is caught up is polled again later).
    A shard that was left out, or gave nothing to this page, keeps its position."""
    positions = list(start)
    for i, page in enumerate(pages):
        if page is None:
            continue
        taken = merged.taken[i]
        if taken == len(page.items) and page.resume:
            positions[i] = page.resume
        elif taken:
            last = seq(page.items[taken - 1])
            positions[i] = last if descending else last + 1
        if descending and taken == len(page.items) and not page.more:
            positions[i] = EXHAUSTED
    return positions
