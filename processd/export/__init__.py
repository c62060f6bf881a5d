"""mempulse-export: tails processd's event log over the Query service and writes it into ClickHouse.

It imports nothing from processd but this package (only ``common``), so it runs on any machine that reaches
processd's gRPC port and a ClickHouse server (tests/export/test_isolation.py holds that). Layout:
``config`` (knobs), ``schema`` (DDL), ``mapper`` (pure Event -> row functions), ``source`` (ScanEvents
catch-up, then SubscribeEvents), ``sink`` (ClickHouse: resume point, batched inserts, the cursor),
``exporter`` (the lifecycle and the tail loop). docs/export.md describes the tables and the guarantees.
"""
