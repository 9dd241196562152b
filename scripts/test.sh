#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one:
#   1. installs the real components the tests use (Tansu broker, scim2-server, Prometheus/promtool) —
#      idempotent, fast when present;
#   2. builds the workspace and runs every test tier (unit, property, in-process, real broker + real SCIM
#      server, end-to-end against the real binary);
#   3. runs `scimflow test` over the mapping test cases of the examples and connectors, and checks the
#      quickstart (the README's other command) end to end;
#   4. runs every fuzz target for a bounded time (FUZZ_SECONDS, default 20).
# Environment: SCIMFLOW_TOOLS (tool cache, default ~/.cache/scimflow/tools), FUZZ_SECONDS, SKIP_FUZZ=1.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

log "installing test components (Tansu, scim2-server)"
# --durable: the broker-restart test needs Tansu with SQLite storage (built once, 20–30 min on a
# fresh machine; seconds when already installed).
scripts/install-test-deps.sh --durable >/dev/null
# shellcheck disable=SC1091
. "$SCIMFLOW_TOOLS/env.sh"
export SCIMFLOW_REQUIRE_TOOLS=1

log "building the workspace"
cargo build --workspace --all-targets

log "running the test suite"
cargo test --workspace --no-fail-fast

log "checking the Prometheus config and alert rules (promtool)"
"$PROMTOOL_BIN" check config deploy/prometheus/prometheus.yml >/dev/null
"$PROMTOOL_BIN" check rules deploy/prometheus/alerts.yml >/dev/null
"$PROMTOOL_BIN" test rules deploy/prometheus/alerts_test.yml

log "running the mapping test cases of the examples and connectors"
target_dir="$(cargo metadata --format-version 1 --no-deps | "$(python_bin)" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
"$target_dir/debug/scimflow" test --config examples/workday/config.yaml --config examples/okta/config.yaml --connectors connectors

log "checking the quickstart"
SCIMFLOW_QUICKSTART_EXIT=1 scripts/quickstart.sh >/dev/null

if [[ "${SKIP_FUZZ:-0}" != 1 ]]; then
  log "fuzzing (${FUZZ_SECONDS:-20}s per target)"
  FUZZ_SECONDS="${FUZZ_SECONDS:-20}" scripts/fuzz.sh
fi
log "all tests passed"
