#!/usr/bin/env bash
# Hostile peers. Honest workers keep a federation going while an enrolled "worker" (tally-hostile,
# a fresh key per case) sends the coordinator one bad input after another: garbage, wrong versions
# and run ids, oversize and multi-frame messages, messages only a coordinator sends, bad update
# offers and chunks, NaN, Inf and huge values, replays, floods, out-of-stage secure-aggregation
# messages (tally-hostile --list). For every case: the coordinator is still alive, its log names
# the problem, the hostile worker got a clear answer, and the round it was in went on (without its
# update, or with it when the bad input was only a replay, which must be ignored). At the end each
# coordinator exits 0 on SIGTERM with every round applied, its model loads in numpy and is
# accurate, and no temporary file is left. Two coordinators run one after the other: plain FedAvg
# over a two-chunk model (mlp:784-1340-10, so that taking an update back out is exercised) and
# secure aggregation over a small one (mlp:784-16-10, three honest workers so that a cohort of
# four survives the hostile one dropping out). A failing case does not stop the others: all are
# run, a dead coordinator is restarted from its checkpoint, and the failures are listed at the end.
source "$(dirname "$0")/lib/common.bash"

HOSTILE="$BIN/tally-hostile"
[ -x "$HOSTILE" ] || fail "$HOSTILE is not built (target tally-hostile)"
PY=/usr/bin/python3
DEADLINE=8          # rounds.deadline_s of both coordinators
EXAMPLES=2000       # what each honest worker trains on (partitions of 1/30) and the hostile claims
FAILS=()
RESULTS=()

