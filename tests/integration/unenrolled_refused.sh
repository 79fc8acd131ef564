#!/usr/bin/env bash
# A worker whose key is not enrolled is refused at the CURVE handshake (the coordinator logs the
# key's fingerprint; the worker says in words that its key was refused), a plain-text worker cannot
# join a CURVE coordinator, and the enrolled workers finish their rounds.
source "$(dirname "$0")/lib/common.bash"

keys coordinator w0 w1
"$BIN/tally" keygen "$WORK/keys/intruder" >"$WORK/intruder-keygen.txt"
fp=$(awk '/^fingerprint/ {print $2}' "$WORK/intruder-keygen.txt")
[ -n "$fp" ] || fail "tally keygen printed no fingerprint"

start_coordinator --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 2 \
	--min-workers 2 --min-participants 2 --quorum 2
start_worker intruder --partition 0/2 --no-train --format none
intruder=$WORKER_PID
"$BIN/tally-worker" --insecure --coordinator "$EP" --no-train --format none --name plain \
	>"$WORK/plain.log" 2>&1 &
PIDS+=($!)
wait_for 20 grep -q "refused a connection .* key $fp is not enrolled" "$WORK/coordinator.log" ||
	fail "coordinator did not log the refused key's fingerprint $fp"
wait_for 20 grep -q "refused this worker's key" "$WORK/intruder.log" ||
	fail "the refused worker did not report the refusal"
start_worker w0 --partition 0/2 --scheme iid
start_worker w1 --partition 1/2 --scheme iid

wait_exit "$COORD_PID" 240 || fail "enrolled workers did not finish"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS"
[ "$(rounds_done)" = 2 ] || fail "expected 2 rounds, found $(rounds_done)"
for r in 1 2; do [ "$(metric $r updates)" = 2 ] || fail "round $r had $(metric $r updates) updates"; done
grep -q "joined run" "$WORK/intruder.log" && fail "the intruder joined the run"
grep -q "joined run" "$WORK/plain.log" && fail "a plain-text worker joined a CURVE coordinator"
grep -q "worker 'intruder'\|worker 'plain'" "$WORK/coordinator.log" && fail "registry holds a refused worker"
kill -0 "$intruder" 2>/dev/null || fail "the refused worker crashed instead of retrying"
pass "unenrolled key $fp refused; plain-text refused; 2 enrolled workers finished 2 rounds"
