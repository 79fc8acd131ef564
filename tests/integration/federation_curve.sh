#!/usr/bin/env bash
# A coordinator and three workers over CURVE finish three rounds on Fashion-MNIST; every worker's
# connection negotiates CURVE and is admitted by the ZAP handler; the saved safetensors model,
# read by numpy alone, reproduces the coordinator's reported test accuracy within 0.2 points.
source "$(dirname "$0")/lib/common.bash"

keys coordinator w0 w1 w2
start_coordinator --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 3 \
	--min-workers 3 --min-participants 3 --quorum 3 --deadline 120 \
	--eval-images "$FMNIST/t10k-images-idx3-ubyte.gz" --eval-labels "$FMNIST/t10k-labels-idx1-ubyte.gz"
for k in 0 1 2; do start_worker "w$k" --partition "$k/3" --scheme iid; done

wait_exit "$COORD_PID" 300 || fail "coordinator did not finish three rounds"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS"
[ "$(rounds_done)" = 3 ] || fail "expected 3 rounds in metrics.jsonl, found $(rounds_done)"
for r in 1 2 3; do
	[ "$(metric $r applied)" = true ] || fail "round $r not applied"
	[ "$(metric $r updates)" = 3 ] || fail "round $r aggregated $(metric $r updates) updates, not 3"
done
for k in 0 1 2; do
	grep -q "CURVE handshake with .* succeeded" "$WORK/w$k.log" || fail "w$k did not negotiate CURVE"
	grep -q "admitted worker 'w$k'" "$WORK/coordinator.log" || fail "w$k was not admitted through ZAP"
done
[ "$(grep -c "admitted worker" "$WORK/coordinator.log")" -ge 3 ] || fail "fewer than 3 ZAP admissions"
pass "3 workers, 3 rounds over CURVE"

acc=$(metric 3 accuracy)
/usr/bin/python3 -c 'import sys; a=float(sys.argv[1]); sys.exit(0 if 0.70 < a <= 1 else 1)' "$acc" ||
	fail "accuracy after 3 IID rounds is $acc, expected > 0.70"
out=$(/usr/bin/python3 "$SRC/tests/python/safetensors_check.py" "$WORK/state/model.safetensors" \
	"$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz") || fail "numpy check failed: $out"
py=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["accuracy"])' "$out")
/usr/bin/python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= 0.002 else 1)' "$acc" "$py" ||
	fail "numpy accuracy $py differs from reported $acc by more than 0.2 points"
pass "numpy reproduces the reported accuracy: $py vs $acc"
