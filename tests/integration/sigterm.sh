#!/usr/bin/env bash
# SIGTERM shuts the coordinator down cleanly: it exits 0 within seconds, says goodbye to its
# workers, and leaves a complete model file and metrics, with no temporary files behind. Then the
# same for both daemons started without OPENBLAS_NUM_THREADS, where OpenBLAS's thread pool (started
# before main, so not blocking the signals) can be the thread a SIGTERM lands on.
source "$(dirname "$0")/lib/common.bash"

keys coordinator w0 w1
start_coordinator --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 100000 \
	--min-workers 2 --min-participants 2 --model mlp:784-64-10
start_worker w0 --partition 0/2 --scheme iid
start_worker w1 --partition 1/2 --scheme iid
wait_for 120 rounds_at_least 2 || fail "no two rounds finished"
kill -TERM "$COORD_PID"
wait_exit "$COORD_PID" 15 || fail "coordinator still running 15 s after SIGTERM"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS after SIGTERM"
grep -q "shutting down" "$WORK/coordinator.log" || fail "no shutdown message"
wait_for 10 grep -q "coordinator going away\|said goodbye" "$WORK/w0.log" || fail "w0 was not told goodbye"
ls "$WORK/state" | grep -q '\.tmp\.' && fail "temporary files left in the state folder"
"$BIN/tally" inspect "$WORK/state/model.safetensors" >"$WORK/inspect.txt" || fail "model file unreadable"
grep -q "mlp:784-64-10" "$WORK/inspect.txt" || fail "model file has the wrong architecture"
/usr/bin/python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$WORK/state/metrics.jsonl" ||
	fail "metrics.jsonl has a broken line"
pass "SIGTERM: exit 0, goodbye sent, model and metrics intact"

# Without OPENBLAS_NUM_THREADS: several OpenBLAS threads in each process, all with SIGTERM open.
for i in 1 2 3; do
	rm -f "$WORK/endpoint"
	env -u OPENBLAS_NUM_THREADS "$BIN/tally-coordinator" --insecure --bind 'tcp://127.0.0.1:*' \
		--endpoint-file "$WORK/endpoint" --state-dir "$WORK/state-blas$i" --model mlp:20-10 \
		>"$WORK/coordinator-blas$i.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_for 10 test -s "$WORK/endpoint" || fail "coordinator (no OPENBLAS_NUM_THREADS) did not start"
	env -u OPENBLAS_NUM_THREADS "$BIN/tally-worker" --insecure --name "blas$i" --no-train --format none \
		--coordinator "$(head -n1 "$WORK/endpoint")" >"$WORK/worker-blas$i.log" 2>&1 &
	wpid=$!
	PIDS+=("$wpid")
	wait_for 10 grep -q "joined run" "$WORK/worker-blas$i.log" || fail "worker (no OPENBLAS_NUM_THREADS) did not join"
	[ "$(ls "/proc/$pid/task" | wc -l)" -gt 2 ] || fail "expected OpenBLAS threads in the coordinator"
	kill -TERM "$wpid"
	wait_exit "$wpid" 10 || fail "worker still running 10 s after SIGTERM (no OPENBLAS_NUM_THREADS)"
	[ "$STATUS" = 0 ] || fail "worker exited with $STATUS after SIGTERM (no OPENBLAS_NUM_THREADS)"
	kill -TERM "$pid"
	wait_exit "$pid" 10 || fail "coordinator still running 10 s after SIGTERM (no OPENBLAS_NUM_THREADS)"
	[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS after SIGTERM (no OPENBLAS_NUM_THREADS, try $i)"
done
pass "SIGTERM without OPENBLAS_NUM_THREADS: both daemons exit 0 (3 tries)"
