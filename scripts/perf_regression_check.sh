#!/usr/bin/env bash
# Performance regression gate: a fresh run compared with the committed budget (scripts/perf_budget.json).
#
#   ./scripts/perf_regression_check.sh --short   # CI mode, about 5 minutes on 2 cores (includes a 2-min soak)
#   ./scripts/perf_regression_check.sh --short --soak-from DIR   # the 2-min soak already ran into DIR (scripts/test
#                                                                # runs it beside pytest): check its artifact
#   ./scripts/perf_regression_check.sh --full    # checks the full artifacts of perf_tx_pipeline_baseline.sh
#
# --short runs every benchmark in its short mode into artifacts/perf/check/ (the full artifacts behind the
# README stay untouched) and checks them with the budget's "short" rules: ratios measured in the same run
# (pipeline/naive, full path/floor, gRPC/in-process, mempulse/web3.py CPU per tx) wherever possible, absolute times only with wide
# margins, SLOs (drop ratio < 0.5%, p99 ingest-to-visible < 700 ms). --full checks artifacts/perf/ with the
# "full" rules (run ./scripts/perf_tx_pipeline_baseline.sh first). Exit 1 on a regression, 2 on missing
# results.
source "$(dirname "$0")/_env.sh"
setup_all bench  # the rate sweep compares with a web3.py loop (the [bench] extras)
cd "$MEMPULSE_ROOT"

MODE=short
SOAK_FROM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --short) MODE=short ;;
    --full) MODE=full ;;
    --soak-from) [ $# -ge 2 ] || die "--soak-from needs a directory"; SOAK_FROM="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (use --short [--soak-from DIR] or --full)" ;;
  esac
  shift
done

if [ "$MODE" = full ]; then
  exec python -m scripts.bench.budget --mode full --dir artifacts/perf
fi

OUT=artifacts/perf/check
rm -rf "$OUT"; mkdir -p "$OUT"
run() {  # run MODULE ARGS... (skipped with a note when another owner's module is not there yet)
  local module="$1"; shift
  if [ ! -f "${module//.//}.py" ]; then echo "== ${module} not present, skipped"; return 0; fi
  echo "== python -m $module $*"
  local started=$SECONDS
  python -m "$module" "$@" || echo "!! $module exited with status $? (the budget check reports what is missing)"
  echo "== took $((SECONDS - started)) s"
}
# the gate checks the proxy ratio and the direct drop ratio: the naive loop without the proxy (a figure of the full
# run only) is left out
run scripts.bench.ingest_bench --short --phases ingestd_direct,ingestd_proxy,naive_proxy --out-dir "$OUT"
run scripts.bench.rate_sweep --short --out-dir "$OUT"
run scripts.bench.processd_bench --short --tx 15000 --out-dir "$OUT" --out-name processd_short
run scripts.bench.pipeline_bench --mode short --out-dir "$OUT"
run scripts.bench.grpc_boundary --mode short --out-dir "$OUT"
if [ -n "$SOAK_FROM" ]; then  # a missing artifact (the soak failed to write one) is reported by the budget check
  echo "== soak: the artifact of the run in $SOAK_FROM"; cp "$SOAK_FROM"/soak_short.json "$OUT"/ 2>/dev/null || true
else
  run scripts.bench.soak --minutes 2 --out-dir "$OUT"
fi
run scripts.bench.rest_cpu --short --out-dir "$OUT" --out-name rest_cpu_short
run scripts.bench.sse_fanout --short --out-dir "$OUT" --out-name sse_fanout_short
python -m scripts.bench.budget --mode short --dir "$OUT"
