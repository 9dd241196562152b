#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 30) each.
# Installs cargo-fuzz on first use. Exits non-zero if any target crashes.
# Usage: scripts/fuzz.sh [TARGET...]   (default: all targets)
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

failed=()
for target in "${targets[@]}"; do
    echo "fuzz: ${target} for ${seconds}s" >&2
    if ! (cd fuzz && cargo +nightly fuzz run "${target}" -- -max_total_time="${seconds}"); then
        failed+=("${target}")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (see fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without crashing" >&2