# ---- what each case must produce ----
# CASE | coordinator log (ERE; NAME is the hostile's name, FP the intruder's fingerprint; - for
# none) | tally-hostile's output (ERE; " && " joins several) | checks on the round it was in:
#   without   its round applied with the honest updates only
#   with      its round applied with its update too (a replay is ignored, not punished)
#   applied   its round applied with at least the honest updates
#   deadline  as without, and the round closed by its deadline
#   retried   its attempt discarded, and the round then applied on a retry
#   weight    its round applied, and its weight not taken at face value
#   moved     the honest updates moved most of the model in every round it took part in
#   progress  rounds were applied while it stayed connected
EXPECT=$(cat <<'EOF'
garbage|refused a message from NAME: envelope of 64 bytes does not parse as protobuf|reply refusal: envelope of 64 bytes does not parse|-
empty|refused a message from NAME: envelope of 0 bytes has no body|reply refusal: envelope of 0 bytes has no body|-
truncated|refused a message from NAME: envelope of [0-9]+ bytes does not parse as protobuf|reply refusal: envelope of [0-9]+ bytes does not parse|-
version-2|refused a message from NAME: protocol version 2 is not the supported version 1|reply refusal: protocol version 2 is not|-
version-0|refused a message from NAME: protocol version 0 is not the supported version 1|reply refusal: protocol version 0 is not|-
run-id-wrong|refused heartbeat from 'NAME': run id not-this-run is not|reply refusal: wrong run id|-
run-id-chars|refused a message from NAME: field run_id has a character outside|reply refusal: field run_id has a character outside|-
run-id-long|refused a message from NAME: field run_id must have 1 to 63 characters|reply refusal: field run_id must have|-
hello-long-name|refused a message from NAME: field hello.name must have 1 to 63 characters|reply refusal: field hello.name must have|-
hello-control-chars|refused a message from NAME: field hello.name has a character outside|reply refusal: field hello.name has a character outside|-
refusal-control-chars|refused a message from NAME: field refusal.reason holds a control character|reply refusal: field refusal.reason holds a control character|-
bye-long-reason|refused a message from NAME: field bye.reason is longer than 255 bytes|reply refusal: field bye.reason is longer|-
three-frames|refused a message from NAME: message has more than one tensor frame|reply refusal: message has more than one tensor frame|-
envelope-3mib|refused a message from NAME: envelope of [0-9]+ bytes is over the limit of 2097152|reply refusal: envelope of [0-9]+ bytes is over the limit|-
chunk-index-huge|refused a message from NAME: chunk index 1099511627776 is out of range|reply refusal: chunk index 1099511627776 is out of range|-
send-round-start|refused round_start from 'NAME': not a message a worker sends|reply refusal: unexpected message type|-
send-welcome|refused welcome from 'NAME': not a message a worker sends|reply refusal: unexpected message type|-
send-model-chunk|refused model_chunk from 'NAME': not a message a worker sends|reply refusal: unexpected message type|-
send-chunk-request|refused chunk_request from 'NAME': not a message a worker sends|reply refusal: unexpected message type|-
send-round-end|refused round_end from 'NAME': not a message a worker sends|reply refusal: unexpected message type|-
send-key-list|refused key_list from 'NAME': not a message a worker sends|reply refusal: unexpected message type|-
update-not-in-round|discarded a late update from 'NAME' for round|sent update_ready for round|-
update-zero-examples|refused a message from NAME: update_ready: 0 examples is outside 1..2\^32|reply refusal: .*examples is outside|-
update-short-digest|refused a message from NAME: field update_ready.chunk_digests is 31 bytes, not 32|reply refusal: .*31 bytes, not 32|-
update-nan-metrics|refused a message from NAME: update_ready: metrics out of range or not finite|reply refusal: .*metrics out of range or not finite|-
before-hello|-|reply bye: unknown session: say hello again|-
bye-then-messages|worker 'NAME' left: leaving, or so it says|reply bye: unknown session: say hello again|-
oversize-frame|worker 'NAME' silent for [0-9]+ ms: marked lost|event disconnected|-
unknown-key|refused a connection from .*: key FP is not enrolled|event auth-refused && result refused at the handshake|-
update-wrong-nparams|round [0-9]+: update of 'NAME' not used: update has the wrong shape|accepted=0: update has the wrong shape|without
update-wrong-nchunks|round [0-9]+: update of 'NAME' not used: update has the wrong shape|accepted=0: update has the wrong shape|without
update-bad-digest|round [0-9]+: update of 'NAME' not used: update digest does not match its chunk digests|accepted=0: update digest does not match|without
update-twice|ignored a repeated update_ready from 'NAME'|accepted=1|with
update-huge-weight|'NAME' claims 4294967296 examples for its update; it announced|reply round_end|without
update-other-round|discarded a late update from 'NAME' for round|accepted=1|with
update-wrong-attempt|discarded a late update from 'NAME' for round|accepted=1|with
chunk-unrequested|-|accepted=1|with
chunk-short|'NAME': chunk has the wrong length at chunk 0|accepted=0: chunk has the wrong length|without
chunk-no-data|'NAME': chunk has the wrong length at chunk 0|accepted=0: chunk has the wrong length|without
chunk-mismatch|'NAME': chunk does not match its digest at chunk 0|accepted=0: chunk does not match its digest|without
chunk-nan|'NAME': update holds NaN or infinity at chunk 0|accepted=0: update holds NaN or infinity|without
chunk-inf|'NAME': update holds NaN or infinity at chunk 0|accepted=0: update holds NaN or infinity|without
chunk-nan-second|'NAME': update holds NaN or infinity at chunk 1; taking its update back out|accepted=0: update refused|without
chunk-wrong-index|-|accepted=1|with
chunk-twice|-|accepted=1|with
chunk-silent|update of 'NAME' not used|ignored a request for chunk 0|deadline
undo-changed|aggregate discarded: a worker changed its update while it was being taken back out|accepted=0|retried
huge-finite|'NAME': update holds a value beyond rounds.max_update_value at chunk 0|accepted=0|moved
huge-then-nan|'NAME': update holds a value beyond rounds.max_update_value at chunk 0|accepted=0|moved
heartbeat-flood|-|heartbeat replies: [0-9]{5} && accepted=1|with
garbage-flood|worker 'NAME' sent [0-9]+ refused messages within [0-9]+ s: banned|after flood: heartbeat answered: no && after flood: rejoined: no|without
sa-hello-huge-examples|worker 'NAME' joined with 4294967296 examples|sent hello claiming 4294967296 examples|progress
sa-advert-bad-signature|refused advert from 'NAME': advert of 'NAME' is not signed by its enrolled identity|accepted=0|without
sa-advert-wrong-index|refused advert from 'NAME': advert from [0-9]+ out of place|accepted=0|without
sa-advert-twice|refused advert from 'NAME': advert from [0-9]+ out of place|accepted=1|with
sa-shares-non-neighbour|refused shares from 'NAME': worker [0-9]+ sent a share box to [0-9]+, not a neighbour|accepted=0|without
sa-shares-forged-sender|refused shares from 'NAME'|accepted=0|without
sa-shares-twice|refused shares from 'NAME': shares from [0-9]+ out of place|accepted=1|with
sa-shares-accuse-all|'NAME'.*(accus|forged|false|reject)|(accus|forged|false|reject).*'NAME'|sent shares: [0-9]+ box\(es\), 3 accused|applied
sa-ack-early|refused relay_ack from 'NAME': acknowledgement from [0-9]+ out of place|accepted=1|with
sa-ack-twice|refused relay_ack from 'NAME': acknowledgement from [0-9]+ out of place|accepted=1|with
sa-ack-accuse-all|'NAME'.*(accus|forged|false|reject)|(accus|forged|false|reject).*'NAME'|sent relay_ack, 3 accused|applied
sa-reveal-early|refused reveals from 'NAME': revealed shares from [0-9]+ out of place|accepted=1|with
sa-reveal-twice|refused reveals from 'NAME': revealed shares from [0-9]+ out of place|discarded a late reveals from 'NAME'|accepted=1|with
sa-reveal-not-held|refused reveals from 'NAME': worker [0-9]+ revealed a share it does not hold|reply round_end|applied
sa-masked-mismatch|'NAME': chunk does not match its digest at chunk 0|accepted=0: chunk does not match its digest|without
sa-plain-update|'NAME' sent an update of 12730 words in 1 chunks; expected [0-9]+|accepted=0: update has the wrong shape|without
EOF
)
# A pattern may itself hold '|' (ERE alternation): the fields are the first, the last two, and
# everything between as the log pattern.
field() { # LINE N: 1 case, 2 log pattern, 3 output pattern, 4 checks
	local line="$1" c rest
	c="${line%%|*}"
	rest="${line#*|}"
	case $2 in
	1) echo "$c" ;;
	4) echo "${line##*|}" ;;
	3) rest="${line%|*}"; echo "${rest##*|}" ;;
	2) rest="${rest%|*}"; echo "${rest%|*}" ;;
	esac
}

