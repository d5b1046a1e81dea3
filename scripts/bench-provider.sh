#!/usr/bin/env bash
# mapileak's cost in the build a provider runs: its debug profile, with the
# override docs/rust-providers.md recommends (profile `provider-debug`: mapileak
# optimized, the provider not) and, for information, without it (`dev`).
# Prints `mapileak-bench <profile>/<config> ...` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
for profile in provider-debug dev; do
  MAPILEAK_BENCH_PROFILE=$profile cargo bench -q -p mapileak-bench --profile "$profile" \
    --bench provider 2>/dev/null | grep '^mapileak-bench'
done
