#!/usr/bin/env bash
# The Windows legs: cross-compiles the workspace for Windows and runs its
# tests under Wine (see docs/windows.md). `--arch x64` (the default):
# x86_64-pc-windows-gnu under wine64; `--arch x86`: i686-pc-windows-gnu
# under 32-bit Wine, as a 32-bit Outlook loads a provider.
#
# Installs what it needs when missing (Debian's rustc-web and rust-web-src
# for a compiler that can build std for Windows, mingw-w64 for the
# architecture, wine64; for x86 the i386 architecture and wine32), makes a
# Wine prefix of its own under target/windows (with the
# bcryptprimitives.dll that Wine 8 lacks, built from
# scripts/windows/bcryptprimitives.c), then runs `cargo test` for the
# Windows target with every test binary under Wine; then compares the
# demo's signatures with a Linux run (and the other architecture's, when
# it ran), and prints the allocator benchmark's lines and the provider
# benchmark's under Wine (MAPILEAK_SKIP_BENCH=1 skips them;
# MAPILEAK_WHOLE_BENCH=1 adds the whole-program benchmark's). Other
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Each part's start time in the log, to see where CI's minutes go.
part() { echo "-- $arch: $* [$(date +%T)]"; }

arch=x64
if [ "${1:-}" = "--arch" ]; then
  arch=${2:-}
  shift 2
fi
case "$arch" in
  x64)
    target=x86_64-pc-windows-gnu
    triple=X86_64_PC_WINDOWS_GNU
    mingw=x86_64-w64-mingw32
    mingw_pkgs=(gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64)
    ;;
  x86)
    target=i686-pc-windows-gnu
    triple=I686_PC_WINDOWS_GNU
    mingw=i686-w64-mingw32
    mingw_pkgs=(gcc-mingw-w64-i686 g++-mingw-w64-i686)
    ;;
  *)
    echo "scripts/test-windows.sh: --arch takes x64 or x86, not '$arch'" >&2
    exit 2
    ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
missing=()
[ -x /usr/bin/rustc ] || missing+=(rustc-web)
[ -d /usr/lib/rustlib/src/rust/library ] || missing+=(rust-web-src)
command -v "$mingw-gcc" >/dev/null 2>&1 || missing+=("${mingw_pkgs[0]}")
command -v "$mingw-g++" >/dev/null 2>&1 || missing+=("${mingw_pkgs[1]}")
command -v wine >/dev/null 2>&1 || missing+=(wine64)
if [ "$arch" = x86 ] && ! dpkg -s wine32:i386 >/dev/null 2>&1; then
  # 32-bit Wine comes from Debian's i386 architecture.
  if ! dpkg --print-foreign-architectures | grep -qx i386; then
    echo "scripts/test-windows.sh: adding the i386 architecture (for wine32)"
    $sudo dpkg --add-architecture i386
  fi
  missing+=(wine32:i386)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test-windows.sh: installing ${missing[*]} (Debian packages the Windows leg needs)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

out=$root/target/windows
# One prefix per architecture: a 32-bit one for x86, where the shim goes to
# its system32 too.
if [ "$arch" = x86 ]; then
  export WINEPREFIX=$out/wine32
  export WINEARCH=win32
else
  export WINEPREFIX=$out/wine
fi
export WINEDEBUG=-all
mkdir -p "$out"

# The prefix: made once, then reused; the shim rebuilt when its source
# changes. A prefix made before wine32 was installed (or after it was
# removed) no longer starts any program: it is made anew.
made_with="wine32=$(dpkg -s wine32:i386 >/dev/null 2>&1 && echo yes || echo no)"
if [ -f "$WINEPREFIX/system.reg" ] && [ "$(cat "$WINEPREFIX/.mapileak-made-with" 2>/dev/null)" != "$made_with" ]; then
  echo "scripts/test-windows.sh: the Wine prefix $WINEPREFIX was made by another Wine; making it anew"
  wineserver -k 2>/dev/null || true
  rm -rf "$WINEPREFIX"
