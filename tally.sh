#!/usr/bin/env bash
# tally's one entry point for people and CI: installs what is missing (Debian 12 packages),
# configures and builds, then runs what was asked.
#
#   ./tally.sh sim [tally sim flags]   build, then run a local federation on Fashion-MNIST
#   ./tally.sh test                    build, then run the whole test suite (plain and sanitizer builds)
#   ./tally.sh build                   install packages and build only
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
jobs="$(nproc 2>/dev/null || echo 2)"

packages=(build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
	libsodium-dev libopenblas-dev zlib1g-dev libjansson-dev libcmocka-dev dataset-fashion-mnist
	python3-numpy iproute2 nftables valgrind)

install_packages() {
	local missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "tally.sh: installing ${missing[*]}" >&2
	local sudo=()
	[ "$(id -u)" -ne 0 ] && sudo=(sudo)
	"${sudo[@]}" apt-get update -q
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() { # build DIR [cmake args...]
	local dir="$1"
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j "$jobs"
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
build)
	install_packages
	build build
	;;
sim)
	install_packages
	build build
	export OPENBLAS_NUM_THREADS=1
	exec build/bin/tally sim "$@"
	;;
test)
	install_packages
	build build
	echo "== tests (gcc, -Werror)"
	ctest --test-dir build --output-on-failure -j "$jobs"
	echo "== tests (address + undefined sanitizers)"
	build build-asan -DTALLY_SANITIZE=address,undefined
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir build-asan --output-on-failure -j "$jobs" -L 'unit|fuzz|integration'
	echo "== tests (thread sanitizer: the threaded parts)"
	build build-tsan -DTALLY_SANITIZE=thread
	ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R 'integration\.(threads|sigterm)$'
	;;
*)
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
	[ "$cmd" = help ] || exit 2
	;;
esac
