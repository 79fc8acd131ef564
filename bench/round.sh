#!/usr/bin/env bash
# round.sh: the coordinator's full-round time and peak memory over CURVE on loopback, for N workers
# and models of ~1e5, ~1e6 and ~1e7 parameters. Workers run `--no-train --format none`, which sends
# a synthetic update at once, so that coordination alone is measured: model broadcast, update pull,
# digest checks, aggregation. (metrics.jsonl's `seconds` ends when the round closes, before the
# mean is applied and the checkpoint written.)
#
# For each cell it prints the median round time over rounds 2..R (from state_dir/metrics.jsonl),
# that time against a wire-bound estimate (N x model bytes at 0.7 GB/s, one CURVE link's rate in
# DESIGN.md), the coordinator's peak RSS (/usr/bin/time %M, else VmHWM sampled from /proc), and
# RSS / (3 x model bytes + 100 MiB). The claim: RSS stays under 3 x model bytes + 100 MiB with
# 32 workers and 1e7 parameters, i.e. the coordinator never holds N updates.
#
# usage: bench/round.sh [--quick] [--rounds R] [--bin DIR] [--keep]
#   --quick     N in {2, 8} and ~1e5, ~1e6 parameters only (a few seconds)
#   --rounds R  rounds per cell (default 4; at least 2, round 1 is not counted)
#   --bin DIR   where tally-coordinator, tally-worker and keygen_helper are
#               (default: $TALLY_BIN_DIR, else build-bench/bin next to this folder)
#   --keep      keep the scratch folder (logs, metrics) and print its path
# Never fails on timing; exits non-zero only when it could not run.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${TALLY_BIN_DIR:-$here/../build-bench/bin}
QUICK=0
KEEP=0
ROUNDS=4
CELL_TIMEOUT=${CELL_TIMEOUT:-240}   # seconds one cell may take before it is declared hung
WIRE_GBS=0.7       # one CURVE connection, 4 MiB frames (DESIGN.md "Physical limits")
TIME_BIN=${TIME_BIN-/usr/bin/time}  # GNU time for peak RSS; set empty to sample VmHWM instead
[ -z "$TIME_BIN" ] || [ -x "$TIME_BIN" ] || TIME_BIN=""

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--keep) KEEP=1 ;;
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
	--bin) BIN=${2:?--bin needs a folder}; shift ;;
	-h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "round.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case "$ROUNDS" in ''|*[!0-9]*) echo "round.sh: --rounds needs a number" >&2; exit 2 ;; esac
[ "$ROUNDS" -ge 2 ] || { echo "round.sh: --rounds must be at least 2" >&2; exit 2; }
for b in tally-coordinator tally-worker; do
	[ -x "$BIN/$b" ] || { echo "round.sh: $BIN/$b not found; build first or pass --bin" >&2; exit 2; }
done

# Plain FedAvg rounds: builds that have secure aggregation (on by default) are told to leave it off.
PLAIN=()
"$BIN/tally-coordinator" --help 2>/dev/null | grep -q -- '--secure-agg' && PLAIN=(--no-secure-agg)

WORK=$(mktemp -d /tmp/tally-round-bench.XXXXXX)
OURS=()   # process ids this script started; only these are ever signalled