fi
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  echo "scripts/test-windows.sh: making the Wine prefix $WINEPREFIX"
  # No Mono or Gecko: nothing here needs .NET or HTML, and their installers
  # would ask for a display.
  WINEDLLOVERRIDES="mscoree,mshtml=" wine wineboot -i >/dev/null 2>&1 || true
  wineserver -w
  echo "$made_with" >"$WINEPREFIX/.mapileak-made-with"
fi
shim=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
src=scripts/windows/bcryptprimitives.c
if [ ! -f "$shim" ] || [ "$src" -nt "$shim" ]; then
  # On x86 the export must be ProcessPrng, not the stdcall ProcessPrng@8.
  "$mingw-gcc" -O2 -shared -Wl,--kill-at -o "$out/bcryptprimitives-$arch.dll" "$src" -ladvapi32
  cp "$out/bcryptprimitives-$arch.dll" "$shim"
fi

# Debian's rustc builds std for Windows from its source (build-std); its
# artifacts stay apart from the Linux build's.
export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$out/cargo
export "CARGO_TARGET_${triple}_LINKER=$mingw-gcc"
export "CARGO_TARGET_${triple}_RUNNER=$root/scripts/windows/wine-run"
export "CXX_${target//-/_}=$mingw-g++"
export "CC_${target//-/_}=$mingw-gcc"
runner=$root/scripts/windows/wine-run
if [ "$arch" = x86 ]; then
  # rustc links rsbegin.o and rsend.o into every i686-pc-windows-gnu image
  # (DWARF unwinding registers its tables); build-std does not make them,
  # so they are built here and found through -L (scripts/windows/rsbegin.c).
  rtstartup=$out/rtstartup-x86
  mkdir -p "$rtstartup"
  for f in rsbegin rsend; do
    "$mingw-gcc" -O2 -fno-asynchronous-unwind-tables -fno-exceptions -c \
      "scripts/windows/$f.c" -o "$rtstartup/$f.o"
  done
  # (These replace the workspace's build.rustflags for the target: keep
  # its frame pointers.)
  export "CARGO_TARGET_${triple}_RUSTFLAGS=-C force-frame-pointers=yes -L native=$rtstartup"
  # (Doctests are linked by rustdoc, which takes its own flags.)
  export RUSTDOCFLAGS="-C force-frame-pointers=yes -L native=$rtstartup"
  # std's panic backtraces walk the stack with dbghelp on x86, and 32-bit
  # Wine 8's dbghelp faults reading Rust's debug info: a test whose panic is
  # expected would crash. (mapileak itself uses no dbghelp on x86.)
  export RUST_BACKTRACE=0
fi

# Everything the tests run, built first, so a warning fails the leg as
# clippy's -D warnings does the Linux one. (Doctests are compiled by
# Debian's rustdoc, which matches its rustc.)
hooks=(--features mapileak/test-hooks,mapileak-capi/test-hooks)
part "build"
cargo build -Zbuild-std=std,panic_unwind --target "$target" --workspace --tests --examples "${hooks[@]}" \
  2>&1 | tee "$out/build-$arch.log"
if grep -q '^warning: `mapileak' "$out/build-$arch.log"; then
  echo "scripts/test-windows.sh: the Windows build has warnings (above)" >&2
  exit 1
fi

# MSVC builds cannot be linked here (no MSVC libraries), but the code that
# is theirs alone (the symbolizer check at process end) is compiled: a
# check build for x86_64-pc-windows-msvc, warnings failing the leg.
# (x64 only: the MSVC-only code is the same for x86, and the leg's time
# is CI's.)
if [ "$arch" = x64 ]; then
  part "MSVC check build"
  CARGO_TARGET_DIR=$out/msvc-check cargo check -Zbuild-std=std,panic_unwind \
    --target x86_64-pc-windows-msvc -p mapileak -p mapileak-capi --lib 2>&1 | tee "$out/msvc.log"
  if grep -q '^warning: `mapileak' "$out/msvc.log" || ! grep -q '^    Finished' "$out/msvc.log"; then
    echo "scripts/test-windows.sh: the MSVC check build failed or has warnings (above)" >&2
    exit 1
  fi
