#!/usr/bin/env bash
# The full benchmark set behind the README's performance table. Writes artifacts/perf/<name>.json and
# prints the table (python -m scripts.bench.render_table) at the end.
#
#   ./scripts/perf_tx_pipeline_baseline.sh            # everything, full mode (about 15-25 min on 2 cores)
#   ./scripts/perf_tx_pipeline_baseline.sh --only pipeline,grpc_boundary
#
# In one invocation, side by side so that ratios hold on a noisy machine:
#   ingest_bench     ingestd pipeline vs the naive loop, against anvil directly and through a 30 ms proxy
#   processd_bench   processd full path vs the bare floor over gRPC into LMDB; snapshot/scan at 10k..1M events
#   analysis_bench   decoding/feature/ranking throughput on the real fixture calls
#   pipeline         end to end on real anvil nodes: stepped rates, drop ratio, ingest-to-visible latency, RSS
#   grpc_boundary    the same ingest->process path in one process vs across gRPC, by batch size
#   loadtest_rest    gatewayd's REST routes under Locust, with ingest running (gatewayd's module)
#   loadtest         both Locust files headless; the gRPC ingest figures come from here
#   lifecycle        processd with the transaction lifecycle vs blocks without it vs no blocks (CPU, tx/s)
#   lifecycle_writer the same three in the single writer's thread alone
# Benchmarks another module owns are skipped with a note when they are not there yet.
source "$(dirname "$0")/_env.sh"
setup_all bench  # the rate sweep compares with a web3.py loop (the [bench] extras)
cd "$MEMPULSE_ROOT"

ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=",$2,"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (use --only NAME[,NAME])" ;;
  esac
done

failed=()
bench() {  # bench NAME MODULE [ARGS...]
  local name="$1" module="$2"; shift 2
  if [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]]; then return 0; fi
  if [ ! -f "${module//.//}.py" ]; then echo "== $name: ${module} not present, skipped"; return 0; fi
  echo "== $name: python -m $module $*"
  local started=$SECONDS
  if ! python -m "$module" "$@"; then failed+=("$name"); echo "!! $name failed"; fi
  echo "== $name took $((SECONDS - started)) s"
}

bench ingest scripts.bench.ingest_bench
bench rate_sweep scripts.bench.rate_sweep
bench processd scripts.bench.processd_bench
bench analysis scripts.bench.analysis_bench
bench pipeline scripts.bench.pipeline_bench --mode full
bench grpc_boundary scripts.bench.grpc_boundary --mode full
bench loadtest_rest loadtests.loadtest_rest
bench loadtest scripts.bench.loadtest
bench rest_cpu scripts.bench.rest_cpu
bench sse_fanout scripts.bench.sse_fanout
bench lifecycle scripts.bench.lifecycle_bench --tx 100000 --rounds 3  # (rounds of 20,000 last under a second: noise)
bench lifecycle_writer scripts.bench.lifecycle_writer --rounds 3

echo "== README performance table"
python -m scripts.bench.render_table
if [ ${#failed[@]} -gt 0 ]; then die "benchmarks failed: ${failed[*]}"; fi
