# Shared setup for mempulse's scripts: sourced, not run. Creates what is missing and nothing more, at one of two
# levels (the first argument of setup_venv, setup_tools and setup_all):
#   runtime  what the daemons and the demo run on: .venv/ with `pip install -e .`, and @foundry-rs/anvil (the local
#            EVM node) from npm in .tools/. ./scripts/demo and scripts/generate ask for this.
#   dev      (the default) runtime plus the [dev] extras (pytest, ruff, mypy, locust, grpcio-tools, ...) and
#            @bufbuild/buf (protobuf lint/breaking), and, when root with apt-get, promtool and systemd-analyze (Debian's
#            `prometheus` and `systemd` packages: the deploy kit's checks) and clickhouse-server (the exporter's
#            tests). ./scripts/test and the bench/load/soak scripts ask for this.
#   bench    dev plus the [bench] extras: what only a benchmark compares against (web3.py, for the rate sweep's
#            plain-loop consumer) and no test imports. scripts/bench_rate_sweep and the perf gate ask for this.
# The levels share one .venv, each containing the one before: a higher setup after a lower one adds the extras,
# a lower setup after a higher one installs nothing. .venv/.mempulse-installed records
# "<sha256 of pyproject.toml> <level>"; a changed pyproject.toml installs again. Every step is idempotent, so a
# second run costs a few hash checks.
set -euo pipefail

MEMPULSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MEMPULSE_ROOT
ANVIL_NPM_VERSION="1.7.1"
BUF_NPM_VERSION="1.75.0"
# Uniswap V2's build artifacts (bytecode + ABI): common/testing/uniswap.py deploys them on the local anvils (demo,
# tests, benchmarks). Exact versions; common/testing/uniswap.py names the same ones (tests/testing/test_uniswap.py).
UNISWAP_V2_CORE_NPM_VERSION="1.0.1"
UNISWAP_V2_PERIPHERY_NPM_VERSION="1.1.0-beta.0"

die() { echo "error: $*" >&2; exit 1; }

mempulse_python() {
  local py
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

_level_rank() {  # runtime < dev < bench (anything else: 0)
  case "$1" in runtime) echo 1 ;; dev) echo 2 ;; bench) echo 3 ;; *) echo 0 ;; esac
}

_install_filter() {  # drops the installers' notices about unreachable local mirrors and already-installed packages
  # PYTHONUNBUFFERED and --line-buffered pass each line on as it comes (a pipe would hold them in 4 KiB blocks);
  # it writes to our stderr as it goes: `tee /dev/stderr` reopened a redirected stderr file with O_TRUNC, erasing
  # the lines before it and leaving NUL bytes at the start of the file.
  { grep --line-buffered -v -e "^WARNING: Location" -e "^Requirement already satisfied" || true; } >&2
}

_venv_install() {  # venv target: installs the project (editable) into the venv with uv, pip as the fallback
  # Why uv: CI sets up a clean clone on every run, and resolving, downloading and installing the ~130 packages of
  # the dev extras took pip ~90 s there and takes uv ~10 s (measured on these machines, cold caches). uv is
  # bootstrapped into the venv with pip; if that or uv fails (no wheel for the platform, a registry uv cannot
  # reach), pip installs as before. Not -q: a first install takes a while, and the installer's lines are the
  # progress.
  local venv="$1" target="$2"
  if PYTHONUNBUFFERED=1 "$venv/bin/python" -m pip install -q --disable-pip-version-check uv 2>&1 | _install_filter \
      && PYTHONUNBUFFERED=1 "$venv/bin/python" -m uv pip install --python "$venv/bin/python" -e "$target" 2>&1 \
        | _install_filter; then
    return 0
  fi
  echo "setup: uv could not install; trying pip" >&2
  PYTHONUNBUFFERED=1 "$venv/bin/python" -m pip install --disable-pip-version-check -e "$target" 2>&1 | _install_filter
}

