"""Calibration server for the REST load test: a bare Sanic app answering ``/transactions`` and
``/dashboard/snapshot`` with fixed bytes (captured from the real gateway), no auth, no gRPC, no parsing.

Run on the same machine, under the same Locust load and at the same time of day as gatewayd, it measures
what ANY single-process Sanic app can serve there, so gatewayd's figures can be read as a fraction of the
machine's ceiling (the machine's 2 cores are shared with other work).

    python loadtests/sanic_baseline.py PORT TRANSACTIONS_BODY_FILE SNAPSHOT_BODY_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse


def main() -> None:
    port, tx_body, snap_body = int(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
    app = Sanic("mempulse_sanic_baseline", configure_logging=False)
    app.config.AUTO_EXTEND = False

    async def transactions(request: Request) -> HTTPResponse:
        return HTTPResponse(tx_body, content_type="application/json")

    async def snapshot(request: Request) -> HTTPResponse:
        return HTTPResponse(snap_body, content_type="application/json")

    app.add_route(transactions, "/transactions", name="transactions")
    app.add_route(snapshot, "/dashboard/snapshot", name="snapshot")
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    main()
