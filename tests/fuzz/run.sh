#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer (clang-14, address + undefined sanitizers) for SECONDS
# each (default 60), starting from a copy of its committed corpus, and prints executions per
# second and any finding. Installs clang-14 and libclang-rt-14-dev when missing.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-60}"
[ $# -gt 0 ] && shift
if ! command -v clang-14 >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "ok installed"; then
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev
fi
build="$root/build-fuzz"
CC=clang-14 cmake -S "$root" -B "$build" -DTALLY_FUZZ=ON -DTALLY_SANITIZE=address,undefined \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(cd "$here" && ls fuzz_*.c | sed 's/\.c$//'))
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >/dev/null
status=0
printf '%-20s %10s %12s %s\n' target seconds execs/s result
for t in "${targets[@]}"; do
	name="${t#fuzz_}"
	work="$(mktemp -d)"
	cp -r "$here/corpus/$name/." "$work/" 2>/dev/null || true
	log="$build/$t.log"
	if "$build/bin/$t" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$build/$t-" \
		"$work" >"$log" 2>&1; then
		result="no finding"
	else
		result="FINDING (see $log and $build/$t-*)"
		status=1
	fi
	runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
	printf '%-20s %10s %12s %s\n' "$t" "$seconds" "$((runs / seconds))" "$result"
	rm -rf "$work"
done
exit $status