setup_venv() {
  local level="${1:-dev}" venv="$MEMPULSE_ROOT/.venv" stamp want have target py
  case "$level" in runtime|dev|bench) ;; *) die "setup_venv: unknown level '$level' (runtime, dev or bench)";; esac
  py="$(mempulse_python)" || die "Python >= 3.11 not found: install python3.11 (or newer) and retry"
  if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating virtualenv in .venv" >&2
    "$py" -m venv "$venv" || die "could not create .venv: install the python3-venv package and retry"
  fi
  stamp="$venv/.mempulse-installed"
  # what an install is made of: the project's metadata, and the C sources pip compiles (a changed one needs a build)
  want="$( { cat "$MEMPULSE_ROOT/pyproject.toml"; cat "$MEMPULSE_ROOT"/processd/export/*.c 2>/dev/null || true; } \
    | sha256sum | cut -d' ' -f1)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  [ "$have" != "$want" ] || have="$want dev"  # a stamp from before the levels: every install was a dev one
  # each level contains the ones below it: only a request above what a (fresh) venv holds installs again
  if [ "${have% *}" = "$want" ] && [ "$(_level_rank "${have##* }")" -ge "$(_level_rank "$level")" ]; then
    export PATH="$venv/bin:$PATH"
    return 0
  fi
  if [ "$level" = bench ]; then
    target="$MEMPULSE_ROOT[dev,bench]"
    echo "setup: install -e .[dev,bench] (the dev install plus web3.py for the rate sweep's comparison loop)" >&2
  elif [ "$level" = dev ]; then
    target="$MEMPULSE_ROOT[dev]"
    echo "setup: install -e .[dev] (runtime plus test, lint and bench tools: about 110 packages)" >&2
  else
    target="$MEMPULSE_ROOT"
    echo "setup: install -e . (runtime only: about 25 packages)" >&2
  fi
  _venv_install "$venv" "$target" || die "install failed (see above); check that PyPI is reachable"
  echo "$want $level" > "$stamp"
  export PATH="$venv/bin:$PATH"
}

_npm_has() {  # package name, exact version: installed in .tools/ at that version
  grep -q "\"version\": \"$2\"" "$MEMPULSE_ROOT/.tools/node_modules/$1/package.json" 2>/dev/null
}

setup_tools() {
  local level="${1:-dev}" tools="$MEMPULSE_ROOT/.tools" packages
  case "$level" in runtime|dev|bench) ;; *) die "setup_tools: unknown level '$level' (runtime, dev or bench)";; esac
  if [ -x "$tools/node_modules/.bin/anvil" ] \
     && { [ "$level" = runtime ] || [ -x "$tools/node_modules/.bin/buf" ]; } \
     && _npm_has "@uniswap/v2-core" "$UNISWAP_V2_CORE_NPM_VERSION" \
     && _npm_has "@uniswap/v2-periphery" "$UNISWAP_V2_PERIPHERY_NPM_VERSION" \
     && "$tools/node_modules/.bin/anvil" --version 2>/dev/null | grep -q "$ANVIL_NPM_VERSION"; then
    export PATH="$tools/node_modules/.bin:$PATH"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js >= 18 with npm (e.g. apt-get install nodejs npm) and retry"
  packages="@foundry-rs/anvil@$ANVIL_NPM_VERSION @uniswap/v2-core@$UNISWAP_V2_CORE_NPM_VERSION"
  packages="$packages @uniswap/v2-periphery@$UNISWAP_V2_PERIPHERY_NPM_VERSION"
  [ "$level" = runtime ] || packages="$packages @bufbuild/buf@$BUF_NPM_VERSION"
  echo "setup: npm install $packages into .tools/" >&2
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{"name": "mempulse-tools", "private": true}' > "$tools/package.json"
  # shellcheck disable=SC2086  # $packages is a list of words
  (cd "$tools" && npm install --save-exact --no-audit --no-fund --loglevel=error $packages >&2) \
    || die "npm install of $packages failed (see above); check that the npm registry is reachable"
  "$tools/node_modules/.bin/anvil" --version >/dev/null 2>&1 || die "anvil did not install correctly in .tools/"
  export PATH="$tools/node_modules/.bin:$PATH"
}

setup_deploy_tools() {
  # The deploy kit's checks (tests/deploy/): promtool checks and unit-tests deploy/prometheus/, systemd-analyze
  # verifies deploy/systemd/. promtool only comes in Debian's `prometheus` package (the server is installed beside
  # it; containers' policy-rc.d keeps it from starting), systemd-analyze in `systemd`. Without root or apt-get
  # nothing is installed and those tests skip with the reason; under CI=true they fail instead.
  local want=()
  command -v promtool >/dev/null 2>&1 || want+=(prometheus)
  command -v systemd-analyze >/dev/null 2>&1 || want+=(systemd)
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no root/apt-get to install ${want[*]} (promtool, systemd-analyze): the deploy kit tests will" \
         "skip (fail under CI=true)" >&2
    return 0
  fi
  echo "setup: apt-get install --no-install-recommends ${want[*]} (promtool, systemd-analyze; ~15 s)" >&2
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=120 install --no-install-recommends "${want[@]}")
  # A clean machine may have no package lists yet: update once and retry.
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1; then
    apt-get -q -o DPkg::Lock::Timeout=120 update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2 \
      || echo "setup: apt-get install ${want[*]} failed (see above): the deploy kit tests will fail" >&2
  fi
  return 0
}

setup_clickhouse() {
  # The exporter's tests (tests/export/, the export kill loop) run a real ClickHouse: Debian's clickhouse-server
  # (18.16 on Debian 12/13), started by the fixtures on free ports with their own data dirs (common/testing/
  # clickhouse.py; the package's own service stays off: containers' policy-rc.d keeps it from starting). Installed
  # like the deploy tools: as root with apt-get only; otherwise those tests skip with the reason (fail under CI=true).
  if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ]; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no root/apt-get to install clickhouse-server: the exporter tests will skip (fail under CI=true)" >&2
    return 0
  fi
  echo "setup: apt-get install --no-install-recommends clickhouse-server (the exporter's tests; ~30 s)" >&2
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=120 install --no-install-recommends clickhouse-server)
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1; then
    apt-get -q -o DPkg::Lock::Timeout=120 update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2 \
      || echo "setup: apt-get install clickhouse-server failed (see above): the exporter tests will fail" >&2
  fi
  return 0
}

setup_all() {
  local level="${1:-dev}"
  setup_venv "$level"
  setup_tools "$level"
  if [ "$level" != runtime ]; then setup_deploy_tools; setup_clickhouse; fi
  # the platform package's native binary (the .bin/anvil launcher is a node wrapper around it)
  local native
  native="$(ls "$MEMPULSE_ROOT"/.tools/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1)"
  export MEMPULSE_ANVIL_BIN="${native:-$MEMPULSE_ROOT/.tools/node_modules/.bin/anvil}"
}