cleanup() {
	local p
	for p in "${OURS[@]}"; do
		kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null
	done
	if [ "$KEEP" = 1 ]; then echo "scratch folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- keys: `tally keygen` when built, else bench/keygen_helper ----

make_keys() {
	local dir=$WORK/keys names=(coordinator) k
	mkdir -p "$dir/enrolled"
	for k in $(seq 1 "$MAX_N"); do names+=("w$k"); done
	if [ -x "$BIN/tally" ] && (cd "$dir" && "$BIN/tally" keygen coordinator) >/dev/null 2>&1 &&
	   [ -f "$dir/coordinator.key" ]; then
		for k in "${names[@]:1}"; do
			(cd "$dir" && "$BIN/tally" keygen "$k") >/dev/null || return 1
		done
		KEYGEN="tally keygen"
	elif [ -x "$BIN/keygen_helper" ]; then
		(cd "$dir" && "$BIN/keygen_helper" "${names[@]}") || return 1
		KEYGEN="bench/keygen_helper"
	else
		echo "round.sh: neither $BIN/tally keygen nor $BIN/keygen_helper works" >&2
		return 1
	fi
	for k in "${names[@]:1}"; do cp "$dir/$k.pub" "$dir/enrolled/"; done
}

# ---- one cell ----

json_field() { # FILE ROUND FIELD: the value of FIELD on the last metrics line of ROUND
	grep "\"round\":$2," "$1" | tail -n1 | grep -o "\"$3\":[^,}]*" | head -n1 | cut -d: -f2
}

median() { # numbers on stdin
	sort -g | awk '{v[NR] = $1} END {
		if (NR == 0) { print "nan"; exit }
		print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# phases CELL_DIR ROUNDS: median over rounds 2..R of the broadcast (round start -> last worker holds
# the model) and the tail (last update offered -> the coordinator logs the round closed, which it
# does after applying the mean and saving model and checkpoint), from the log timestamps.
phases() {
	awk -v R="$2" '
	function ts(s,   t) { t = substr(s, 12, 12); split(t, h, ":"); return h[1] * 3600 + h[2] * 60 + h[3] }
	function med(a, n,   i, j, x) {
		for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
		return n == 0 ? "nan" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) }
	/tally-coordinator info: round [0-9]+: [0-9]+ participant/ { r = $5 + 0; start[r] = ts($1) }
	/tally-coordinator info: round [0-9]+: [0-9]+ update/ { r = $5 + 0; end[r] = ts($1) }
	/tally-worker info: round [0-9]+: training on/ { r = $5 + 0; t = ts($1); if (t > got[r]) got[r] = t }
	/tally-worker info: round [0-9]+: trained in/ { r = $5 + 0; t = ts($1); if (t > ready[r]) ready[r] = t }
	END {
		for (r = 2; r <= R; r++) {
			if (!(r in start) || !(r in end) || !(r in got) || !(r in ready)) continue
			nb++; b[nb] = got[r] - start[r]; np++; p[np] = end[r] - ready[r]
		}
		printf "%s %s\n", med(b, nb), med(p, np) }' "$1"/coord.log "$1"/w*.log
}

tail_logs() { # CELL_DIR: the end of every log, for a report
	local f
	for f in "$1"/coord.log "$1"/w1.log "$1"/w2.log; do
		[ -f "$f" ] || continue
		echo "    --- ${f#"$WORK"/} (last 15 lines)"
		tail -n 15 "$f" | sed 's/^/    /'
	done
}

# run_cell N ARCH PARAMS: prints one table row; details go to $WORK/notes
run_cell() {
	local n=$1 arch=$2 params=$3 cell=$WORK/cell-$1-$3 ep coord_pid tpid k t0 status=ok
	local rss_kib="" hwm=0 v wpids=() secs=() r s applied upd

	mkdir -p "$cell/state"
	t0=$SECONDS
	LAST_RSS_KIB=""
	CLAIM_ROW="$n $params 0 coordinator did not start"
	local cmd=("$BIN/tally-coordinator" --bind 'tcp://127.0.0.1:*' --endpoint-file "$cell/endpoint"
		--state-dir "$cell/state" --key "$WORK/keys/coordinator.key" --enrolled "$WORK/keys/enrolled"
		--run-id bench --model "$arch" --rounds "$ROUNDS" --min-workers "$n" --min-participants "$n"
		--quorum "$n" --deadline 180 "${PLAIN[@]}")
	if [ -n "$TIME_BIN" ]; then
		"$TIME_BIN" -f %M -o "$cell/maxrss.kib" "${cmd[@]}" >"$cell/coord.log" 2>&1 &
	else
		"${cmd[@]}" >"$cell/coord.log" 2>&1 &
	fi
	tpid=$!
	OURS+=("$tpid")
	for _ in $(seq 100); do
		[ -s "$cell/endpoint" ] && break
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	coord_pid=$(pgrep -P "$tpid" | head -n1); coord_pid=${coord_pid:-$tpid}
	OURS+=("$coord_pid")
	if [ ! -s "$cell/endpoint" ]; then
		printf '%4s %-18s %s\n' "$n" "$arch" "coordinator did not start"
		{ echo "N=$n $arch: coordinator did not start"; tail_logs "$cell"; } >>"$WORK/notes"
		kill "$coord_pid" 2>/dev/null; wait "$tpid" 2>/dev/null
		OURS=()
		return
	fi
	ep=$(head -n1 "$cell/endpoint")
	for k in $(seq 1 "$n"); do
		OPENBLAS_NUM_THREADS=1 "$BIN/tally-worker" --no-train --format none \
			--key "$WORK/keys/w$k.key" --coordinator-key "$WORK/keys/coordinator.pub" \
			--coordinator "$ep" >"$cell/w$k.log" 2>&1 &
		wpids+=($!)
		OURS+=($!)
	done
	while kill -0 "$tpid" 2>/dev/null; do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$coord_pid/status" 2>/dev/null)
		[ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
		if [ $((SECONDS - t0)) -gt "$CELL_TIMEOUT" ]; then
			status="HUNG (killed after ${CELL_TIMEOUT} s)"
			kill "$coord_pid" 2>/dev/null
			sleep 3
			kill -0 "$coord_pid" 2>/dev/null && kill -9 "$coord_pid" 2>/dev/null
		fi
		sleep 0.2
	done
	wait "$tpid"
	k=$?
	[ "$k" = 0 ] || [ "$status" != ok ] || status="coordinator exit status $k"
	for _ in $(seq 50); do # workers leave on the coordinator's final goodbye
		v=0
		for p in "${wpids[@]}"; do kill -0 "$p" 2>/dev/null && v=$((v + 1)); done
		[ "$v" = 0 ] && break
		sleep 0.2
	done
	if [ "$v" != 0 ]; then
		echo "N=$n $arch: $v worker(s) still running 10 s after the coordinator exited; stopped" >>"$WORK/notes"
		for p in "${wpids[@]}"; do kill "$p" 2>/dev/null; done
	fi
	for p in "${wpids[@]}"; do wait "$p" 2>/dev/null; done
	OURS=()   # all reaped: their ids may now belong to someone else
	[ -s "$cell/maxrss.kib" ] && rss_kib=$(grep -E '^[0-9]+$' "$cell/maxrss.kib" | tail -n1)
	[ -n "$rss_kib" ] || rss_kib=$hwm

	local m=$cell/state/metrics.jsonl
	for r in $(seq 1 "$ROUNDS"); do
		applied=$( [ -f "$m" ] && json_field "$m" "$r" applied)
		upd=$( [ -f "$m" ] && json_field "$m" "$r" updates)
		if [ "$applied" != true ] || [ "$upd" != "$n" ]; then
			[ "$status" = ok ] && status="round $r: applied=${applied:-none} updates=${upd:-none}"
		fi
		k=$( [ -f "$m" ] && grep -c "\"round\":$r," "$m")
		if [ "${k:-0}" -gt 1 ] && [ "$status" = ok ]; then status="round $r took $k attempts"; fi
		s=$( [ -f "$m" ] && json_field "$m" "$r" seconds)
		[ "$r" -ge 2 ] && [ -n "$s" ] && secs+=("$s")
	done
	if [ "$status" != ok ]; then
		{ echo "N=$n $arch: $status"; tail_logs "$cell"; } >>"$WORK/notes"
	fi
	local med ph
	med=$(printf '%s\n' "${secs[@]}" | grep . | median)
	ph=$(phases "$cell" "$ROUNDS")
	awk -v n="$n" -v arch="$arch" -v p="$params" -v t="$med" -v rss="$rss_kib" -v wire="$WIRE_GBS" \
	    -v ph="$ph" -v st="$status" -v wall=$((SECONDS - t0)) 'BEGIN {
		mb = p * 4; mib = mb / 1048576; rssm = rss / 1024
		bound = n * mb / (wire * 1e9)
		split(ph, f, " ")
		xw = (t == "nan") ? "-" : sprintf("%.2f", t / bound)
		tt = (t == "nan") ? "-" : sprintf("%.3f", t)
		bc = (f[1] == "nan") ? "-" : sprintf("%.3f", f[1])
		pl = (f[2] == "nan") ? "-" : sprintf("%.3f", f[2])
		printf "%4d %-18s %9d %6.1f %8s %8s %8s %7s %8.1f %8.2f %5d  %s\n", n, arch, p, mib, tt, bc, pl, xw,
		       rssm, rssm / (3 * mib + 100), wall, st }'
	CLAIM_ROW="$n $params $rss_kib $status"
	LAST_RSS_KIB=$rss_kib
}

# ---- the matrix ----

SIZES=("mlp:784-128-10 101770" "mlp:784-1260-10 1001710" "mlp:784-12600-10 10017010")
NS=(2 8 32)
if [ "$QUICK" = 1 ]; then SIZES=("${SIZES[@]:0:2}"); NS=(2 8); fi
MAX_N=${NS[-1]}
make_keys || exit 1
: >"$WORK/notes"

echo "round.sh: coordinator round time and peak RSS over CURVE on loopback"
echo "  coordinator: plain FedAvg ${PLAIN[*]}; workers: tally-worker --no-train --format none"
echo "  (synthetic update, no training), OPENBLAS_NUM_THREADS=1"
echo "  $ROUNDS rounds per cell; round s = median 'seconds' of rounds 2..$ROUNDS in metrics.jsonl"
echo "  bcast s = round start -> last worker holds the model; tail s = last update offered -> round logged"
echo "  as closed (after the mean is applied and the model and checkpoint saved); both from log time"
echo "  stamps, medians over the same rounds. Earlier pulls overlap the workers' synthetic updates."
echo "  x wire = round s / (N x model bytes / $WIRE_GBS GB/s); RSS = coordinator peak ($( [ -n "$TIME_BIN" ] && echo "$TIME_BIN %M" || echo 'VmHWM sampled every 0.2 s'))"
echo "  RSS/lim = RSS / (3 x model bytes + 100 MiB); keys from $KEYGEN; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%4s %-18s %9s %6s %8s %8s %8s %7s %8s %8s %5s  %s\n' N arch params "MiB" "round s" "bcast s" \
	"tail s" "x wire" "RSS MiB" "RSS/lim" "wall" status
claim=""
slopes=()
for size in "${SIZES[@]}"; do
	set -- $size
	first=""
	for n in "${NS[@]}"; do
		run_cell "$n" "$1" "$2"
		[ "$n" = 32 ] && [ "$2" = 10017010 ] && claim=$CLAIM_ROW
		[ -n "$first" ] || first=${LAST_RSS_KIB:-0}
	done
	# How the coordinator's memory grows with N, in units of one tensor frame (a chunk).
	[ -n "$first" ] && [ -n "$LAST_RSS_KIB" ] && [ "$first" != 0 ] && [ "$LAST_RSS_KIB" != 0 ] &&
	slopes+=("$(awk -v p="$2" -v a="$first" -v b="$LAST_RSS_KIB" -v n0="${NS[0]}" -v n1="${NS[-1]}" 'BEGIN {
		chunk = (p < 1048576 ? p : 1048576) * 4 / 1048576; d = (b - a) / 1024 / (n1 - n0)
		printf "info: %d params: coordinator RSS grows %.2f MiB per added worker (N=%d..%d) = %.2f x one %.2f MiB frame",
		       p, d, n0, n1, d / chunk, chunk }')")
done
echo
[ ${#slopes[@]} = 0 ] || printf '%s\n' "${slopes[@]}"
if [ -s "$WORK/notes" ]; then
	echo "notes:"
	cat "$WORK/notes"
	echo
fi
if [ -z "$claim" ]; then
	echo "claim: coordinator RSS < 3x model bytes + 100 MiB at N=32, 1e7 parameters: not measured (--quick)"
else
	set -- $claim
	awk -v p="$2" -v rss="$3" -v st="${*:4}" 'BEGIN {
		lim = (3 * p * 4 + 100 * 1048576) / 1048576; r = rss / 1024
		printf "claim: coordinator RSS %.0f MiB at N=32, 1e7 parameters = %.2fx (3x model bytes + 100 MiB = %.0f MiB; need < 1x): %s\n",
		       r, r / lim, lim, (st == "ok" && r < lim) ? "ok" : (st == "ok" ? "NOT MET" : "NOT MEASURED (" st ")") }'
fi
