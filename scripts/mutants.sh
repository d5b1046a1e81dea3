#!/usr/bin/env bash
# Mutation testing (cargo-mutants): every small change to the code the
# scopes below name should make some test fail. Prints, per scope, the
# mutants caught, missed (a test gap, or an equivalent change: see docs/testing.md,
# "Mutation testing"), unviable (did not compile) and timed out, and the
# score, caught / (caught + missed).
#
#   scripts/mutants.sh                  # every scope: about an hour here
#   scripts/mutants.sh reports probe    # some of them
#   scripts/mutants.sh --in-diff FILE   # only mutants in FILE's diff (CI)
#
# Scopes and the tests that judge them:
#   reports   reports/src (model, JSON, signatures, names, HTML): the
#             reports crate's own tests (the CLI's and mapileak's would
#             catch more; these must catch them alone)
#   probe     probe/src (the gate, suppressions, accept, render, diff): the CLI's
#   rules     src/analysis.rs and src/rules.rs: mapileak's unit tests and the
#             provider scenarios (tests/providers)
#
# Installs cargo-mutants (a pinned version, from crates.io) when missing.
# Output: target/mutants/<scope>/mutants.out. Exits 1 when a mutant is
# missed, 0 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$version"; then
  echo "scripts/mutants.sh: installing cargo-mutants $version"
  cargo install cargo-mutants --version "$version" --locked --quiet
fi

diff_args=()
if [ "${1:-}" = "--in-diff" ]; then
  diff_args=(--in-diff "$2")
  shift 2
fi
scopes=("$@")
[ ${#scopes[@]} -gt 0 ] || scopes=(reports probe rules)

status=0
for scope in "${scopes[@]}"; do
  case $scope in
    reports)
      args=(--package mapileak-reports --test-package mapileak-reports) ;;
    probe)
      args=(--package mapileak-probe --test-package mapileak-probe) ;;
    rules)
      args=(--file src/live/analysis.rs --file src/live/rules.rs --test-package mapileak
            --features test-hooks -- --lib --test providers) ;;
    *)
      echo "scripts/mutants.sh: no scope $scope (reports, probe, rules)" >&2
      exit 2 ;;
  esac
  out=target/mutants/$scope
  mkdir -p "$out"
  echo "== mutants: $scope"
  # cargo-mutants exits 2 when a mutant is missed, 3 on timeouts: counted below.
  cargo mutants --no-shuffle --output "$out" "${diff_args[@]}" "${args[@]}" || true
  # (grep -c prints 0 itself, and fails, when nothing matches.)
  count() { if [ -f "$out/mutants.out/$1.txt" ]; then grep -c . "$out/mutants.out/$1.txt" || true; else echo 0; fi; }
  caught=$(count caught) missed=$(count missed) unviable=$(count unviable) timeout=$(count timeout)
  total=$((caught + missed))
  score=100
  [ $total -eq 0 ] || score=$((100 * caught / total))
  echo "mutants $scope: $caught caught, $missed missed, $unviable unviable, $timeout timed out: score ${score}%"
  if [ "$missed" -gt 0 ]; then
    sed 's/^/  missed: /' "$out/mutants.out/missed.txt"
    status=1
  fi
done
exit $status
