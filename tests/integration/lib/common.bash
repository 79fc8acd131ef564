# Helpers for tally's integration tests: real processes on loopback, one scratch folder per test,
# everything killed on exit. Source it; it expects TALLY_BIN_DIR (set by ctest).
set -euo pipefail

BIN="${TALLY_BIN_DIR:?TALLY_BIN_DIR is not set (run through ctest)}"
SRC="${TALLY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
FMNIST="${TALLY_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"
export OPENBLAS_NUM_THREADS=1
WORK="$(mktemp -d /tmp/tally-it.XXXXXX)"
PIDS=()

cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		echo "--- logs of the failed test (kept in $WORK) ---"
		for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "PASS: $*"; }

# keys NAME... : tally keygen each NAME in $WORK/keys; workers' .pub are enrolled in $WORK/enrolled
keys() {
	mkdir -p "$WORK/keys" "$WORK/enrolled"
	for n in "$@"; do
		"$BIN/tally" keygen "$WORK/keys/$n" >/dev/null
		[ "$n" = coordinator ] || cp "$WORK/keys/$n.pub" "$WORK/enrolled/"
	done
}

# start_coordinator ARGS... : starts tally-coordinator on a free loopback port; sets COORD_PID, EP
start_coordinator() {
	rm -f "$WORK/endpoint"
	"$BIN/tally-coordinator" --bind 'tcp://127.0.0.1:*' --endpoint-file "$WORK/endpoint" \
		--state-dir "$WORK/state" "$@" >"$WORK/coordinator.log" 2>&1 &
	COORD_PID=$!
	PIDS+=("$COORD_PID")
	wait_for 30 test -s "$WORK/endpoint" || fail "coordinator did not start: $(tail -5 "$WORK/coordinator.log")"
	EP="$(cat "$WORK/endpoint")"
}

# start_worker NAME ARGS... : starts tally-worker with NAME's key; sets WORKER_PID
start_worker() {
	local name="$1"
	shift
	"$BIN/tally-worker" --coordinator "$EP" --key "$WORK/keys/$name.key" \
		--coordinator-key "$WORK/keys/coordinator.pub" --roster "$WORK/enrolled" --data-dir "$FMNIST" "$@" \
		>"$WORK/$name.log" 2>&1 &
	WORKER_PID=$!
	PIDS+=("$WORKER_PID")
}

# wait_for SECONDS COMMAND... : polls COMMAND every 0.1 s until it succeeds or time runs out
wait_for() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@" 2>/dev/null; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# metric ROUND FIELD : a field of a round's line in metrics.jsonl
metric() {
	/usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    o=json.loads(l)
    if o["round"]==int(sys.argv[2]): print(json.dumps(o[sys.argv[3]])); break' \
		"$WORK/state/metrics.jsonl" "$1" "$2"
}

rounds_done() { [ -f "$WORK/state/metrics.jsonl" ] && wc -l <"$WORK/state/metrics.jsonl" || echo 0; }
rounds_at_least() { [ "$(rounds_done)" -ge "$1" ]; }

# wait_exit PID SECONDS : waits for a child to exit and sets STATUS; fails after SECONDS
wait_exit() {
	local pid=$1 deadline=$(($(date +%s) + $2))
	while kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != Z ]; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
	STATUS=0
	wait "$pid" || STATUS=$?
}
