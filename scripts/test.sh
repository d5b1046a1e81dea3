#!/usr/bin/env bash
# The README's test command. Installs what the tests need when it is
# missing (Debian's chromium for the HTML report's browser tests, valgrind
# for the heap oracle, gcc and g++ for the C ABI's C and C++ programs),
# then runs every test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]} (Debian packages the tests need)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# `test-hooks`: the fault injection and probes some tests use (never in a
# provider's build; tests/providers fails without it rather than skip).
exec cargo test --workspace --features mapileak/test-hooks,mapileak-capi/test-hooks "$@"
