#!/usr/bin/env bash
# One federation run under valgrind's memcheck: the coordinator and two workers (CURVE, secure
# aggregation, real training on a small share of Fashion-MNIST) must finish with no memory
# error and no definite leak. Skipped (77) where valgrind is not installed.
source "$(dirname "$0")/lib/common.bash"

command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 77; }
[ -z "${TALLY_SANITIZE:-}" ] || { echo "sanitizer build ($TALLY_SANITIZE): valgrind runs in the plain build"; exit 77; }
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
	--show-leak-kinds=definite --track-fds=no --quiet)
keys coordinator w0 w1
rm -f "$WORK/endpoint"
"${VG[@]}" "$BIN/tally-coordinator" --bind 'tcp://127.0.0.1:*' --endpoint-file "$WORK/endpoint" \
	--state-dir "$WORK/state" --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" \
	--rounds 2 --min-workers 2 --min-participants 2 --quorum 2 --model mlp:784-16-10 --deadline 300 \
	--sa-stage 120 --patience-ms 60000 --heartbeat-ms 2000 >"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
PIDS+=("$COORD_PID")
wait_for 120 test -s "$WORK/endpoint" || fail "coordinator did not start under valgrind"
EP="$(cat "$WORK/endpoint")"
for k in 0 1; do
	"${VG[@]}" "$BIN/tally-worker" --coordinator "$EP" --key "$WORK/keys/w$k.key" \
		--coordinator-key "$WORK/keys/coordinator.pub" --roster "$WORK/enrolled" --data-dir "$FMNIST" \
		--partition "$k/20" --scheme iid --hello-timeout-ms 60000 >"$WORK/w$k.log" 2>&1 &
	PIDS+=($!)
done
wait_exit "$COORD_PID" 580 || fail "coordinator did not finish under valgrind"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS under valgrind (99: memcheck found errors)"
for p in "${PIDS[@]:1}"; do
	wait_exit "$p" 120 || fail "a worker did not exit"
	[ "$STATUS" = 0 ] || fail "a worker exited with $STATUS under valgrind (99: memcheck found errors)"
done
for r in 1 2; do [ "$(metric $r applied)" = true ] || fail "round $r not applied"; done
pass "coordinator and two workers valgrind-clean over 2 secure rounds"
