#!/usr/bin/env bash
# secagg_round.sh: what secure aggregation adds to a whole round, multi-process, on loopback with
# CURVE. One tally-coordinator and 16 tally-worker processes run 3 rounds of a ~1.0e6-parameter
# model (mlp:1000-990-10: 1000*990 + 990 + 990*10 + 10 = 1,000,900 parameters) three times:
#   secure        secure aggregation (SecAgg+) with the default settings: control, model and
#                 shares over CURVE, masked update chunks over the open data path;
#   secure-curve  the same with workers --no-data-path: masked chunks over CURVE as well;
#   plain         --no-secure-agg (plain FedAvg; plain updates always travel over CURVE).
# Workers run `--no-train --format none`, which sends a small synthetic update at once, so that
# the rounds measure coordination alone: model broadcast, the four key-exchange and unmask stages
# (secure only), masking, the upload, aggregation and unmasking.
#
# It prints each round's seconds (state_dir/metrics.jsonl), the median over rounds 2..3 of each
# mode (round 1 also pays for connecting and enrolling), and the ratios to plain. The claim: a
# secure round (default settings) takes at most 1.5x a plain one. Nothing fails on timing; the
# exit status is non-zero only when a mode could not run (no binaries, a crash, a round not
# applied with all 16 updates, or data_path_chunks not > 0 exactly in the secure mode).
#
# usage: bench/secagg_round.sh [BIN_DIR] [--repeat R] [--keep]
#   BIN_DIR     where tally, tally-coordinator and tally-worker are (default build/bin beside bench/)
#   --repeat R  run the three modes R times, alternating, and pool rounds 2..3 (default 1)
#   --keep      keep the scratch folder (keys, logs, metrics) and print its path
set -u

BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/bin"
REPEAT=1
KEEP=0
N=16
ROUNDS=3
MODEL=mlp:1000-990-10
PARAMS=1000900
RUN_TIMEOUT=300   # seconds one coordinator run may take before it is declared hung
CLAIM=1.5

while [ $# -gt 0 ]; do
	case "$1" in
	--repeat) REPEAT=${2:?--repeat needs a number}; shift ;;
	--keep) KEEP=1 ;;
	-h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "secagg_round.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	*) BIN=$1 ;;
	esac
	shift
done
case "$REPEAT" in ''|*[!0-9]*|0) echo "secagg_round.sh: --repeat needs a positive number" >&2; exit 2 ;; esac
for b in tally tally-coordinator tally-worker; do
	[ -x "$BIN/$b" ] || { echo "secagg_round.sh: $BIN/$b not found; build it or pass BIN_DIR" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/tally-secagg-round.XXXXXX) || exit 1
PIDS=()   # processes this script started and has not reaped; only these are ever signalled

# is_ours PID: still running, and still one of our tally programs (not a reused process id)
is_ours() {
	kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "^$BIN/tally-"
}

