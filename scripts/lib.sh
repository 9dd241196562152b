#!/usr/bin/env bash
# Shared shell helpers for scimflow scripts. Source it: `. "$(dirname "$0")/lib.sh"`.
# Everything here is side-effect free until called.

# Directory holding installed test tools (outside the repo so fresh clones reuse it).
SCIMFLOW_TOOLS="${SCIMFLOW_TOOLS:-$HOME/.cache/scimflow/tools}"

# Colour only when stderr is a terminal.
if [[ -t 2 ]]; then
  _sf_bold=$'\033[1m'; _sf_red=$'\033[31m'; _sf_yellow=$'\033[33m'; _sf_reset=$'\033[0m'
else
  _sf_bold=''; _sf_red=''; _sf_yellow=''; _sf_reset=''
fi

# log MSG...: progress message on stderr.
log() { printf '%s==>%s %s\n' "$_sf_bold" "$_sf_reset" "$*" >&2; }
# warn MSG...: warning on stderr.
warn() { printf '%swarning:%s %s\n' "$_sf_yellow" "$_sf_reset" "$*" >&2; }
# die MSG...: error on stderr, exit 1.
die() { printf '%serror:%s %s\n' "$_sf_red" "$_sf_reset" "$*" >&2; exit 1; }

# have CMD: true when CMD is on PATH.
have() { command -v "$1" >/dev/null 2>&1; }

# need CMD [HINT]: die unless CMD is on PATH.
need() { have "$1" || die "required command '$1' not found${2:+ ($2)}"; }

# python_bin: print the python3 interpreter to use (SCIMFLOW_PYTHON overrides).
python_bin() {
  local py="${SCIMFLOW_PYTHON:-}"
  if [[ -z "$py" ]]; then
    for c in python3.11 python3 python; do
      if have "$c"; then py="$c"; break; fi
    done
  fi
  [[ -n "$py" ]] || die "python3 not found (need Python >= 3.10 for scim2-server)"
  printf '%s\n' "$py"
}

# run_quiet LOGFILE CMD...: run CMD with output to LOGFILE; on failure show its tail and return the code.
run_quiet() {
  local logfile="$1"; shift
  local rc=0
  "$@" >"$logfile" 2>&1 || rc=$?
  if (( rc != 0 )); then
    warn "command failed (exit $rc): $*"
    tail -n 30 "$logfile" >&2 || true
    warn "full log: $logfile"
  fi
  return "$rc"
}

# link_or_copy SRC DST: symlink SRC to DST atomically (copy if symlinks fail).
link_or_copy() {
  local src="$1" dst="$2" tmp
  tmp="$dst.tmp.$$"
  rm -f "$tmp"
  if ! ln -s "$src" "$tmp" 2>/dev/null; then
    cp "$src" "$tmp"
  fi
  mv -f "$tmp" "$dst"
}
