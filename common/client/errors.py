"""The client's errors: one root (:class:`ClientError`, under ``common.errors.MempulseError``) and a class per
way a call can fail, each saying whether the same call may succeed later (``retriable``).

gRPC status codes map to them in :func:`from_rpc_error`; a ``grpc.RpcError`` never reaches the caller.
"""

from __future__ import annotations

import grpc

from common.errors import MempulseError


class ClientError(MempulseError):
    """A call of :class:`common.client.Client` failed.

    ``method`` is the Query RPC (``"GetSnapshot"``, ``"SubscribeEvents"``, ...) or "" for a client-side check,
    ``code`` the gRPC status name ("" when none), ``retriable`` whether trying again later may help.
    """

    retriable = False

    def __init__(self, message: str, *, method: str = "", code: str = "", retriable: bool | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.code = code
        if retriable is not None:
            self.retriable = retriable


class InvalidArgumentError(ClientError, ValueError):
    """An argument is malformed or out of range (checked by the client, or refused by processd)."""


class NotFoundError(ClientError, LookupError):
    """processd does not hold what was asked for (an unknown transaction hash)."""


class UnavailableError(ClientError, ConnectionError):
    """processd could not be reached or refused for now (down, starting, overloaded), after the retries."""

    retriable = True


class DeadlineExceededError(ClientError, TimeoutError):
    """processd did not answer within the call's deadline."""

    retriable = True


class ClientClosedError(ClientError):
    """The client is not started, or was stopped."""


#: Status codes after which the same call may succeed later.
RETRIABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,  # an HTTP/2 RST_STREAM of a dying server surfaces as INTERNAL
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,  # a server that shuts down cancels its streams
})


def from_rpc_error(method: str, err: grpc.RpcError) -> ClientError:
    """The client error a failed gRPC call of ``method`` maps to."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or ""
    name = code.name if code is not None else "UNKNOWN"
    text = f"{method}: {name}: {details[:300]}"
    if code is grpc.StatusCode.INVALID_ARGUMENT or code is grpc.StatusCode.OUT_OF_RANGE:
        return InvalidArgumentError(text, method=method, code=name)
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFoundError(text, method=method, code=name)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(text, method=method, code=name)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return UnavailableError(text, method=method, code=name)
    return ClientError(text, method=method, code=name, retriable=code in RETRIABLE_CODES)
