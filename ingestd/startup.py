"""Start-up checks: every configured endpoint must answer ``eth_chainId`` with the configured chain id.

An answer is read up to ``max_response_bytes`` only (HTTP: streamed and abandoned past it; WebSocket: the
frame size limit), so a misbehaving endpoint fails the check instead of filling memory.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
from websockets.asyncio.client import connect

from ingestd.config import ChainConfig, redact_url
from ingestd.errors import IngestdError
from ingestd.fetcher import DEFAULT_MAX_RESPONSE_BYTES, RPC_HEADERS, ResponseTooLargeError, read_capped

_REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'


class EndpointCheckError(IngestdError):
    """An endpoint is unreachable or serves another chain; the message is one line for the user."""

    retriable = False


def _parse_chain_id(raw: bytes | str) -> int:
    doc = orjson.loads(raw)
    return int(doc["result"], 16)


async def chain_id_of(url: str, timeout_s: float, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> int:
    """The chain id an http(s) or ws(s) endpoint reports; raises on any failure."""
    if url.startswith(("ws://", "wss://")):
        async with connect(url, open_timeout=timeout_s, compression=None, max_size=max_response_bytes) as ws:
            await ws.send(_REQUEST, text=True)
            return _parse_chain_id(await asyncio.wait_for(ws.recv(decode=False), timeout_s))
    async with httpx.AsyncClient(timeout=timeout_s) as client, \
            client.stream("POST", url, content=_REQUEST, headers=RPC_HEADERS) as resp:
        resp.raise_for_status()
        try:
            return _parse_chain_id(await read_capped(resp, max_response_bytes))
        except ResponseTooLargeError as exc:
            raise ResponseTooLargeError(f"answer larger than {max_response_bytes} bytes "
                                        f"(fetch_max_response_bytes; {exc}), not read further") from None


async def check_endpoint(chain: ChainConfig, url: str, timeout_s: float,
                         max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
    """Raises EndpointCheckError naming the endpoint, the expected and the actual chain id."""
    expected = f"expected chain id {chain.chain_id} ({chain.name})"
    try:
        actual = await asyncio.wait_for(chain_id_of(url, timeout_s, max_response_bytes), timeout_s * 2)
    except Exception as exc:  # any failure means: not usable
        reason = type(exc).__name__ + (f": {str(exc)[:120]}" if str(exc) else "")
        raise EndpointCheckError(f"endpoint {redact_url(url)} is unreachable or not a JSON-RPC node ({reason}); "
                                 f"{expected}, actual chain id unknown") from None
    if actual != chain.chain_id:
        raise EndpointCheckError(f"endpoint {redact_url(url)} serves the wrong chain: {expected}, "
                                 f"actual chain id {actual}")


async def check_all(chains: tuple[ChainConfig, ...], timeout_s: float,
                    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
    """Checks every source and fetch endpoint concurrently; raises the first error in configuration order."""
    checks = [(chain, url) for chain in chains
              for url in [*(s.url for s in chain.sources), *chain.fetch_urls]]
    results = await asyncio.gather(*(check_endpoint(c, u, timeout_s, max_response_bytes) for c, u in checks),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
