#!/usr/bin/env bash
# Chaos: a small federation (secure aggregation, 3 workers, 6 rounds) is run ten times; in each
# run the coordinator or a worker is killed with SIGKILL at random moments (up to three kills)
# and started again. Every run must end with the same final model digest as an uninterrupted
# run with the same seeds. Failed rounds are retried under the same number and the coordinator
# resumes from its checkpoints, so no kill may change the result.
source "$(dirname "$0")/lib/common.bash"

RUNS=${TALLY_CHAOS_RUNS:-10}
keys coordinator w0 w1 w2
args=(--key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 6 --run-id chaos
	--min-workers 3 --min-participants 3 --quorum 3 --model mlp:784-32-10 --patience-ms 1500
	--heartbeat-ms 200 --deadline 30 --sa-stage 5)
wargs=(--scheme dirichlet:1.0 --reconnect-min-ms 100 --reconnect-max-ms 800)

coordinator() { # coordinator PORT STATE LOG
	"$BIN/tally-coordinator" --bind "tcp://127.0.0.1:$1" --endpoint-file "$WORK/endpoint" --state-dir "$2" \
		"${args[@]}" >>"$3" 2>&1 &
	COORD_PID=$!
	PIDS+=("$COORD_PID")
}
worker() { # worker K PORT LOG
	"$BIN/tally-worker" --coordinator "tcp://127.0.0.1:$2" --key "$WORK/keys/w$1.key" \
		--coordinator-key "$WORK/keys/coordinator.pub" --roster "$WORK/enrolled" --data-dir "$FMNIST" \
		--partition "$1/3" "${wargs[@]}" >>"$3" 2>&1 &
	WPID[$1]=$!
	PIDS+=("${WPID[$1]}")
}
digest() { "$BIN/tally" inspect "$1" | awk '/^digest/ {print $2}'; }

# The uninterrupted reference, on a port the kernel picks; later runs reuse one free port.
rm -f "$WORK/endpoint"
coordinator 0 "$WORK/ref" "$WORK/ref-coordinator.log"
wait_for 20 test -s "$WORK/endpoint" || fail "reference coordinator did not start"
port=$(sed 's/.*://' "$WORK/endpoint")
for k in 0 1 2; do worker "$k" "$port" "$WORK/ref-w$k.log"; done
wait_exit "$COORD_PID" 120 || fail "reference run did not finish"
[ "$STATUS" = 0 ] || fail "reference coordinator exited with $STATUS"
ref=$(digest "$WORK/ref/model.safetensors")
for k in 0 1 2; do wait "${WPID[$k]}" 2>/dev/null || true; done
echo "reference digest $ref"

same=0
for run in $(seq 1 "$RUNS"); do
	state="$WORK/run$run"
	log="$WORK/run$run"
	coordinator "$port" "$state" "$log-coordinator.log"
	for k in 0 1 2; do worker "$k" "$port" "$log-w$k.log"; done
	kills=""
	for kill in 1 2 3; do
		sleep "$(/usr/bin/python3 -c "import random; print(round(random.uniform(0.2, 1.2), 2))")"
		kill -0 "$COORD_PID" 2>/dev/null || break
		victim=$((RANDOM % 4))
		if [ "$victim" = 3 ]; then
			kill -9 "$COORD_PID" 2>/dev/null || true
			wait "$COORD_PID" 2>/dev/null || true
			coordinator "$port" "$state" "$log-coordinator.log"
			kills="$kills coordinator"
		else
			kill -9 "${WPID[$victim]}" 2>/dev/null || true
			wait "${WPID[$victim]}" 2>/dev/null || true
			worker "$victim" "$port" "$log-w$victim.log"
			kills="$kills w$victim"
		fi
	done
	wait_exit "$COORD_PID" 240 || fail "run $run (killed:$kills) did not finish"
	[ "$STATUS" = 0 ] || fail "run $run: coordinator exited with $STATUS"
	got=$(digest "$state/model.safetensors")
	for k in 0 1 2; do kill -9 "${WPID[$k]}" 2>/dev/null || true; wait "${WPID[$k]}" 2>/dev/null || true; done
	if [ "$got" = "$ref" ]; then
		same=$((same + 1))
		echo "run $run: killed$kills; digest matches"
	else
		echo "run $run: killed$kills; digest $got differs"
	fi
done
[ "$same" = "$RUNS" ] || fail "$same of $RUNS runs ended with the uninterrupted run's digest"
pass "$same of $RUNS chaos runs ended with the uninterrupted run's digest $ref"
