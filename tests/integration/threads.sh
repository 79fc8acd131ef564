#!/usr/bin/env bash
# The threaded parts in one short run: each worker trains in a thread while its loop keeps the
# heartbeats and the secure-aggregation stages going, and a new round start cancels a training
# job in flight; the coordinator's libzmq I/O thread frees broadcast chunks while its loop paces
# the next ones. Small on purpose: the suite also runs it under ThreadSanitizer, where a data race
# makes the processes exit with status 66.
source "$(dirname "$0")/lib/common.bash"

keys coordinator w0 w1
start_coordinator --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 3 \
	--min-workers 2 --min-participants 2 --quorum 2 --model mlp:784-16-10 --epochs 1 --deadline 120 \
	--sa-stage 60 --patience-ms 30000
for k in 0 1; do start_worker "w$k" --partition "$k/2" --scheme iid; done
wait_exit "$COORD_PID" 540 || fail "coordinator did not finish"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS"
for p in "${PIDS[@]:1}"; do
	wait_exit "$p" 60 || fail "a worker did not exit after the run"
	[ "$STATUS" = 0 ] || fail "a worker exited with $STATUS"
done
for r in 1 2 3; do [ "$(metric $r applied)" = true ] || fail "round $r not applied"; done
grep -q "ThreadSanitizer" "$WORK"/*.log && fail "ThreadSanitizer reported a race"
pass "3 secure rounds with training threads; no sanitizer report"
