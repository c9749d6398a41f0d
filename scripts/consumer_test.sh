#!/usr/bin/env bash
# Uses lens the way its users do, with the small project in tests/consumer:
#   1. installs the already-configured build (cmake --install) into a prefix, checks the
#      installed tree, builds the consumer with find_package(lens) and runs it, then
#      checks pkg-config and compiles the consumer once more with pkg-config's flags;
#   2. builds the consumer with lens through add_subdirectory (only the libraries and
#      the consumer are built; its CMakeLists fails if lens adds tests, tools, ... ) and runs it.
# Every consumer run starts an in-process emulator on loopback and must exit 0.
#
#   scripts/consumer_test.sh [BUILD_DIR]     (default: build; ctest passes its own)
#
# Work happens in BUILD_DIR/consumer-test and is kept: a second run rebuilds only what
# changed (and ccache serves what it has seen).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
work=$build/consumer-test
prefix=$work/prefix
mkdir -p "$work"
start=$SECONDS

step() { echo "== [$((SECONDS - start)) s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
launcher=()
if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # lens's own files use a precompiled header: ccache caches them only with these.
    export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
fi
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

# ---- 1. the installed package ------------------------------------------------------------
step "building what gets installed (a no-op when the build is up to date)"
targets=(lens lens_emulator)
grep -q '^LENS_BUILD_CLI:BOOL=ON' "$build/CMakeCache.txt" && targets+=(lens_cli)
nice cmake --build "$build" --target "${targets[@]}" -j "$jobs" >"$work/build-lens.log" ||
    { tail -50 "$work/build-lens.log"; fail "building ${targets[*]}"; }

step "cmake --install $build --prefix $prefix"
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
for f in include/lens/client.hpp include/lens/session.hpp include/lens/emulator.hpp include/lens/version.hpp \
    include/lens/detail/deadline.hpp include/lens/sse/parser.hpp \
    lib/liblens.a lib/liblens_emulator.a lib/cmake/lens/lensConfig.cmake \
    lib/cmake/lens/lensConfigVersion.cmake lib/cmake/lens/lensTargets.cmake \
    lib/pkgconfig/lens.pc lib/pkgconfig/lens-emulator.pc share/doc/lens/LICENSE; do
    [[ -f $prefix/$f ]] || fail "not installed: $f"
done
[[ -e $prefix/include/pch.hpp || -e $prefix/include/lens/pch.hpp ]] && fail "the precompiled header was installed"
if grep -rqiE 'pch|precompile|SEPARATE_COMPILATION|-Wall|src/' "$prefix"/lib/cmake/lens/lensTargets*.cmake; then
    grep -rniE 'pch|precompile|SEPARATE_COMPILATION|-Wall|src/' "$prefix"/lib/cmake/lens/lensTargets*.cmake >&2
    fail "lensTargets.cmake hands lens's build settings to consumers"
fi
if [[ -x $prefix/bin/lens ]]; then
    version=$("$prefix/bin/lens" --version) || fail "lens --version exited $?"
    [[ $version =~ ^lens\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "lens --version printed '$version'"
    grep -qF "#define LENS_VERSION_STRING \"${version#lens }\"" "$prefix/include/lens/version.hpp" ||
        fail "version.hpp and lens --version disagree ($version)"
    step "installed $version"
fi

step "consumer via find_package(lens): configure, build, run"
cmake -S "$root/tests/consumer" -B "$work/installed" "${generator[@]}" "${launcher[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >"$work/installed-configure.log" ||
    { cat "$work/installed-configure.log"; fail "configuring the consumer against the installed package"; }
nice cmake --build "$work/installed" -j "$jobs" >"$work/installed-build.log" ||
    { tail -50 "$work/installed-build.log"; fail "building the consumer against the installed package"; }
timeout 60 "$work/installed/consumer" || fail "the consumer (installed package) exited $?"

step "pkg-config"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pc_version=$(pkg-config --modversion lens) || fail "pkg-config does not find lens"
[[ -z ${version:-} || "lens $pc_version" == "$version" ]] || fail "lens.pc says $pc_version, the tool $version"
flags=$(pkg-config --cflags --libs lens-emulator) || fail "pkg-config --cflags --libs lens-emulator"
echo "pkg-config --cflags --libs lens-emulator: $flags"
for want in -llens_emulator -llens -lboost_json -lboost_url -lssl -lcrypto; do
    [[ " $flags " == *" $want "* ]] || fail "pkg-config flags lack '$want': $flags"
done
# The .pc files are relocatable (prefix=${pcfiledir}/../..): -I and -L name the prefix.
for f in $flags; do
    case $f in
    -I*) [[ $(realpath -m "${f#-I}") == "$(realpath "$prefix/include")" ]] && have_include=1 ;;
    -L*) [[ $(realpath -m "${f#-L}") == "$(realpath "$prefix/lib")" ]] && have_libdir=1 ;;
    esac
done
[[ -n ${have_include:-} && -n ${have_libdir:-} ]] || fail "pkg-config flags do not name $prefix/include and $prefix/lib: $flags"
cxx=${CXX:-c++}
command -v ccache >/dev/null && cxx="ccache $cxx"
cflags=$(pkg-config --cflags lens-emulator)
libs=$(pkg-config --libs lens-emulator)
# Compile and link apart: ccache caches compilations only.
# shellcheck disable=SC2086
nice $cxx -std=c++20 -O1 -c "$root/tests/consumer/main.cpp" -o "$work/consumer-pkg-config.o" $cflags ||
    fail "compiling the consumer with pkg-config's flags"
# shellcheck disable=SC2086
${CXX:-c++} "$work/consumer-pkg-config.o" -o "$work/consumer-pkg-config" $libs ||
    fail "linking the consumer with pkg-config's flags"
timeout 60 "$work/consumer-pkg-config" >/dev/null || fail "the consumer (pkg-config) exited $?"

# ---- 2. add_subdirectory -------------------------------------------------------------------
step "consumer via add_subdirectory(lens): configure, build (libraries + consumer only), run"
# No build type (-O0), first because that is what catches an Asio that differs between
# liblens and its consumer: unoptimized, the consumer calls liblens's copies of Asio's
# functions instead of inlining its own, and a signature that differs (as
# BOOST_ASIO_NO_DEPRECATED made it, see CMakeLists.txt) crashes it; at -O3 it passed by
# luck. Also, the parent's build type (none) must stay lens's too, and the libraries
# compile in two thirds of Release's time (session.cpp 34 s against 52 s).
cmake -S "$root/tests/consumer" -B "$work/subdirectory" "${generator[@]}" "${launcher[@]}" \
    -DCMAKE_BUILD_TYPE= -DLENS_SOURCE_DIR="$root" >"$work/subdirectory-configure.log" ||
    { cat "$work/subdirectory-configure.log"; fail "configuring the consumer with add_subdirectory"; }
# tests/consumer/CMakeLists.txt already fails if lens defines them (if(TARGET ...)); with
# Ninja, check the generated build too.
if [[ -f $work/subdirectory/build.ninja ]]; then
    all_targets=$(ninja -C "$work/subdirectory" -t targets all | cut -d: -f1)
    for t in lens_unit_tests lens_integration_tests lens_cli lens_docs lens/lens bench_ example_; do
        grep -Eq "^$t" <<<"$all_targets" && fail "add_subdirectory mode has lens's target $t"
    done
    grep -q "^lens_emulator$" <<<"$all_targets" || fail "add_subdirectory mode lacks lens_emulator"
fi
nice cmake --build "$work/subdirectory" --target consumer -j "$jobs" >"$work/subdirectory-build.log" ||
    { tail -50 "$work/subdirectory-build.log"; fail "building the consumer with add_subdirectory"; }
timeout 60 "$work/subdirectory/consumer" || fail "the consumer (add_subdirectory) exited $?"

step "consumer test: all passed"
