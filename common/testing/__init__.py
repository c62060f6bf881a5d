"""Dev tooling: what the tests, the demo, the benchmarks and the load tests run against the daemons, never the daemons
themselves. A supervisor for a whole stack (``stack``, ``process``), anvil nodes (``anvil``), traffic from the
bundled real mainnet calls (``fixtures``, ``replay``, ``traffic``, ``generate``), synthetic envelopes and a gRPC
ingest client (``synth``, ``ingest_push``), the replay digest that compares revisions of processd
(``replay_input``, ``replay_digest``), a fault-injecting JSON-RPC/WebSocket proxy (``faultproxy``), the demo
(``demo``) and small helpers (``netutil``).

No daemon and no runtime module of ``common`` imports this package, and it is not in the built wheel
(pyproject.toml excludes it; tests/test_packaging.py checks both): it is used from the source tree, with the
editable install (``pip install -e .``) that ``scripts/demo`` and ``scripts/test`` make.
"""
