#!/usr/bin/env bash
# Durable rounds: the coordinator is killed (SIGKILL) mid-run and its newest checkpoint is
# truncated; started again on the same state folder it says so, resumes from the previous good
# checkpoint without operator action, the workers rejoin by themselves, and the run ends with
# the very model (same digest) of an uninterrupted run with the same seeds.
source "$(dirname "$0")/lib/common.bash"

keys coordinator w0 w1 w2
args=(--key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 5 --run-id resume-test
	--min-workers 3 --min-participants 3 --quorum 3 --model mlp:784-32-10 --patience-ms 2000
	--heartbeat-ms 200 --deadline 60 --sa-stage 10)
workers() {
	for k in 0 1 2; do
		start_worker "w$k" --partition "$k/3" --scheme dirichlet:1.0 --reconnect-min-ms 200 \
			--reconnect-max-ms 1000
	done
}

# The uninterrupted reference.
start_coordinator "${args[@]}"
workers
wait_exit "$COORD_PID" 120 || fail "reference run did not finish"
[ "$STATUS" = 0 ] || fail "reference coordinator exited with $STATUS"
ref=$("$BIN/tally" inspect "$WORK/state/model.safetensors" | awk '/^digest/ {print $2}')
wait_for 10 bash -c "! pgrep -f 'tally-worker --coordinator $EP' >/dev/null" || true
mv "$WORK/state" "$WORK/reference"
mv "$WORK/coordinator.log" "$WORK/reference.log"

# The interrupted run, on a fixed port so that the restarted coordinator is where workers left it.
start_coordinator "${args[@]}"
port=${EP##*:}
workers
wait_for 120 rounds_at_least 3 || fail "no three rounds before the kill"
kill -9 "$COORD_PID"
wait "$COORD_PID" 2>/dev/null || true
newest=$(ls "$WORK/state/checkpoints" | sort | tail -n 1)
truncate -s 100 "$WORK/state/checkpoints/$newest"
echo "killed the coordinator after $(rounds_done) rounds; truncated $newest"
mv "$WORK/coordinator.log" "$WORK/coordinator-1.log"
"$BIN/tally-coordinator" --bind "tcp://127.0.0.1:$port" --state-dir "$WORK/state" "${args[@]}" \
	>"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
PIDS+=("$COORD_PID")
wait_exit "$COORD_PID" 180 || fail "the restarted coordinator did not finish"
[ "$STATUS" = 0 ] || fail "restarted coordinator exited with $STATUS"
grep -q "checkpoint unusable: .*$newest" "$WORK/coordinator.log" || fail "the truncated checkpoint was not reported"
grep -q "resuming run resume-test after round" "$WORK/coordinator.log" || fail "the coordinator did not resume"
got=$("$BIN/tally" inspect "$WORK/state/model.safetensors" | awk '/^digest/ {print $2}')
"$BIN/tally" inspect "$WORK/state/model.safetensors" | grep -q "^round *5" || fail "final model is not round 5"
[ -n "$ref" ] && [ "$got" = "$ref" ] || fail "final model $got differs from the uninterrupted run's $ref"
ls "$WORK/state" "$WORK/state/checkpoints" | grep -q '\.tmp\.' && fail "temporary files left behind"
pass "resumed past a truncated checkpoint; final digest $got equals the uninterrupted run's"
