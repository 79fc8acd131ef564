#!/usr/bin/env bash
# A worker killed (SIGKILL) while it trains does not stop the round: the round closes at its
# deadline with the other updates, and the next rounds go on without it. (Plain FedAvg: with
# secure aggregation, dropouts are the subject of secagg_dropouts.sh.)
source "$(dirname "$0")/lib/common.bash"

keys coordinator w0 w1 w2
start_coordinator --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 4 \
	--min-workers 2 --min-participants 2 --quorum 2 --deadline 6 --patience-ms 3000 --epochs 2 \
	--no-secure-agg
start_worker w0 --partition 0/3 --scheme iid
start_worker w1 --partition 1/3 --scheme iid
start_worker w2 --partition 2/3 --scheme iid
victim=$WORKER_PID

wait_for 120 grep -q "round 2: training" "$WORK/w2.log" || fail "w2 never started training round 2"
kill -9 "$victim"
echo "killed w2 while it trained round 2"

wait_exit "$COORD_PID" 240 || fail "coordinator did not finish after a worker was killed"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS"
[ "$(rounds_done)" = 4 ] || fail "expected 4 rounds, found $(rounds_done)"
[ "$(metric 2 participants)" = 3 ] || fail "round 2 should have selected 3 workers"
[ "$(metric 2 updates)" = 2 ] || fail "round 2 should have aggregated the 2 surviving updates"
[ "$(metric 2 applied)" = true ] || fail "round 2 was not applied"
for r in 3 4; do
	[ "$(metric $r applied)" = true ] || fail "round $r not applied"
	[ "$(metric $r participants)" = 2 ] || fail "round $r selected $(metric $r participants), not the 2 live workers"
done
grep -q "worker 'w2' silent\|'w2'.*deadline passed\|update of 'w2' not used" "$WORK/coordinator.log" ||
	fail "coordinator did not report losing w2"
pass "round 2 closed without the killed worker; rounds 3-4 went on"
