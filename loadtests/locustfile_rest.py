"""Locust load test of gatewayd's REST hot paths: ``GET /transactions`` and ``GET /dashboard/snapshot``.

Run headless (``scripts/loadtest_rest`` starts a stack with ingest running, or targets a running one, and
writes JSON/CSV into ``artifacts/perf/``)::

    locust -f loadtests/locustfile_rest.py --headless -u 64 -r 64 -t 30s --host http://127.0.0.1:8080

Knobs (env):
- ``MEMPULSE_LOADTEST_API_KEYS``: comma-separated API keys (falls back to ``MEMPULSE_GATEWAYD_API_KEYS``); users take
  them round-robin and send ``x-api-key``. Empty = no key (a gateway without auth).
- ``MEMPULSE_LOADTEST_CHAINS``: chain ids or names the users query, round-robin (default ``1,137``; an empty
  entry means "all chains").
- ``MEMPULSE_LOADTEST_USER_RPS``: per-user request rate (Locust ``constant_throughput``); 0 (default) = as fast
  as the gateway answers (closed loop).
- ``MEMPULSE_LOADTEST_SNAPSHOT_WEIGHT`` / ``MEMPULSE_LOADTEST_TX_WEIGHT``: task mix (default 1 / 3).

Request names are exactly ``/transactions`` and ``/dashboard/snapshot`` (query strings are not part of the
name), so the stats CSV has one row per route. A non-200 answer, or a body without the expected key, is a
failure, except 429: gatewayd's rate limit answering as configured is not an error of the gateway, so it is
counted in its own rows, ``/transactions (429 rate limited)`` and ``/dashboard/snapshot (429 rate limited)``,
and the user waits the ``Retry-After`` seconds it was given, as a well-behaved client does. When any request was
rate limited, the run ends with a warning that says why and what to change.

Against ``./scripts/demo`` this works as it is: the demo runs gatewayd without a rate limit (one local user).
Against a gatewayd with its default limit (``--rate-limit-rps 100`` per API key, or per client address when
auth is off) the users of one load generator share one bucket unless each has its own key: give them keys
(``MEMPULSE_LOADTEST_API_KEYS``, one per user, listed in gatewayd's ``--api-keys-file``), or use
``scripts/loadtest_rest``, which starts its own stack with one key per user.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

import gevent
from locust import constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

log = logging.getLogger(__name__)

#: Suffix of the request names under which 429 answers are counted (not failures).
RATE_LIMITED = " (429 rate limited)"


def _env_list(*names: str, default: str = "") -> list[str]:
    for name in names:
        raw = os.environ.get(name)
        if raw is not None and raw.strip():
            return [part.strip() for part in raw.split(",")]
    return [part.strip() for part in default.split(",")] if default else []


_KEYS = [k for k in _env_list("MEMPULSE_LOADTEST_API_KEYS", "MEMPULSE_GATEWAYD_API_KEYS") if k]
_CHAINS = _env_list("MEMPULSE_LOADTEST_CHAINS", default="1,137")
_USER_RPS = float(os.environ.get("MEMPULSE_LOADTEST_USER_RPS") or 0)
_TX_WEIGHT = int(os.environ.get("MEMPULSE_LOADTEST_TX_WEIGHT") or 3)
_SNAPSHOT_WEIGHT = int(os.environ.get("MEMPULSE_LOADTEST_SNAPSHOT_WEIGHT") or 1)
_user_ids = itertools.count()


class GatewayUser(FastHttpUser):
    """One API client polling the newest transactions and the dashboard snapshot of one chain."""

    wait_time = constant_throughput(_USER_RPS) if _USER_RPS > 0 else constant(0)
    # Fail fast rather than queue forever when the gateway is saturated.
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        n = next(_user_ids)
        self.headers = {"x-api-key": _KEYS[n % len(_KEYS)]} if _KEYS else {}
        chain = _CHAINS[n % len(_CHAINS)] if _CHAINS else ""
        self.tx_path = f"/transactions?chain_id={chain}&limit=25" if chain else "/transactions?limit=25"
        self.snapshot_path = f"/dashboard/snapshot?chain_id={chain}" if chain else "/dashboard/snapshot"

    def _get(self, path: str, name: str, key: str) -> None:
        retry_after_s = 0.0
        with self.client.get(path, name=name, headers=self.headers, catch_response=True) as resp:
            if resp.status_code == 429:
                resp.request_meta["name"] = name + RATE_LIMITED
                resp.success()
                try:
                    retry_after_s = float(resp.headers.get("retry-after") or 1)
                except ValueError:
                    retry_after_s = 1.0
            elif resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
            elif not (resp.content or b"").startswith(b'{"%s"' % key.encode()):
                # A prefix check on bytes: decoding 20 kB bodies to text would cost the load generator more
                # CPU than the check is worth on a 2-core machine it shares with the server.
                resp.failure(f"body does not start with {key!r}")
            else:
                resp.success()
        if retry_after_s:
            gevent.sleep(min(retry_after_s, 60.0))  # what the gateway asked for (a greenlet sleep)

    @task(_TX_WEIGHT)
    def transactions(self) -> None:
        self._get(self.tx_path, "/transactions", "transactions")

    @task(_SNAPSHOT_WEIGHT)
    def snapshot(self) -> None:
        self._get(self.snapshot_path, "/dashboard/snapshot", "chains")


@events.quitting.add_listener
def explain_rate_limiting(environment: Any, **_kwargs: Any) -> None:
    """Says why requests were rate limited and what to change, once, at the end of the run."""
    stats = environment.stats
    limited = sum(e.num_requests for (name, _), e in stats.entries.items() if name.endswith(RATE_LIMITED))
    if not limited:
        return
    total = stats.total.num_requests
    log.warning(
        "%d of %d requests (%.1f%%) were rate limited (HTTP 429, counted in the '...%s' rows, not as failures; "
        "each user waited the Retry-After it was given). gatewayd allows --rate-limit-rps per API key, or per "
        "client address when auth is off, so keyless users on one machine share one bucket. Give each user its own "
        "key (MEMPULSE_LOADTEST_API_KEYS=k1,k2,... listed in gatewayd's --api-keys-file), raise gatewayd's "
        "--rate-limit-rps (0 = off), or run scripts/loadtest_rest (its own stack, one key per user).",
        limited, total, 100.0 * limited / max(total, 1), RATE_LIMITED)