# Every case the program knows is expected here, and nothing else: none is skipped silently.
LISTED=$("$HOSTILE" --list | awk '{print $1}' | sort)
EXPECTED=$(while IFS= read -r l; do field "$l" 1; done <<<"$EXPECT" | sort)
[ "$LISTED" = "$EXPECTED" ] ||
	fail "tally-hostile --list and this test disagree: $(diff <(echo "$LISTED") <(echo "$EXPECTED") | grep '^[<>]' | tr '\n' ' ')"
[ "$(wc -l <<<"$LISTED")" -ge 30 ] || fail "fewer than 30 bad inputs"

keys coordinator w0 w1 s0 s1 s2 $(sed 's/^/x-/' <<<"$LISTED" | grep -v '^x-unknown-key$')
"$BIN/tally" keygen "$WORK/keys/x-unknown-key" >"$WORK/intruder.txt" # not enrolled
INTRUDER_FP=$(awk '/^fingerprint/ {print $2}' "$WORK/intruder.txt")
[ -n "$INTRUDER_FP" ] || fail "tally keygen printed no fingerprint"
grep -q -- --max-update-norm <<<"$("$BIN/tally-coordinator" --help 2>&1)" ||
	fail "tally-coordinator has no --max-update-norm: case huge-finite cannot be checked"

# ---- two coordinators, each with its honest workers ----
declare -A CPID CEP WPIDS
declare -A ARGS=(
	[plain]="--no-secure-agg --model mlp:784-1340-10 --min-workers 2 --min-participants 2 --max-update-norm 1000"
	[secure]="--secure-agg --model mlp:784-16-10 --min-workers 3 --min-participants 3 --sa-stage 2")
declare -A HONEST=([plain]="w0 w1" [secure]="s0 s1 s2")