fi

# The C ABI's test programs: a test under Wine cannot run the Linux
# cross-compiler, so they are built here against the Windows static library,
# as a C or C++ provider DLL would be (see docs/windows.md).
# The static library the Linux leg's programs link too: the one the build
# above made for the tests (the C ABI optimized there, by
# [profile.dev.package.mapileak-capi]), with the test hook the unload
# test's DLL calls (mapileak__test_hold_lock). A --release one, as
# providers link it, needs a release build of std from source: 2 of CI's
# minutes a leg; it is built for the benchmarks below.
part "C and C++ test programs"
programs=$out/programs-$arch
mkdir -p "$programs"
lib=$(ls -t "$CARGO_TARGET_DIR/$target"/debug/deps/libmapileak_c-*.a 2>/dev/null | head -1)
if [ ! -f "$lib" ]; then
  echo "scripts/test-windows.sh: the build made no libmapileak_c-*.a" >&2
  exit 1
fi
syslibs=(-static-libgcc -lws2_32 -luserenv -lntdll -lbcrypt -ladvapi32 -lkernel32)
for program in store overrelease logon mixed buffers; do
  "$mingw-g++" -std=c++17 -g -O0 -Wall -Wextra -Werror -pedantic -Icapi/include \
    "capi/tests/programs/$program.cpp" "$lib" -static-libstdc++ "${syslibs[@]}" \
    -o "$programs/$program.exe"
done
for program in transport history; do
  "$mingw-gcc" -std=c99 -g -O0 -Wall -Wextra -Werror -pedantic -Icapi/include \
    "capi/tests/programs/$program.c" "$lib" "${syslibs[@]}" -o "$programs/$program.exe"
done
# A provider DLL written against mingw-w64's MAPI SDK headers and a host
# that drives it as MAPI does, with Wine's mapi32.dll (tests/programs.rs).
# Its exports are named in a .def file, as a provider's are: MAPI finds
# MSProviderInit by its plain name, which a 32-bit build must not decorate.
"$mingw-g++" -std=c++17 -g -O0 -Wall -Wextra -Werror -pedantic -Icapi/include -shared \
  capi/tests/programs/msprovider.cpp capi/tests/programs/msprovider.def "$lib" \
  -static-libstdc++ "${syslibs[@]}" -luuid -o "$programs/msprovider.dll"
