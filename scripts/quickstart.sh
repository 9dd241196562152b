#!/usr/bin/env bash
# The main job on a bare machine: brings up a real SCIM 2.0 server (scim2-server) on loopback, runs the
# scimflow daemon on its embedded defaults with examples/quickstart.yaml (no Kafka needed), provisions
# the example HR events (examples/events/*.json) into the server, shows the result, and keeps running
# until Ctrl-C. Idempotent and fast once the tools and the build are there.
# Environment: SCIMFLOW_LISTEN (default 127.0.0.1:8080), SCIMFLOW_DATA_DIR (default ./data/quickstart),
#              SCIMFLOW_QUICKSTART_EXIT=1 to stop after provisioning (used by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/install-test-deps.sh --skip-tansu >/dev/null
# shellcheck disable=SC1091
. "$SCIMFLOW_TOOLS/env.sh"

log "building scimflow"
cargo build -p scimflow --quiet
bin="$(cargo metadata --format-version 1 --no-deps | "$(python_bin)" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/scimflow"

free_port() { "$(python_bin)" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d)"
scim_port="$(free_port)"
export SCIM_TOKEN="quickstart-scim-$RANDOM$RANDOM"
export SCIM_BASE_URL="http://127.0.0.1:${scim_port}/v2"
export SCIMFLOW_INGEST_TOKEN="${SCIMFLOW_INGEST_TOKEN:-quickstart-ingest-$RANDOM$RANDOM}"
listen="${SCIMFLOW_LISTEN:-127.0.0.1:8080}"
data_dir="${SCIMFLOW_DATA_DIR:-./data/quickstart}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting scim2-server on ${SCIM_BASE_URL}"
"$SCIM2_SERVER_BIN" --hostname 127.0.0.1 --port "$scim_port" --bearer-token "$SCIM_TOKEN" >"$work/scim2-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -sf -H "Authorization: Bearer $SCIM_TOKEN" "$SCIM_BASE_URL/ServiceProviderConfig" >/dev/null && break
  sleep 0.2
done
curl -sf -H "Authorization: Bearer $SCIM_TOKEN" "$SCIM_BASE_URL/ServiceProviderConfig" >/dev/null \
  || die "scim2-server did not start; log: $(tail -5 "$work/scim2-server.log")"

log "starting scimflow (embedded source) on ${listen}, store in ${data_dir}"
# The quickstart SCIM server keeps its accounts in memory, so each run starts from a clean store too.
rm -rf "$data_dir"
mkdir -p "$data_dir"
"$bin" run --config examples/quickstart.yaml --listen "$listen" --data-dir "$data_dir" \
  >"$work/scimflow.out" 2> >(tee "$work/scimflow.log" >&2) &
pids+=($!)
for _ in $(seq 1 150); do grep -q '^scimflow listening on ' "$work/scimflow.out" 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^scimflow listening on //p' "$work/scimflow.out")"
[[ -n "$url" ]] || die "scimflow did not start (see the log above)"

log "posting the example events to ${url}/api/v1/events"
for f in examples/events/*.json; do
  printf '  %s → ' "$(basename "$f")" >&2
  curl -s -H "Authorization: Bearer $SCIMFLOW_INGEST_TOKEN" -H 'Content-Type: application/json' \
    --data-binary "@$f" "$url/api/v1/events" >&2
  echo >&2
done

expected="$(ls examples/events/*.json | wc -l)"
for _ in $(seq 1 300); do
  done_ops="$(curl -s "$url/api/v1/targets" | "$(python_bin)" -c 'import json,sys; t=json.load(sys.stdin)["targets"][0]; print(t["applied"]+t["noop"]+t["failed"] if t["queue_depth"]==0 else -1)')"
  [[ "$done_ops" -ge "$expected" ]] && break
  sleep 0.1
done

log "accounts now on the SCIM server:"
curl -s -H "Authorization: Bearer $SCIM_TOKEN" "$SCIM_BASE_URL/Users?count=100" | "$(python_bin)" -c '
import json, sys
for u in sorted(json.load(sys.stdin).get("Resources", []), key=lambda u: u.get("externalId", "")):
    dept = u.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", {}).get("department", "")
    print("  %-8s %-36s active=%-5s %-22s %s" % (u.get("externalId", ""), u["userName"], str(u.get("active")).lower(), u.get("title", ""), dept))
' >&2
count="$(curl -s -H "Authorization: Bearer $SCIM_TOKEN" "$SCIM_BASE_URL/Users" | "$(python_bin)" -c 'import json,sys; print(json.load(sys.stdin)["totalResults"])')"
[[ "$count" == 4 ]] || die "expected 4 accounts on the SCIM server, found $count"

cat >&2 <<TXT

scimflow is running.
  ingest API   POST ${url}/api/v1/events   (header: Authorization: Bearer ${SCIMFLOW_INGEST_TOKEN})
  targets      curl ${url}/api/v1/targets
  health       ${url}/healthz  ${url}/readyz
  SCIM server  ${SCIM_BASE_URL}/Users   (bearer ${SCIM_TOKEN})
  audit        after stopping: ${bin} audit export --data-dir ${data_dir}
                               ${bin} audit verify --data-dir ${data_dir}
Press Ctrl-C to stop.
TXT
if [[ "${SCIMFLOW_QUICKSTART_EXIT:-0}" == 1 ]]; then
  kill -TERM "${pids[1]}"; wait "${pids[1]}" || true
  "$bin" audit verify --data-dir "$data_dir" >&2
  exit 0
fi
wait "${pids[1]}"
