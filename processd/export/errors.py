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


class ColumnsMismatch(SchemaMismatch):
    """The server's columns for an INSERT are not the ones the columns were built for (processd.export.native),
    or a value does not fit its column's type: no retry helps."""


class FeedAborted(SinkUnavailable):
    """The exporter gave up a batch while its INSERT was being fed (processd.export.stream): the INSERT fails and
    stores nothing; the connection is dropped."""


class MalformedPage(ExportError):
    """processd sent a ScanEvents page that protobuf cannot parse: reading it again gives the same bytes, so no
    retry helps (a processd bug to report)."""
