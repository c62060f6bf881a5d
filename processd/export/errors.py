"""The exporter's exceptions, under :class:`common.errors.MempulseError` (``retriable`` as everywhere)."""

from __future__ import annotations

from common.errors import MempulseError


class ExportError(MempulseError):
    """An error the exporter raises on purpose."""


class SinkUnavailable(ExportError):
    """ClickHouse could not be reached or refused a statement for a reason that may pass (restart, network)."""

    retriable = True


class SourceUnavailable(ExportError):
    """processd's Query service could not be reached, or cut the stream (restart, slow subscriber)."""

    retriable = True


class SchemaMismatch(ExportError):
    """The ClickHouse tables exist but do not look like ours (another schema version): no retry helps."""


class MapperUnavailable(ExportError):
    """A mapping worker process died (killed, out of memory): the session ends, the next starts new workers."""

    retriable = True