stop_ours() {
	local p left=1
	for p in "${PIDS[@]}"; do is_ours "$p" && kill "$p" 2>/dev/null; done
	for _ in $(seq 30); do # up to 3 s to leave cleanly, then SIGKILL
		left=0
		for p in "${PIDS[@]}"; do is_ours "$p" && left=1; done
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do is_ours "$p" && kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	PIDS=()
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	stop_ours
	if [ "$KEEP" = 1 ]; then echo "scratch folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

export OPENBLAS_NUM_THREADS=1

# ---- keys: the coordinator's, 16 workers', and the enrolled folder of the workers' .pub ----

make_keys() {
	local k
	mkdir -p "$WORK/keys/enrolled" || return 1
	(cd "$WORK/keys" && "$BIN/tally" keygen coordinator >/dev/null) || return 1
	for k in $(seq 1 "$N"); do
		(cd "$WORK/keys" && "$BIN/tally" keygen "w$k" >/dev/null) || return 1
		cp "$WORK/keys/w$k.pub" "$WORK/keys/enrolled/" || return 1
	done
}

# metric FILE ROUND FIELD: FIELD of ROUND's line in metrics.jsonl (compact JSON, one line a round)
metric() {
	grep "\"round\":$2," "$1" 2>/dev/null | tail -n1 | grep -o "\"$3\":[^,}]*" | head -n1 | cut -d: -f2
}

median() { # numbers on stdin
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# wait_gone PID SECONDS: whether PID exited within SECONDS
wait_gone() {
	local _
	for _ in $(seq $(($2 * 5))); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.2
	done
	! kill -0 "$1" 2>/dev/null
}

# children_cpu: user + system CPU seconds of every child this shell has reaped so far (`times` runs
# in this shell, not in a command substitution, whose own children would be none)
children_cpu() {
	times >"$WORK/times"
	CHILDREN_CPU=$(tail -n1 "$WORK/times" | tr 'ms' '  ' | awk '{ print $1 * 60 + $2 + $3 * 60 + $4 }')
}

# run_mode MODE RUN: one coordinator and N workers for ROUNDS rounds; MODE is secure or plain.
# Appends "MODE s1 s2 ... cpu status" to $WORK/results (cpu: CPU seconds of all its processes).
run_mode() {
	local mode=$1 dir=$WORK/$1-$2 coord ep k p status=ok r s applied upd sec dp secs=() flag=() wflag=() cpu0
	children_cpu
	cpu0=$CHILDREN_CPU
	[ "$mode" = plain ] && flag=(--no-secure-agg)
	[ "$mode" = secure-curve ] && wflag=(--no-data-path)
	mkdir -p "$dir/state"
	"$BIN/tally-coordinator" --bind 'tcp://127.0.0.1:*' --endpoint-file "$dir/endpoint" \
		--key "$WORK/keys/coordinator.key" --enrolled "$WORK/keys/enrolled" --min-workers "$N" \
		--min-participants "$N" --quorum "$N" --rounds "$ROUNDS" --model "$MODEL" --state-dir "$dir/state" \
		"${flag[@]}" >"$dir/coord.log" 2>&1 &
	coord=$!
	PIDS+=("$coord")
	for _ in $(seq 100); do
		[ -s "$dir/endpoint" ] && break
		kill -0 "$coord" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$dir/endpoint" ]; then
		echo "$mode $(printf -- '- %.0s' $(seq 0 "$ROUNDS"))coordinator did not start (see $dir/coord.log)" \
			>>"$WORK/results"
		tail -n 5 "$dir/coord.log" >&2
		stop_ours
		return 1
	fi
	ep=$(head -n1 "$dir/endpoint")
	for k in $(seq 1 "$N"); do
		"$BIN/tally-worker" --no-train --format none --key "$WORK/keys/w$k.key" \
			--coordinator-key "$WORK/keys/coordinator.pub" --roster "$WORK/keys/enrolled" \
			--coordinator "$ep" "${wflag[@]}" >"$dir/w$k.log" 2>&1 &
		PIDS+=("$!")
	done
	if ! wait_gone "$coord" "$RUN_TIMEOUT"; then
		status="HUNG (stopped after $RUN_TIMEOUT s)"
	else
		wait "$coord"
		k=$?
		[ "$k" = 0 ] || status="coordinator exit status $k"
	fi
	for p in "${PIDS[@]:1}"; do wait_gone "$p" 10 || break; done   # workers leave on the final goodbye
	stop_ours
	for r in $(seq 1 "$ROUNDS"); do
		applied=$(metric "$dir/state/metrics.jsonl" "$r" applied)
		upd=$(metric "$dir/state/metrics.jsonl" "$r" updates)
		sec=$(metric "$dir/state/metrics.jsonl" "$r" secure_agg)
		s=$(metric "$dir/state/metrics.jsonl" "$r" seconds)
		secs+=("${s:--}")
		if [ "$status" = ok ] && { [ "$applied" != true ] || [ "$upd" != "$N" ]; }; then
			status="round $r: applied=${applied:-none} updates=${upd:-none}"
		fi
		if [ "$status" = ok ] && [ "$sec" != "$([ "$mode" = plain ] && echo false || echo true)" ]; then
			status="round $r: secure_agg=${sec:-none} in $mode mode"
		fi
		dp=$(metric "$dir/state/metrics.jsonl" "$r" data_path_chunks)
		if [ "$status" = ok ] && { { [ "$mode" = secure ] && [ "${dp:-0}" = 0 ]; } ||
			{ [ "$mode" != secure ] && [ "${dp:-0}" != 0 ]; }; }; then
			status="round $r: data_path_chunks=${dp:-none} in $mode mode"
		fi
	done
	children_cpu
	echo "$mode ${secs[*]} $(awk -v a="$cpu0" -v b="$CHILDREN_CPU" 'BEGIN { printf "%.1f", b - a }') $status" \
		>>"$WORK/results"
	[ "$status" = ok ] || { echo "secagg_round.sh: $mode run $2: $status; last lines of $dir/coord.log:" >&2;
		tail -n 8 "$dir/coord.log" >&2; return 1; }
}

# ---- run ----

make_keys || { echo "secagg_round.sh: tally keygen failed" >&2; exit 1; }
: >"$WORK/results"
echo "secagg_round.sh: $N workers + coordinator on loopback over CURVE, $MODEL ($PARAMS parameters), $ROUNDS rounds"
echo "  workers: tally-worker --no-train --format none; OPENBLAS_NUM_THREADS=1; $(nproc) cores;" \
	"load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  round s = 'seconds' of each round in state_dir/metrics.jsonl; median over rounds 2..$ROUNDS"
echo "  cpu s = user + system CPU of the coordinator and all workers over the whole run (all rounds, start-up)"
echo
failed=0
for rep in $(seq 1 "$REPEAT"); do
	for mode in secure secure-curve plain; do
		run_mode "$mode" "$rep" || failed=1
	done
done
grep -m1 "secure aggregation over" "$WORK"/secure-1/coord.log 2>/dev/null | sed 's/^.*round [0-9]*: /  secure rounds: /'
printf '%-12s %-4s' mode run
for r in $(seq 1 "$ROUNDS"); do printf ' %9s' "round $r"; done
printf ' %12s %6s  %s\n' "median 2..$ROUNDS" "cpu s" status
declare -A med cpu
for mode in secure secure-curve plain; do
	rep=0
	while read -r m rest; do
		[ "$m" = "$mode" ] || continue
		rep=$((rep + 1))
		# shellcheck disable=SC2086 # the fields are words: split them
		set -- $rest
		printf '%-12s %-4s' "$mode" "$rep"
		for r in $(seq 1 "$ROUNDS"); do printf ' %9s' "${1:--}"; shift; done
		printf ' %12s %6s  %s\n' "$(echo "$rest" | cut -d' ' -f2-"$ROUNDS" | tr ' ' '\n' | grep -v '^-$' | median)" \
			"$1" "${*:2}"
	done <"$WORK/results"
	med[$mode]=$(awk -v m="$mode" -v R="$ROUNDS" '$1 == m && $(R + 3) == "ok" {
		for (r = 3; r <= R + 1; r++) if ($r != "-") print $r }' "$WORK/results" | median)
	cpu[$mode]=$(awk -v m="$mode" -v R="$ROUNDS" '$1 == m && $(R + 3) == "ok" { print $(R + 2) }' \
		"$WORK/results" | median)
	printf '%-12s %-4s %*s %12s %6s\n' "$mode" all $((ROUNDS * 10)) "" "${med[$mode]}" "${cpu[$mode]}"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
awk -v s="${med[secure]}" -v p="${med[plain]}" -v c="$CLAIM" -v n="$N" -v R="$ROUNDS" \
    -v cs="${cpu[secure]}" -v cp="${cpu[plain]}" 'BEGIN {
	if (s == "nan" || p == "nan" || p <= 0) {
		printf "claim: secure round <= %.1fx plain round (n=%d, 1.0e6 parameters, loopback): NOT MEASURED\n", c, n
		exit }
	printf "claim: secure round <= %.1fx plain round (n=%d, 1.0e6 parameters, loopback, default settings, median of rounds 2..%d): " \
	       "%.2fx (secure %.3f s, plain %.3f s): %s  [CPU of all processes per run: secure %s s, plain %s s]\n",
	       c, n, R, s / p, s, p, (s / p <= c) ? "ok" : "NOT MET", cs, cp }'
awk -v s="${med[secure-curve]}" -v p="${med[plain]}" 'BEGIN {
	if (s != "nan" && p != "nan" && p > 0)
		printf "also: secure with every chunk over CURVE (workers --no-data-path): %.2fx the plain round (%.3f s)\n", s / p, s }'
exit "$failed"
