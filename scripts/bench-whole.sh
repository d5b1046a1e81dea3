#!/usr/bin/env bash
# The whole-program benchmark (docs/performance.md): one provider-like
# program (bench/src/bin/whole.rs, bench/cpp/whole.cpp) built plain and
# with mapileak — Rust in release and in the provider debug profile, C++
# -O2 through the C ABI — and, for C++, with LeakSanitizer; all run
# interleaved, ROUNDS times each (default 3), by bench/src/bin/whole-run.rs.
# Prints `mapileak-whole <candidate> time_vs_plain=… peak_rss_mb=… …` and
# `mapileak-whole target met|MISSED …` lines. Exit 1 when a candidate did
# not name all 20 leaking sites. Linux (peak RSS from wait4, the Logoff's
# own peak from /proc). Installs g++ when missing (LeakSanitizer's runtime
# comes with it).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"

if ! command -v c++ >/dev/null 2>&1; then
  echo "scripts/bench-whole.sh: installing g++"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
fi

out=target/whole
mkdir -p "$out"
for profile in release provider-debug; do
  short=release
  [ "$profile" = release ] || short=debug
  cargo build -q -p mapileak-bench --profile "$profile" --bin whole
  cp "target/$profile/whole" "$out/rust-$short-plain"
  cargo build -q -p mapileak-bench --profile "$profile" --bin whole --features tool
  cp "target/$profile/whole" "$out/rust-$short-tool"
done
cargo build -q --release -p mapileak-capi -p mapileak-probe
cargo build -q --release -p mapileak-bench --bin whole-run
cp target/release/mapileak "$out/mapileak"

cxx=(c++ -std=c++17 -O2 -g -fno-omit-frame-pointer -Wall -Wextra)
"${cxx[@]}" bench/cpp/whole.cpp -o "$out/cpp-plain"
"${cxx[@]}" -fsanitize=leak bench/cpp/whole.cpp -o "$out/cpp-lsan"
# (What `rustc --print native-static-libs` lists on Linux.)
"${cxx[@]}" -DWITH_MAPILEAK -Icapi/include bench/cpp/whole.cpp target/release/libmapileak_c.a \
  -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o "$out/cpp-tool"

exec target/release/whole-run "$out" "$rounds"