# start_coord PHASE [--bind EP] : starts (or restarts, from its checkpoint) PHASE's coordinator
start_coord() {
	local phase=$1 bind=${2:-tcp://127.0.0.1:*}
	rm -f "$WORK/$phase.endpoint"
	# shellcheck disable=SC2086
	"$BIN/tally-coordinator" --bind "$bind" --endpoint-file "$WORK/$phase.endpoint" --state-dir "$WORK/$phase" \
		--run-id "hostile-$phase" --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 100000 \
		--heartbeat-ms 500 --patience-ms 3000 --deadline $DEADLINE ${ARGS[$phase]} >>"$WORK/coordinator-$phase.log" 2>&1 &
	CPID[$phase]=$!
	PIDS+=("${CPID[$phase]}")
	wait_for 30 test -s "$WORK/$phase.endpoint" || fail "$phase coordinator did not start: $(tail -3 "$WORK/coordinator-$phase.log")"
	CEP[$phase]=$(cat "$WORK/$phase.endpoint")
}

alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != Z ]; }
lines() { [ -f "$WORK/$1/metrics.jsonl" ] && wc -l <"$WORK/$1/metrics.jsonl" || echo 0; }
applied_since() { # PHASE OFFSET : applied rounds in metrics lines after OFFSET
	tail -n +"$(($2 + 1))" "$WORK/$1/metrics.jsonl" 2>/dev/null | grep -c '"applied":true' || true
}

# round_info PHASE OFFSET ROUND : "applied updates examples seconds" of the first line for ROUND
# after line OFFSET of metrics.jsonl, then "later-applied" (any later line for ROUND applied)
round_info() {
	$PY - "$WORK/$1/metrics.jsonl" "$2" "$3" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
mine = [o for o in rows if o["round"] == int(sys.argv[3])]
if mine:
    o = mine[0]
    print(str(o["applied"]).lower(), o["updates"], o["examples"], o["seconds"],
          str(any(x["applied"] for x in mine[1:])).lower())
PYEOF
}

applied_at_least() { [ "$(applied_since "$1" 0)" -ge "$2" ]; }
round_closed() { [ -n "$(round_info "$@")" ]; }
round_applied_later() { [ "$(round_info "$@" | awk '{print $5}')" = true ]; }
# No retry pending: the last round closed was applied (a case that failed a round waits for it).
settled() { tail -n 1 "$WORK/$1/metrics.jsonl" | grep -q '"applied":true'; }

bad() { # PHASE CASE WHAT
	FAILS+=("$2: $3")
	CASE_OK=0
	echo "  FAIL $2: $3"
}

# check_rounds PHASE CASE CHECKS OUT OFFSET END_OFFSET
check_rounds() {
	local phase=$1 name=$2 checks=$3 out=$4 off=$5 end=$6 h r info applied updates examples secs later
	h=$(wc -w <<<"${HONEST[$phase]}")
	[ "$checks" = - ] && return 0
	if [ "$checks" = progress ]; then
		# the round in progress when it joined may close normally; the ones after must too
		r=$(tail -n +$((off + 1)) "$WORK/$phase/metrics.jsonl" | head -n $((end - off)) | grep -c '"applied":true' || true)
		[ "$r" -ge 3 ] ||
			bad "$phase" "$name" "$r round(s) applied in the $((SECONDS - CASE_T0)) s it stayed connected: its hello stops secure aggregation from starting"
		return 0
	fi
	if [ "$checks" = moved ]; then
		grep -q '^moved ' "$out" || { bad "$phase" "$name" "it saw no model after its rounds"; return 0; }
		while read -r _ rnd _ chunk frac; do
			local ch=${frac%/*} tot=${frac#*/}
			[ $((2 * ch)) -ge "$tot" ] || bad "$phase" "$name" \
				"round $rnd moved only $ch of $tot parameters of chunk ${chunk%:}: the honest updates were lost when its update was taken back out"
		done < <(grep '^moved ' "$out")
		return 0
	fi
	r=$(grep -oE '^round [0-9]+ (plain|secure)' "$out" | tail -1 | awk '{print $2}')
	[ -n "$r" ] || { bad "$phase" "$name" "it never took part in a round"; return 0; }
	wait_for $((DEADLINE + 10)) round_closed "$phase" "$off" "$r" ||
		{ bad "$phase" "$name" "round $r never closed"; return 0; }
	read -r applied updates examples secs later <<<"$(round_info "$phase" "$off" "$r")"
	case $checks in
	without | deadline)
		[ "$applied" = true ] && [ "$updates" = "$h" ] ||
			bad "$phase" "$name" "round $r: applied=$applied with $updates update(s), expected true with the $h honest ones"
		;;
	with)
		[ "$applied" = true ] && [ "$updates" = $((h + 1)) ] ||
			bad "$phase" "$name" "round $r: applied=$applied with $updates update(s), expected true with $((h + 1)) (the replayed update counts once)"
		;;
	applied)
		[ "$applied" = true ] && [ "$updates" -ge "$h" ] ||
			bad "$phase" "$name" "round $r: applied=$applied with $updates update(s), expected true with at least the $h honest ones"
		;;
	retried)
		wait_for $((DEADLINE + 10)) round_applied_later "$phase" "$off" "$r" || true
		read -r applied updates examples secs later <<<"$(round_info "$phase" "$off" "$r")"
		[ "$applied" = false ] && [ "$later" = true ] ||
			bad "$phase" "$name" "round $r: first attempt applied=$applied, later attempt applied=$later"
		;;
	weight)
		[ "$applied" = true ] && [ "$examples" -ge 0 ] && [ "$examples" -le $(((h + 1) * EXAMPLES)) ] ||
			bad "$phase" "$name" "round $r: applied=$applied weighing $examples examples: an update claiming 2^64-1 examples outweighs the $h honest ones"
		;;
	esac
	if [ "$checks" = deadline ]; then
		$PY -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) + 2 else 1)' "$secs" "$DEADLINE" ||
			bad "$phase" "$name" "round $r lasted $secs s, past its $DEADLINE s deadline: a participant that offers an update and then ignores chunk requests holds the round"
	fi
}

