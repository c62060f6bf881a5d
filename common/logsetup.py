"""Logging setup shared by the daemons' ``__main__`` modules (never called at import time)."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    """Configures root logging once: one line per record, level from ``MEMPULSE_LOG_LEVEL`` (INFO)."""
    chosen = (level or os.environ.get("MEMPULSE_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, chosen, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