exports=$("$mingw-objdump" -p "$programs/msprovider.dll" | sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p')
if ! grep -qE '\] MSProviderInit$' <<<"$exports" || grep -q 'MSProviderInit@' <<<"$exports"; then
  echo "scripts/test-windows.sh: msprovider.dll does not export MSProviderInit undecorated:" >&2
  echo "$exports" >&2
  exit 1
fi
"$mingw-g++" -std=c++17 -g -O0 -Wall -Wextra -Werror -pedantic \
  capi/tests/programs/mapihost.cpp -static-libstdc++ -static-libgcc -luuid -o "$programs/mapihost.exe"
export MAPILEAK_TEST_PROGRAMS=$programs
# The header with MAPI's own types (mingw-w64's MAPI SDK headers first): no
# cast between what MAPI hands a provider and mapileak, as C and as C++; run
# under Wine, it wraps Wine's own mapi32.dll functions.
"$mingw-gcc" -std=c99 -g -O0 -Wall -Wextra -Werror -Icapi/include \
  capi/tests/programs/mapi_types.c "$lib" "${syslibs[@]}" -o "$programs/mapi_types_c.exe"
"$mingw-g++" -x c++ -std=c++17 -g -O0 -Wall -Wextra -Werror -Icapi/include \
  capi/tests/programs/mapi_types.c -x none "$lib" -static-libstdc++ "${syslibs[@]}" \
  -o "$programs/mapi_types_cpp.exe"
for exe in mapi_types_c mapi_types_cpp; do
  got=$(MAPILEAK_DIR="$out/mapi-types" "$runner" "$programs/$exe.exe" 2>/dev/null | tr -d "\r" || true)
  if [ "$got" != "mapileak-mapi-types ok" ]; then
    echo "scripts/test-windows.sh: $exe: MAPI-typed calls failed: $got" >&2
    exit 1
  fi
done
echo "mapi types: mapileak.h takes MAPI's types without casts (C and C++, Wine's mapi32)"

wineserver -p 2>/dev/null || true   # one server for the whole run
status=0
part "tests"
cargo test -Zbuild-std=std,panic_unwind,test --target "$target" --workspace "${hooks[@]}" "$@" || status=$?

# One name per function on every platform: the demo's leaks, run on Linux
# and under Wine, have the same signatures, kinds, labels and top frames
# (compared as the baselines `mapileak gate --write-baseline` writes), and
# the same as the other Windows architecture's when its leg ran before.
if [ $status -eq 0 ]; then
  part "demo signatures"
  demo=$out/demo
  rm -rf "$demo/linux" "$demo/windows-$arch"
  mkdir -p "$demo"
  MAPILEAK_DIR="$demo/windows-$arch" "$runner" \
    "$CARGO_TARGET_DIR/$target/debug/examples/leaky_store.exe" >"$demo/windows-$arch.out" 2>&1
  (
    unset RUSTC RUSTC_BOOTSTRAP CARGO_TARGET_DIR
    MAPILEAK_DIR="$demo/linux" cargo run -q --example leaky_store >"$demo/linux.out" 2>&1
    for os in linux "windows-$arch"; do
      cargo run -q -p mapileak-probe -- gate --write-baseline "$demo/$os.baseline" "$demo/$os" 2>/dev/null
    done
  )
  # The other architecture's baseline counts only when it was made from
  # this very source (a leg run before a change would differ for good
  # reason): each carries a stamp of the tree it was built from.
  source_stamp=$({ git rev-parse HEAD; git diff HEAD; } 2>/dev/null | sha256sum | cut -c1-16)
  echo "$source_stamp" >"$demo/windows-$arch.source"
  for other in "windows-$arch" windows-x64 windows-x86; do
    [ -f "$demo/$other.baseline" ] || continue
    [ "$(cat "$demo/$other.source" 2>/dev/null)" = "$source_stamp" ] || continue
    if ! diff -u "$demo/linux.baseline" "$demo/$other.baseline"; then
      echo "scripts/test-windows.sh: the demo's leaks differ between Linux and $other (above)" >&2
      status=1
    fi
  done
  if [ "$(grep -vc '^#' "$demo/linux.baseline")" -lt 4 ]; then
    echo "scripts/test-windows.sh: the demo reported fewer leaks than it plants" >&2
    status=1
  elif [ $status -eq 0 ]; then
    agree=$(cd "$demo" && grep -lx "$source_stamp" windows-*.source | sed 's/\.source$//' | paste -sd, | sed 's/,/, /g')
    echo "demo signatures: Linux, $agree agree ($(grep -vc '^#' "$demo/linux.baseline") items)"
  fi
fi

# The allocator benchmark under Wine: ratios to Wine's own heap (System) in
# the same run, printed for the log (no timing is asserted).
if [ $status -eq 0 ] && [ "${MAPILEAK_SKIP_BENCH:-}" != 1 ]; then
  # The static library as providers link it: optimized (--release).
  cargo build -q -Zbuild-std=std,panic_unwind --target "$target" -p mapileak-capi --release
  lib=$CARGO_TARGET_DIR/$target/release/libmapileak_c.a
  # What linking mapileak adds to a provider DLL on disk (docs/windows.md):
  # a DLL that calls one of its functions, against the same DLL without it.
  printf '#include "mapileak.h"\n__declspec(dllexport) int probe(void) { return mapileak_live(); }\n' \
    > "$programs/with.c"
  printf '__declspec(dllexport) int probe(void) { return 1; }\n' > "$programs/without.c"
  "$mingw-gcc" -shared -Icapi/include "$programs/with.c" "$lib" "${syslibs[@]}" \
    -o "$programs/with.dll"
  "$mingw-gcc" -shared "$programs/without.c" -o "$programs/without.dll"
  echo "DLL size: linking mapileak (release static library, $(stat -c %s "$lib") bytes) adds $(( $(stat -c %s "$programs/with.dll") - $(stat -c %s "$programs/without.dll") )) bytes; msprovider.dll is $(stat -c %s "$programs/msprovider.dll") bytes (with the tests' library)"
  echo "== allocator benchmark under Wine, $arch (cargo bench --bench alloc)"
  cargo bench -Zbuild-std=std,panic_unwind,test --target "$target" --bench alloc 2>&1 \
    | grep -E '^mapileak-bench' || status=1
  # What a provider runs (scripts/bench-provider.sh): its debug profile with
  # the override docs/rust-providers.md recommends. A provider links rustup's prebuilt std, which is
  # optimized and has no debug assertions; built here from source, std
  # would take the profile's opt-level 0 and slow every line.
  echo "== provider benchmark under Wine, $arch (profile provider-debug)"
  std_opt=()
  for p in std core alloc compiler_builtins panic_unwind unwind hashbrown std_detect; do
    std_opt+=(--config "profile.provider-debug.package.$p.opt-level=3"
      --config "profile.provider-debug.package.$p.debug-assertions=false")
  done
  MAPILEAK_BENCH_PROFILE=provider-debug cargo bench "${std_opt[@]}" -q \
    -Zbuild-std=std,panic_unwind,test --target "$target" -p mapileak-bench \
    --profile provider-debug --bench provider 2>/dev/null \
    | grep -E '^mapileak-bench' || status=1
  # The whole-program benchmark (scripts/bench-whole.sh), for information,
  # with MAPILEAK_WHOLE_BENCH=1 (not in CI: its builds would take the
  # leg's minutes): two rounds, time and Logoff time only (no
  # LeakSanitizer on Windows, and no memory figures: Wine's are not the
  # process's).
  if [ "${MAPILEAK_WHOLE_BENCH:-}" = 1 ]; then
    echo "== whole-program benchmark under Wine, $arch (scripts/bench-whole.sh's programs)"
    whole=$out/whole-$arch
    mkdir -p "$whole"
    std_build=(-q -Zbuild-std=std,panic_unwind,test --target "$target" -p mapileak-bench)
    for profile in bench provider-debug; do
      short=release
      opts=()
      if [ "$profile" = provider-debug ]; then
        short=debug
        opts=("${std_opt[@]}")
      fi
      # (The bench profile's output is in release/.)
      dir_of=$profile
      [ "$profile" = bench ] && dir_of=release
      for variant in plain tool; do
        features=()
        [ "$variant" = tool ] && features=(--features tool)
        cargo build "${opts[@]}" "${std_build[@]}" --profile "$profile" --bin whole "${features[@]}"
        cp "$CARGO_TARGET_DIR/$target/$dir_of/whole.exe" "$whole/rust-$short-$variant.exe"
      done
    done
    cargo build "${std_build[@]}" --profile bench --bin whole-run
    cargo build -q -Zbuild-std=std,panic_unwind,test --target "$target" -p mapileak-probe --profile bench
    cp "$CARGO_TARGET_DIR/$target/release/whole-run.exe" "$CARGO_TARGET_DIR/$target/release/mapileak.exe" "$whole/"
    cxx=("$mingw-g++" -std=c++17 -O2 -g -fno-omit-frame-pointer -Wall -Wextra)
    "${cxx[@]}" bench/cpp/whole.cpp -static-libstdc++ -static-libgcc -o "$whole/cpp-plain.exe"
    "${cxx[@]}" -DWITH_MAPILEAK -Icapi/include bench/cpp/whole.cpp "$lib" -static-libstdc++ \
      "${syslibs[@]}" -o "$whole/cpp-tool.exe"
    (cd "$whole" && "$runner" ./whole-run.exe . 2) | tr -d '\r' | grep -E '^mapileak-whole' || status=1
  fi
fi

part "end"
wineserver -k 2>/dev/null || true
exit $status