# run_case PHASE LINE : one bad input and its checks
run_case() {
	local phase=$1 line=$2 c logpat outpat checks name key out off end rc p extra=()
	c=$(field "$line" 1)
	logpat=$(field "$line" 2)
	outpat=$(field "$line" 3)
	checks=$(field "$line" 4)
	name="x-$c"
	out="$WORK/hostile-$c.out"
	logpat=${logpat//NAME/$name}
	logpat=${logpat//FP/$INTRUDER_FP}
	case $c in
	chunk-silent) extra=(--wait-s $((DEADLINE + 6))) ;;
	sa-hello-huge-examples) extra=(--wait-s 6) ;;
	*) extra=(--wait-s 25) ;;
	esac
	CASE_OK=1
	wait_for 30 settled "$phase" || bad "$phase" "$c" "a round failed before it and was not retried successfully"
	CASE_T0=$SECONDS
	off=$(lines "$phase")
	rc=0
	timeout 120 "$HOSTILE" --coordinator "${CEP[$phase]}" --key "$WORK/keys/$name.key" \
		--coordinator-key "$WORK/keys/coordinator.pub" --roster "$WORK/enrolled" --case "$c" "${extra[@]}" \
		>"$out" 2>&1 || rc=$?
	end=$(lines "$phase")
	[ $rc = 0 ] || bad "$phase" "$c" "tally-hostile exited $rc: $(grep '^result' "$out" | tail -1)"
	# (a) the coordinator is still serving
	sleep 0.2
	if ! alive "${CPID[$phase]}"; then
		bad "$phase" "$c" "the coordinator died: $(grep -v ' info: ' "$WORK/coordinator-$phase.log" | tail -1)"
		echo "--- $c killed the $phase coordinator; restarting it from its checkpoint" >>"$WORK/coordinator-$phase.log"
		start_coord "$phase" "${CEP[$phase]}"
	fi
	# (b) its log names the problem
	if [ "$logpat" != - ]; then
		wait_for 5 grep -Eq -- "$logpat" "$WORK/coordinator-$phase.log" ||
			bad "$phase" "$c" "no line in the coordinator's log matches: $logpat"
	fi
	# the bad peer got a clear answer
	while IFS= read -r p; do
		[ -z "$p" ] || grep -Eq -- "$p" "$out" || bad "$phase" "$c" "tally-hostile's output lacks: $p"
	done < <(sed 's/ && /\n/g' <<<"$outpat")
	# (c) the round it was in went on
	check_rounds "$phase" "$c" "$checks" "$out" "$off" "$end"
	if [ "$logpat" = - ]; then
		p="(no log line) $(grep -E '^(reply (refusal|bye|round_end)|heartbeat replies)' "$out" | tail -1 || true)"
	else
		p=$(grep -E -m1 -- "$logpat" "$WORK/coordinator-$phase.log" | cut -d' ' -f4- | cut -c1-120 || true)
	fi
	RESULTS+=("$phase|$c|$([ $CASE_OK = 1 ] && echo ok || echo FAIL)|$p")
	if [ $CASE_OK = 1 ]; then echo "  ok   $c"; fi
}

