# Shared setup for mempulse's scripts: sourced, not run. Creates what is missing and nothing more:
#   .venv/    Python virtual environment with `pip install -e .[dev]` (re-run when pyproject.toml changes)
#   .tools/   npm packages: @foundry-rs/anvil (the local EVM node) and @bufbuild/buf (protobuf lint/breaking)
#   promtool, systemd-analyze  Debian's `prometheus` and `systemd` packages (the deploy kit's checks), if missing,
#             when root with apt-get
# Every step is idempotent, so a second run costs a few hash checks.
set -euo pipefail

MEMPULSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MEMPULSE_ROOT
ANVIL_NPM_VERSION="1.7.1"
BUF_NPM_VERSION="1.75.0"

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

setup_venv() {
  local venv="$MEMPULSE_ROOT/.venv" stamp want py
  py="$(mempulse_python)" || die "Python >= 3.11 not found: install python3.11 (or newer) and retry"
  if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating virtualenv in .venv" >&2
    "$py" -m venv "$venv" || die "could not create .venv: install the python3-venv package and retry"
  fi
  stamp="$venv/.mempulse-installed"
  want="$(cat "$MEMPULSE_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: pip install -e .[dev] (first run takes about a minute)" >&2
    # (grep drops pip's notices about unreachable local mirrors that some machines configure; it writes to our
    # stderr as it goes: `tee /dev/stderr` reopened a redirected stderr file with O_TRUNC, erasing the lines
    # before it and leaving NUL bytes at the start of the file)
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$MEMPULSE_ROOT[dev]" 2>&1 \
        | { grep -v "^WARNING: Location" || true; } >&2; then
      die "pip install failed (see above); check that PyPI is reachable"
    fi
    echo "$want" > "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
}

setup_tools() {
  local tools="$MEMPULSE_ROOT/.tools"
  if [ -x "$tools/node_modules/.bin/anvil" ] && [ -x "$tools/node_modules/.bin/buf" ] \
     && "$tools/node_modules/.bin/anvil" --version 2>/dev/null | grep -q "$ANVIL_NPM_VERSION"; then
    export PATH="$tools/node_modules/.bin:$PATH"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js >= 18 with npm (e.g. apt-get install nodejs npm) and retry"
  echo "setup: npm install @foundry-rs/anvil@$ANVIL_NPM_VERSION @bufbuild/buf@$BUF_NPM_VERSION into .tools/" >&2
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{"name": "mempulse-tools", "private": true}' > "$tools/package.json"
  (cd "$tools" && npm install --no-audit --no-fund --loglevel=error \
      "@foundry-rs/anvil@$ANVIL_NPM_VERSION" "@bufbuild/buf@$BUF_NPM_VERSION" >&2) \
    || die "npm install of anvil/buf failed (see above); check that the npm registry is reachable"
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

setup_all() {
  setup_venv
  setup_tools
  setup_deploy_tools
  # the platform package's native binary (the .bin/anvil launcher is a node wrapper around it)
  local native
  native="$(ls "$MEMPULSE_ROOT"/.tools/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n 1)"
  export MEMPULSE_ANVIL_BIN="${native:-$MEMPULSE_ROOT/.tools/node_modules/.bin/anvil}"
}
