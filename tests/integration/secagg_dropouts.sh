#!/usr/bin/env bash
# Secure aggregation across 8 worker processes over CURVE, with two workers killed at different
# stages of the first round: one after the share relay but before its masked input (its pairwise
# masks are removed through its reconstructed key), one after its masked input but before it
# reveals (its self mask is removed through its peers' shares). The round completes with the
# other inputs, and the following rounds go on with the six survivors.
source "$(dirname "$0")/lib/common.bash"

names=(w0 w1 w2 w3 w4 w5 w6 w7)
keys coordinator "${names[@]}"
start_coordinator --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --rounds 3 \
	--min-workers 8 --min-participants 6 --quorum 6 --deadline 60 --sa-stage 20 --patience-ms 4000 \
	--model mlp:784-64-10 \
	--eval-images "$FMNIST/t10k-images-idx3-ubyte.gz" --eval-labels "$FMNIST/t10k-labels-idx1-ubyte.gz"
# Round 1 starts once all eight have joined; later rounds go on with the six that are left.
TALLY_WORKER_FAULT=before-input start_worker w6 --partition 6/8 --scheme iid
TALLY_WORKER_FAULT=before-reveal start_worker w7 --partition 7/8 --scheme iid
for k in 0 1 2 3 4 5; do start_worker "w$k" --partition "$k/8" --scheme iid; done

wait_exit "$COORD_PID" 300 || fail "coordinator did not finish"
[ "$STATUS" = 0 ] || fail "coordinator exited with $STATUS"
[ "$(rounds_done)" = 3 ] || fail "expected 3 rounds, found $(rounds_done)"
grep -q "TALLY_WORKER_FAULT=before-input" "$WORK/w6.log" || fail "w6 was not killed before its input"
grep -q "TALLY_WORKER_FAULT=before-reveal" "$WORK/w7.log" || fail "w7 was not killed before revealing"
[ "$(metric 1 participants)" = 8 ] || fail "round 1 selected $(metric 1 participants), not 8"
[ "$(metric 1 applied)" = true ] || fail "round 1 with two dropouts was not applied"
grep -q "round 1: unmasking 7 inputs (1 dropped)" "$WORK/coordinator.log" ||
	fail "round 1 did not unmask 7 inputs with 1 dropped"
for r in 2 3; do
	[ "$(metric $r applied)" = true ] || fail "round $r not applied"
	[ "$(metric $r updates)" = 6 ] || fail "round $r aggregated $(metric $r updates) updates, not 6"
done
grep -q "secure aggregation over 8 workers" "$WORK/coordinator.log" || fail "round 1 was not secure"
acc=$(metric 3 accuracy)
/usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.70 else 1)' "$acc" ||
	fail "accuracy after 3 secure rounds is $acc"
pass "8 workers, two killed at different stages; 3 secure rounds applied, accuracy $acc"