# finish PHASE : the federation went on and nothing was lost
finish() {
	local phase=$1 n
	n=$(applied_since "$phase" 0)
	wait_for 60 applied_at_least "$phase" $((n + 2)) ||
		FAILS+=("$phase: no round applied after the last case")
	kill -TERM "${CPID[$phase]}"
	wait_exit "${CPID[$phase]}" 30 || fail "$phase coordinator did not stop on SIGTERM"
	[ "$STATUS" = 0 ] || FAILS+=("$phase: coordinator exited with $STATUS after SIGTERM")
	$PY - "$WORK/$phase/metrics.jsonl" "$WORK/rounds-$phase.txt" <<'PYEOF' || FAILS+=("$phase: metrics.jsonl: $(cat "$WORK/rounds-$phase.txt")")
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
done = {o["round"] for o in rows if o["applied"]}
top = max(o["round"] for o in rows)
missing = sorted(set(range(1, top + 1)) - done)
with open(sys.argv[2], "w") as f:
    f.write("%d rounds; never applied: %s" % (top, missing[:20] or "none"))
sys.exit(1 if missing or top < 20 else 0)
PYEOF
	"$BIN/tally" inspect "$WORK/$phase/model.safetensors" >"$WORK/inspect-$phase.txt" 2>&1 ||
		FAILS+=("$phase: tally inspect failed: $(tail -1 "$WORK/inspect-$phase.txt")")
	n=$(find "$WORK/$phase" -name '*.tmp.*' | wc -l)
	[ "$n" = 0 ] || FAILS+=("$phase: $n temporary file(s) left in the state folder")
	out=$($PY "$SRC/tests/python/safetensors_check.py" "$WORK/$phase/model.safetensors" \
		"$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz" 2>&1) ||
		FAILS+=("$phase: the model does not load in numpy: $out")
	$PY -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["accuracy"] > 0.6 else 1)' "$out" 2>/dev/null ||
		FAILS+=("$phase: the model is not accurate any more: $out")
	for w in ${HONEST[$phase]}; do
		grep -q "training diverged" "$WORK/$w.log" && FAILS+=("$phase: honest worker $w saw its training diverge")
	done
	echo "$phase: $(cat "$WORK/rounds-$phase.txt" 2>/dev/null); final model: $(grep -E '^round' "$WORK/inspect-$phase.txt" | tr -s ' '), numpy: $out"
}

run_phase() { # PHASE REGEX-OF-CASES
	local phase=$1 k=0 line
	start_coord "$phase"
	EP=${CEP[$phase]}
	for w in ${HONEST[$phase]}; do
		start_worker "$w" --partition "$k/30" --scheme iid --reconnect-max-ms 2000
		WPIDS[$phase]+=" $WORKER_PID"
		k=$((k + 1))
	done
	wait_for 60 applied_at_least "$phase" 2 || fail "$phase federation did not start"
	echo "$phase coordinator at $EP"
	while IFS= read -r line; do
		[ -n "$line" ] && run_case "$phase" "$line"
	done < <(grep -E "$2" <<<"$EXPECT")
	finish "$phase"
	kill -TERM ${WPIDS[$phase]} 2>/dev/null || true # they would only try to reconnect
}

run_phase plain '^[^s]|^s[^a]'
run_phase secure '^sa-'

echo
echo "| phase | bad input | outcome | coordinator log |"
echo "| --- | --- | --- | --- |"
for r in "${RESULTS[@]}"; do echo "| ${r//|/ | } |"; done
if [ ${#FAILS[@]} -gt 0 ]; then
	printf 'FAIL: %s\n' "${FAILS[@]}" >&2
	fail "${#FAILS[@]} check(s) failed over ${#RESULTS[@]} bad inputs"
fi
pass "${#RESULTS[@]} bad inputs refused; both coordinators served on, applied every round and exited 0"
