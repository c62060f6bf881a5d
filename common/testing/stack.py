"""Supervisor of a whole local mempulse stack: anvil chains, processd, ingestd, gatewayd and replay traffic.

Everything runs as real subprocesses on free loopback ports, each daemon's output captured to
``<log_dir>/<name>.log``. The demo, the end-to-end tests, benchmarks, soak and reliability scripts all build
on it::

    from common.testing.stack import ChainSpec, Stack, StackConfig

    config = StackConfig(chains=(ChainSpec(1, rate_tx_s=50), ChainSpec(137, rate_tx_s=50)))
    with Stack(config) as stack:                   # start() waits until every part is ready
        print(stack.gateway_url)                   # http://127.0.0.1:<port>
        stack.get_json("/transactions", chain_id=137)
        stack.process("processd").kill()           # SIGKILL; .start() restarts it on the same port
    # stop(): generators, ingestd, gatewayd, processd, anvils - SIGTERM, then SIGKILL; idempotent

``processd_shards=((1,), (137,))`` runs processd split by chain (docs/architecture.md#beyond-one-machine): one
processd per group (``processd-0``, ``processd-1``, each with its own LMDB under ``data_dir/shard-<i>``), one
ingestd per group feeding its processd (``ingestd-shard<i>``), and one gatewayd in front of all of them.

Start order is anvils, processd, gatewayd, ingestd, traffic generators (so nothing is sent before ingestd
has subscribed); stop order is the reverse, so ingestd's last batches are acked before processd stops.
Parts can be left out (``ingestd=False``, ``gatewayd=False``, rate 0 = no generator) for narrower tests,
and ``start_generators()`` may be called later (benchmarks start the clock themselves).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from common.errors import MempulseError
from common.testing.anvil import AnvilNode
from common.testing.netutil import free_port, port_in_use
from common.testing.process import ManagedProcess, ProcessError, child_env, python_module_argv
from common.testing.swaps import SwapMaker
from common.testing.traffic import AcceptedCallback, TrafficGenerator, TrafficStats
from common.testing.uniswap import World, deploy_world

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


class StackError(MempulseError, RuntimeError):
    """The stack could not start (a part exited or did not become ready), or a wait timed out."""


@dataclass(frozen=True)
class ChainSpec:
    """One local chain: an anvil node with this chain id, and replay traffic at ``rate_tx_s`` (0 = none).
    ``block_time_s`` > 0 mines a block every that many seconds (0: ``--no-mining``, what tests and benchmarks use
    unless they ask for mining); ``replace_share`` is the share of the generator's senders whose transactions are
    replaced (speed-ups and cancels, ``common.testing.traffic``)."""

    chain_id: int
    rate_tx_s: float = 0.0
    anvil_args: tuple[str, ...] = ()
    block_time_s: float = 0.0
    replace_share: float = 0.0


@dataclass(frozen=True)
class StackConfig:
    """What to run. Ports left at 0 are picked free at start; paths left at None are temp dirs."""

    chains: tuple[ChainSpec, ...] = (ChainSpec(1), ChainSpec(137))
    host: str = "127.0.0.1"
    #: processd's LMDB directory; None = a temp dir removed by stop().
    data_dir: Path | None = None
    #: Where each part's log goes (``processd.log`` ...); None = a temp dir removed by a clean stop().
    log_dir: Path | None = None
    processd: bool = True
    ingestd: bool = True
    gatewayd: bool = True
    #: One ingestd for all chains (the default, like the demo), or one ingestd per chain.
    ingestd_per_chain: bool = False
    processd_port: int = 0
    gateway_port: int = 0
    #: processd split by chain: one group of chain ids per processd shard (every chain in exactly one group);
    #: () = one processd for every chain (the default).
    processd_shards: tuple[tuple[int, ...], ...] = ()
    #: Give every daemon a Prometheus ``--metrics-port`` (free port; see ``Stack.metrics_ports``).
    metrics: bool = True
    #: Extra command-line arguments per daemon.
    processd_args: tuple[str, ...] = ()
    ingestd_args: tuple[str, ...] = ()
    gatewayd_args: tuple[str, ...] = ()
    #: Extra environment for the daemons (e.g. ``{"MEMPULSE_LOG_LEVEL": "DEBUG"}``).
    env: Mapping[str, str] = field(default_factory=dict)
    #: Replay batch size (JSON-RPC batch of eth_sendTransaction).
    replay_batch_size: int = 50
    #: Extra gas limit added to every replayed call so this stack's hashes differ from an earlier run's on a
    #: kept data dir (fresh anvils repeat nonces); None = random per Stack, 0 = the fixture's exact gas.
    traffic_gas_salt: int | None = None
    #: Bound of each anvil's pending pool: after this many replayed transactions the generator empties it
    #: (anvil slows down as its pool grows; see common.testing.traffic). 0 = never.
    anvil_max_pending: int = 2000
    #: Deploy the local Uniswap V2 world (common/testing/uniswap.py) on every anvil before ingestd starts (so its
    #: setup transactions are mined, not seen as pending); ``Stack.worlds`` holds the addresses.
    uniswap: bool = False
    #: Share (0..1) of each generator's sends that are router swaps on that world (needs ``uniswap``).
    swap_share: float = 0.0
    #: Run ingestd's pool state path (--pool-state on) with every world's routers (needs ``uniswap``).
    pool_state: bool = False
    #: Each generator mines a block this often (seconds; 0 = never: the pools then move only when a test mines).
    mine_interval_s: float = 0.0
    #: Start the traffic generators in start() (False: call start_generators() yourself).
    start_traffic: bool = True
    ready_timeout_s: float = 45.0
    stop_timeout_s: float = 15.0


class Stack:
    """Starts, observes and stops a local stack described by a :class:`StackConfig`.

    Attributes after ``start()``: ``anvils`` (chain id -> :class:`AnvilNode`), ``generators`` (chain id ->
    :class:`TrafficGenerator`), ``processes`` (name -> :class:`ManagedProcess`: ``processd``, ``gatewayd``,
    ``ingestd`` or ``ingestd-<chain id>``), ``metrics_ports`` (name -> port), ``data_dir``, ``log_dir``.
    """

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.anvils: dict[int, AnvilNode] = {}
        self.generators: dict[int, TrafficGenerator] = {}
        #: chain id -> the deployed Uniswap V2 world (``StackConfig.uniswap``).
        self.worlds: dict[int, World] = {}
        self.processes: dict[str, ManagedProcess] = {}
        self.metrics_ports: dict[str, int] = {}
        #: name -> exit status of each daemon at the last stop() (0 = clean exit on SIGTERM).
        self.exit_statuses: dict[str, int | None] = {}
        self.processd_port = self.config.processd_port
        #: gRPC ``HOST:PORT`` of each processd shard, in ``processd_shards`` order (empty without shards).
        self.shard_addrs: list[str] = []
        self.gateway_port = self.config.gateway_port
        self._temp_dirs: list[Path] = []
        self.data_dir: Path = Path()
        self.log_dir: Path = Path()
        self._started = False
        self._failed = False
        self._http: httpx.Client | None = None
        salt = self.config.traffic_gas_salt
        self.traffic_gas_salt = random.randrange(1, 10_000) if salt is None else salt

    # ---- addresses -------------------------------------------------------------------------------------
    @property
    def processd_addr(self) -> str:
        """``HOST:PORT`` of processd's gRPC server."""
        return f"{self.config.host}:{self.processd_port}"

    @property
    def gateway_url(self) -> str:
        """Base URL of gatewayd, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.config.host}:{self.gateway_port}"

    def process(self, name: str) -> ManagedProcess:
        """The supervised process called ``name`` (KeyError lists the known names)."""
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"no process {name!r} in this stack; have {sorted(self.processes)}") from None

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Stack:
        """Starts every configured part and waits until each is ready; on failure stops what started and
        raises :class:`StackError` whose message includes the failing part's log tail."""
        if self._started:
            return self
        self._started = True
        try:
            self._prepare_dirs()
            self._start_anvils()
            if self.config.processd:
                self._start_processd()
            if self.config.gatewayd:
                self._start_gatewayd()
            if self.config.ingestd:
                self._start_ingestd()
            if self.config.start_traffic:
                self.start_generators()
        except BaseException as exc:
            self._failed = True
            self.stop()
            if isinstance(exc, ProcessError | RuntimeError) and not isinstance(exc, StackError):
                raise StackError(str(exc)) from exc
            raise
        return self

    def stop(self) -> None:
        """Stops generators, ingestd, gatewayd, processd and anvils, in that order. Idempotent; never raises
        for a part that already died. Temp dirs are removed (logs are kept when a part failed)."""
        self.stop_generators()
        for name in sorted(self.processes, key=_stop_rank):
            try:
                if self.processes[name].starts:
                    self.exit_statuses[name] = self.processes[name].stop(self.config.stop_timeout_s)
            except OSError as exc:  # pragma: no cover - a process we can no longer signal
                log.warning("stopping %s: %s", name, exc)
        for node in self.anvils.values():
            node.stop()
        if self._http is not None:
            self._http.close()
            self._http = None
        keep_logs = self._failed or any(status not in (0, None) for status in self.exit_statuses.values())
        for path in self._temp_dirs:
            if keep_logs and self.log_dir.is_relative_to(path):
                log.warning("keeping logs of a failed stack in %s", path)
                continue
            shutil.rmtree(path, ignore_errors=True)
        self._temp_dirs.clear()
        self._started = False

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._failed = True
        self.stop()

    # ---- traffic ---------------------------------------------------------------------------------------
    def start_generators(self, rate_tx_s: float | None = None, on_accepted: AcceptedCallback | None = None,
                         duration_s: float | None = None) -> None:
        """Starts one replay generator per chain with a positive rate (``rate_tx_s`` overrides the specs'
        rates, applying to every chain)."""
        for offset, spec in enumerate(self.config.chains):
            rate = spec.rate_tx_s if rate_tx_s is None else rate_tx_s
            if rate <= 0 or (spec.chain_id in self.generators and self.generators[spec.chain_id].running):
                continue
            world = self.worlds.get(spec.chain_id)
            swaps = SwapMaker(world, seed=spec.chain_id) if world is not None else None
            gen = TrafficGenerator(self.anvils[spec.chain_id].http_url, rate, chain_id=spec.chain_id,
                                   batch_size=self.config.replay_batch_size, on_accepted=on_accepted,
                                   start_offset=offset * 997, duration_s=duration_s,
                                   gas_salt=self.traffic_gas_salt, replace_share=spec.replace_share,
                                   # a mining chain empties its own pool; a reset would drop what it was to mine
                                   max_pending=0 if spec.block_time_s > 0 else self.config.anvil_max_pending,
                                   swaps=swaps, swap_share=self.config.swap_share if swaps else 0.0,
                                   mine_interval_s=self.config.mine_interval_s)
            self.generators[spec.chain_id] = gen.start()

    def stop_generators(self) -> None:
        """Stops every traffic generator (idempotent)."""
        for gen in self.generators.values():
            gen.stop()

    def traffic_stats(self) -> dict[int, TrafficStats]:
        """Per chain id, the counters of its generator."""
        return {cid: gen.stats() for cid, gen in self.generators.items()}

    # ---- observation -----------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> httpx.Response:
        """GET ``path`` on gatewayd with query ``params`` (None values are left out)."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.gateway_url, timeout=10.0)
        return self._http.get(path, params={k: v for k, v in params.items() if v is not None})

    def get_json(self, path: str, **params: Any) -> Any:
        """GET ``path`` on gatewayd and return the decoded JSON; raises on a non-2xx answer."""
        resp = self.get(path, **params)
        resp.raise_for_status()
        return resp.json()

    def check_alive(self) -> None:
        """Raises :class:`StackError` naming every daemon that has exited, with its log tail."""
        dead = [p for p in self.processes.values() if p.starts and not p.alive]
        if dead:
            self._failed = True
            raise StackError("; ".join(f"{p.name} exited with status {p.returncode}; log {p.log_path}:\n"
                                       f"{p.log_tail()}" for p in dead))

    def wait_for(self, predicate: Callable[[], T | None], timeout_s: float, what: str,
                 interval_s: float = 0.2, require_alive: bool = True) -> T:
        """Polls ``predicate`` until it returns a truthy value (returned), checking meanwhile that every
        daemon is alive (unless ``require_alive`` is False); raises :class:`StackError` saying ``what`` was
        awaited on timeout. HTTP errors, ValueError and KeyError from the predicate mean "not yet"."""
        deadline = time.monotonic() + timeout_s
        last_exc: Exception | None = None
        while True:
            if require_alive:
                self.check_alive()
            try:
                value = predicate()
                if value:
                    return value
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last_exc = exc
            if time.monotonic() > deadline:
                suffix = f" (last error: {last_exc})" if last_exc else ""
                raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}{suffix}")
            time.sleep(interval_s)

    # ---- internals -------------------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        root: Path | None = None
        if self.config.log_dir is None or self.config.data_dir is None:
            root = Path(tempfile.mkdtemp(prefix="mempulse-stack-"))
            self._temp_dirs.append(root)
        self.data_dir = self.config.data_dir or Path(str(root)) / "data"
        self.log_dir = self.config.log_dir or Path(str(root)) / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _start_anvils(self) -> None:
        seen: set[int] = set()
        for spec in self.config.chains:
            if spec.chain_id in seen:
                raise StackError(f"chain id {spec.chain_id} configured twice")
            seen.add(spec.chain_id)
            node = AnvilNode(chain_id=spec.chain_id, host=self.config.host, extra_args=spec.anvil_args,
                             block_time_s=spec.block_time_s)
            self.anvils[spec.chain_id] = node
            node.start()
            log.info("anvil chain %s ready on %s", spec.chain_id, node.http_url)
            if self.config.uniswap:
                self.worlds[spec.chain_id] = deploy_world(node.http_url, spec.chain_id)

    def _metrics_args(self, name: str) -> list[str]:
        if not self.config.metrics:
            return []
        port = free_port(self.config.host)
        self.metrics_ports[name] = port
        return ["--metrics-port", str(port)]

    def _add(self, name: str, module: str, args: Sequence[str], **kwargs: Any) -> ManagedProcess:
        proc = ManagedProcess(name, python_module_argv(module, *args), self.log_dir / f"{name}.log",
                              env=child_env(self.config.env), cwd=REPO_ROOT,
                              ready_timeout_s=self.config.ready_timeout_s, stop_timeout_s=self.config.stop_timeout_s,
                              **kwargs)
        self.processes[name] = proc
        return proc

    def _start_processd(self) -> None:
        host = self.config.host
        if not self.processd_port:
            self.processd_port = free_port(host)
        elif port_in_use(host, self.processd_port):
            raise StackError(f"processd port {host}:{self.processd_port} is already in use")
        if self.config.processd_shards:
            self._start_shards()
            return
        args = ["--data-dir", str(self.data_dir), "--listen", self.processd_addr,
                *self._metrics_args("processd"), *self._venues_args(), *self.config.processd_args]
        self._add("processd", "processd", args, ready=lambda: grpc_serving(self.processd_addr)).start()
        log.info("processd ready on %s (data %s)", self.processd_addr, self.data_dir)

    def _venues_args(self) -> list[str]:
        """processd's ``--valuation-venues-file``: the deployed worlds' factories, routers and WETH (written into the
        log dir), so processd values the swaps on them (StackConfig.uniswap)."""
        if not self.worlds:
            return []
        path = self.log_dir / "valuation-venues.json"
        path.write_text(json.dumps([v for world in self.worlds.values() for v in world.venues()], indent=1))
        return ["--valuation-venues-file", str(path)]

    def _start_shards(self) -> None:
        """One processd per chain group, each with its own LMDB (``processd-<i>``, ``data_dir/shard-<i>``)."""
        groups = self.config.processd_shards
        configured = sorted(spec.chain_id for spec in self.config.chains)
        if sorted(c for group in groups for c in group) != configured:
            raise StackError(f"processd_shards {groups} must hold every chain {configured} exactly once")
        for i in range(len(groups)):
            addr = f"{self.config.host}:{free_port(self.config.host)}"
            self.shard_addrs.append(addr)
            data = self.data_dir / f"shard-{i}"
            args = ["--data-dir", str(data), "--listen", addr, *self._metrics_args(f"processd-{i}"),
                    *self._venues_args(), *self.config.processd_args]
            self._add(f"processd-{i}", "processd", args, ready=functools.partial(grpc_serving, addr)).start()
            log.info("processd-%d ready on %s for chains %s (data %s)", i, addr, groups[i], data)
        self.processd_port = int(self.shard_addrs[0].rsplit(":", 1)[1])

    def _processd_flags(self) -> list[str]:
        """gatewayd's ``--processd`` flags: the one processd, or one ``CHAINS=HOST:PORT`` per shard."""
        if not self.shard_addrs:
            return ["--processd", self.processd_addr]
        return [arg for group, addr in zip(self.config.processd_shards, self.shard_addrs, strict=True)
                for arg in ("--processd", f"{','.join(map(str, group))}={addr}")]

    def _start_gatewayd(self) -> None:
        host = self.config.host
        if not self.gateway_port:
            self.gateway_port = free_port(host)
        elif port_in_use(host, self.gateway_port):
            raise StackError(f"gateway port {host}:{self.gateway_port} is already in use")
        args = ["--listen", f"{host}:{self.gateway_port}", *self._processd_flags(), *self.config.gatewayd_args]
        self._add("gatewayd", "gatewayd", args, ready=lambda: _http_ok(f"{self.gateway_url}/healthz")).start()
        log.info("gatewayd ready on %s", self.gateway_url)

    def _start_ingestd(self) -> None:
        groups: list[tuple[str, tuple[ChainSpec, ...], str]]
        if self.shard_addrs:  # one ingestd per shard (per node), feeding its processd
            groups = [(f"ingestd-shard{i}", tuple(s for s in self.config.chains if s.chain_id in group), addr)
                      for i, (group, addr) in enumerate(zip(self.config.processd_shards, self.shard_addrs,
                                                            strict=True))]
        elif self.config.ingestd_per_chain:
            groups = [(f"ingestd-{spec.chain_id}", (spec,), self.processd_addr) for spec in self.config.chains]
        else:
            groups = [("ingestd", self.config.chains, self.processd_addr)]
        for name, specs, processd_addr in groups:
            args: list[str] = []
            for spec in specs:
                node = self.anvils[spec.chain_id]
                args += ["--chain", f"{spec.chain_id}={node.ws_url},{node.http_url}"]
            args += ["--processd", processd_addr, *self._pool_state_args(specs)]
            metrics = self._metrics_args(name)
            args += [*metrics, *self.config.ingestd_args]
            port = self.metrics_ports.get(name)
            # Ready = every WS source subscribed, so traffic sent after start() returns is never missed.
            ready = functools.partial(_sources_connected, f"http://{self.config.host}:{port}/metrics",
                                      len(specs)) if port else None
            self._add(name, "ingestd", args, ready=ready).start()
            log.info("%s ready for chains %s", name, ", ".join(str(s.chain_id) for s in specs))


    def _pool_state_args(self, specs: Sequence[ChainSpec]) -> list[str]:
        """ingestd's --pool-state flags for the worlds of ``specs`` (StackConfig.pool_state)."""
        worlds = [self.worlds[s.chain_id] for s in specs if s.chain_id in self.worlds]
        if not self.config.pool_state or not worlds:
            return []
        args = ["--pool-state", "on"]
        for world in worlds:
            init_hash = "0x" + world.pair_init_code_hash.hex()
            for dex in world.dexes.values():
                args += ["--v2-router", f"{world.chain_id}:{dex.router}:{dex.factory}:{init_hash}"]
        return args


def _stop_rank(name: str) -> int:
    return 2 if name.startswith("processd") else {"gatewayd": 1}.get(name, 0)  # ingestd* first, processd* last


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


def _sources_connected(metrics_url: str, expected: int) -> bool:
    """True when at least ``expected`` ingestd WS sources are subscribed (``mempulse_ingestd_source_connected``)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=1.0).text
    connected = sum(1 for family in text_string_to_metric_families(text)
                    if family.name == "mempulse_ingestd_source_connected"
                    for sample in family.samples if sample.value >= 1)
    return connected >= expected


def grpc_serving(addr: str) -> bool:
    """True once processd answers grpc.health.v1 Check with SERVING (or has no health service); False while it
    does not answer, or answers anything else (a polling predicate: it never raises)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # no health service: the port answering will do
                return True
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
