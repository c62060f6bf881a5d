"""Per-chain ingest workers (one isolated worker per configured chain)."""
