#!/usr/bin/env bash
# A federation over a shaped network of its own: a coordinator namespace and three worker
# namespaces joined through a bridge in a "switch" namespace, every link limited by tbf, 2% of the
# frames crossing the switch dropped by nftables (numgen random), latency added by a userspace
# delay proxy in front of the coordinator (the kernel here has no netem), and one worker cut off
# for a while in the middle of the run. Over CURVE with secure aggregation, training completes
# and ends at the same test accuracy (within 0.02) as the same run on loopback without shaping.
#
# Needs root, `ip netns`, tc and nft (Debian: iproute2, nftables); otherwise it is skipped
# (exit 77). Before it creates anything it adds an `unreachable` route for its subnet in the
# root namespace, so that a mistake fails locally; its traffic stays inside the namespaces it
# made. Everything it made is removed on exit, failed or not. See tests/README.md.
source "$(dirname "$0")/lib/common.bash"

SUBNET=10.203                       # the test's /16; nothing else on the machine may use it
TAG="tnt$$"                         # prefix of this run's namespaces (the owner's pid in it)
RATE=${TALLY_NETNS_RATE:-80mbit}    # tbf rate of every link, both directions
DROP_PCT=${TALLY_NETNS_DROP_PCT:-2} # % of frames the switch drops at random
DELAY_MS=${TALLY_NETNS_DELAY_MS:-30} # added by the proxy to each direction
CUT_S=${TALLY_NETNS_CUT_S:-9}       # how long w2 is cut off
PATIENCE_MS=${TALLY_NETNS_PATIENCE_MS:-30000} # > 2 x CUT_S: TCP retransmission back-off can double a cut
ROUNDS=4
COORD_IP=$SUBNET.0.1 COORD_PORT=7070 PROXY_PORT=7171
HOSTS=(c w0 w1 w2)
declare -A IP=([c]=$COORD_IP [w0]=$SUBNET.0.11 [w1]=$SUBNET.0.12 [w2]=$SUBNET.0.13)
NAMESPACES=() ROUTE_ADDED=0
# Every process the test starts dies with it, even if the test itself is killed (SIGKILL skips
# the trap): the kernel sends it SIGKILL when its parent, this script, dies.
GUARD=(setpriv --pdeathsig KILL --)

skip() {
	echo "SKIP: $*"
	exit 77
}
say() { echo "netns: $*"; }
ns() { echo "$TAG-$1"; } # ns NAME : this run's namespace NAME
in_ns() {                # in_ns NAME COMMAND... : runs COMMAND inside this run's namespace NAME
	local n
	n=$(ns "$1")
	shift
	ip netns exec "$n" "$@"
}

# ---- teardown: processes first (a namespace lives on while a process is in it), then namespaces
# (their veths, bridge, qdiscs and nft tables go with them), then the route.
teardown() {
	local p n
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for n in "${NAMESPACES[@]}"; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		ip netns del "$n" 2>/dev/null || echo "netns: could not delete namespace $n" >&2
	done
	NAMESPACES=()
	if [ "$ROUTE_ADDED" = 1 ]; then
		ip route del unreachable "$SUBNET.0.0/16" metric $$ 2>/dev/null ||
			echo "netns: could not delete the unreachable route for $SUBNET.0.0/16" >&2
		ROUTE_ADDED=0
	fi
}
on_exit() {
	local rc=$?
	set +e
	if [ -n "${TALLY_NETNS_KEEP:-}" ]; then # keep the logs and state of this run there
		mkdir -p "$TALLY_NETNS_KEEP" && cp -r "$WORK"/. "$TALLY_NETNS_KEEP"/
	fi
	teardown
	(exit $rc)
	cleanup # common.bash: kills what is left, shows the logs of a failed run, removes $WORK
}
trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ---- can it run here?
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, tc, nft)"
setpriv --help 2>/dev/null | grep -q pdeathsig || skip "setpriv (util-linux) with --pdeathsig not found"
for t in ip tc nft; do
	command -v "$t" >/dev/null || skip "'$t' not found: install the Debian packages iproute2 and nftables"
done
[ -x /usr/bin/python3 ] || skip "/usr/bin/python3 (the delay proxy) not found"
for f in train-images-idx3-ubyte.gz t10k-images-idx3-ubyte.gz; do
	[ -f "$FMNIST/$f" ] || skip "Fashion-MNIST not found in $FMNIST (package dataset-fashion-mnist)"
done
ip netns list >/dev/null 2>&1 || skip "'ip netns' does not work here"

# Leftovers of an earlier run that was killed before its trap ran: namespaces and routes whose
# owner (the pid in their name or metric) is gone.
for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^tnt[0-9]+-' || true); do
	owner=${n#tnt}
	owner=${owner%%-*}
	if ! kill -0 "$owner" 2>/dev/null; then
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		ip netns del "$n" 2>/dev/null && say "removed stale namespace $n"
	fi
done
for m in $(ip -4 route show | sed -n "s/^unreachable $SUBNET\.0\.0\/16 .*metric \([0-9]*\).*/\1/p"); do
	kill -0 "$m" 2>/dev/null || { ip route del unreachable "$SUBNET.0.0/16" metric "$m" && say "removed stale route (metric $m)"; }
done

# The subnet must be unused: no address in it, no route into it but this test's own guards.
if ip -4 -o addr show | grep -q " inet $SUBNET\."; then skip "$SUBNET.0.0/16 is in use by an address here"; fi
if ip -4 route show table all | grep -v "^unreachable $SUBNET\.0\.0/16 " | grep -q "$SUBNET\."; then
	skip "$SUBNET.0.0/16 is routed on this machine: $(ip -4 route show table all | grep "$SUBNET\." | head -1)"
fi

# ---- the guard first: from the root namespace the subnet is unreachable.
ip route add unreachable "$SUBNET.0.0/16" metric $$ 2>/dev/null || skip "cannot add a route (no CAP_NET_ADMIN?)"
ROUTE_ADDED=1
if ip route get "$COORD_IP" >/dev/null 2>&1; then fail "$COORD_IP is routable from the root namespace"; fi

# Can this kernel do what the test needs? Probe in a namespace of our own (removed with the rest).
probe=$(ns probe)
ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace"
NAMESPACES+=("$probe")
ip -n "$probe" link add pveth0 type veth peer name pveth1 2>/dev/null || skip "no veth support"
ip -n "$probe" link add pbr0 type bridge 2>/dev/null || skip "no bridge support"
tc -n "$probe" qdisc add dev pveth0 root tbf rate "$RATE" burst 64kb latency 50ms 2>/dev/null || skip "no tbf qdisc"
err=$(printf 'table bridge probe {\n chain forward_filter {\n  type filter hook forward priority 0;\n  numgen random mod 100 < 2 counter drop\n }\n}\n' |
	ip netns exec "$probe" nft -f - 2>&1) || skip "nftables cannot filter bridged frames (bridge family, numgen): $err"
ip netns del "$probe"
NAMESPACES=()

# ---- the reference: the same federation on loopback in the root namespace, no shaping.
keys coordinator w0 w1 w2
COORD_ARGS=(--key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --model mlp:784-64-10
	--rounds $ROUNDS --epochs 1 --min-workers 3 --min-participants 3 --quorum 3
	--deadline 90 --sa-stage 30 --patience-ms "$PATIENCE_MS" --seed 1 --model-seed 1
	--eval-images "$FMNIST/t10k-images-idx3-ubyte.gz" --eval-labels "$FMNIST/t10k-labels-idx1-ubyte.gz")
WORKER_ARGS=(--coordinator-key "$WORK/keys/coordinator.pub" --roster "$WORK/enrolled" --data-dir "$FMNIST"
	--scheme iid --data-seed 1)

# run_coordinator RUN BIND [CMDPREFIX...] : starts the coordinator of RUN (lo or netns); sets COORD_PID
run_coordinator() {
	local run=$1 bind=$2
	shift 2
	rm -f "$WORK/$run.endpoint"
	"$@" "${GUARD[@]}" "$BIN/tally-coordinator" --bind "$bind" --endpoint-file "$WORK/$run.endpoint" \
		--state-dir "$WORK/$run-state" "${COORD_ARGS[@]}" >"$WORK/$run-coordinator.log" 2>&1 &
	COORD_PID=$!
	PIDS+=("$COORD_PID")
	wait_for 30 test -s "$WORK/$run.endpoint" ||
		fail "$run coordinator did not start: $(tail -5 "$WORK/$run-coordinator.log")"
}
# run_worker RUN K ENDPOINT [CMDPREFIX...] : starts worker wK of RUN on partition K/3; sets WPID[K]
declare -A WPID
run_worker() {
	local run=$1 k=$2 ep=$3
	shift 3
	"$@" "${GUARD[@]}" "$BIN/tally-worker" --coordinator "$ep" --key "$WORK/keys/w$k.key" --partition "$k/3" \
		"${WORKER_ARGS[@]}" >"$WORK/$run-w$k.log" 2>&1 &
	WPID[$k]=$!
	PIDS+=("${WPID[$k]}")
}
# metrics RUN : one line per attempt at a round (a round that failed is tried again):
# round attempt applied updates seconds accuracy
metrics() {
	[ -f "$WORK/$1-state/metrics.jsonl" ] || return 0
	/usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    o=json.loads(l)
    print(o["round"], o.get("attempt", 1), str(o["applied"]).lower(), o["updates"], o["seconds"], o.get("accuracy"))' \
		"$WORK/$1-state/metrics.jsonl"
}
# rounds_applied RUN : the highest round applied so far
rounds_applied() { metrics "$1" | awk '$3 == "true" && $1 > m {m = $1} END {print m + 0}'; }
netns_rounds_at_least() { [ "$(rounds_applied netns)" -ge "$1" ]; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; } # since T0 : seconds
# finish RUN LIMIT : the run's coordinator exits 0 with every round applied by 3 updates, and its
# workers exit 0 after the coordinator's goodbye
finish() {
	local run=$1 limit=$2 k r applied updates
	wait_exit "$COORD_PID" "$limit" || fail "$run: coordinator did not finish within $limit s"
	reaped "$COORD_PID"
	[ "$STATUS" = 0 ] || fail "$run: coordinator exited with $STATUS"
	# Every round applied with all three updates: nothing was given up on. A round whose first
	# attempt missed the cut-off worker (TCP's retransmission back-off can stretch the 9 s cut
	# past the patience on a loaded machine) is retried under the same number and seeds.
	while read -r r a applied updates secs _; do
		if [ "$applied" != true ]; then
			echo "netns: $run: round $r attempt $a not applied ($updates updates in $secs s): retried"
			continue
		fi
		[ "$updates" = 3 ] || fail "$run: round $r aggregated $updates updates, not 3"
	done < <(metrics "$run")
	[ "$(metrics "$run" | awk '$3 == "true" {printf "%s ", $1}')" = "$(seq -s ' ' 1 $ROUNDS) " ] ||
		fail "$run: expected rounds 1..$ROUNDS applied once each in metrics.jsonl, found: $(metrics "$run" | awk '{printf "%s.%s:%s ", $1, $2, $3}')"
	for k in 0 1 2; do
		wait_exit "${WPID[$k]}" 30 || fail "$run: worker w$k did not leave after the run"
		reaped "${WPID[$k]}"
		[ "$STATUS" = 0 ] || fail "$run: worker w$k exited with $STATUS"
	done
	grep -q "round 1: secure aggregation over 3 workers" "$WORK/$run-coordinator.log" ||
		fail "$run: round 1 was not a secure aggregation over 3 workers"
	[ "$(grep -c "admitted worker" "$WORK/$run-coordinator.log")" -ge 3 ] || fail "$run: fewer than 3 CURVE admissions"
}
final_accuracy() { metrics "$1" | tail -1 | awk '{print $6}'; }
# reaped PID : forgets a child that wait_exit has collected, so that no cleanup kills its pid
# after the system has given the number to another process
reaped() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

t0=$(date +%s.%N)
run_coordinator lo 'tcp://127.0.0.1:*'
LO_EP=$(cat "$WORK/lo.endpoint")
for k in 0 1 2; do run_worker lo $k "$LO_EP"; done
finish lo 180
t_lo=$(since "$t0")
say "loopback reference: $ROUNDS rounds in $t_lo s"

# ---- the network: c, w0, w1, w2 each joined by a veth pair to the bridge in the switch namespace.
t1=$(date +%s.%N)
for h in sw "${HOSTS[@]}"; do
	ip netns add "$(ns $h)"
	NAMESPACES+=("$(ns $h)")
	in_ns $h sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip -n "$(ns $h)" link set lo up
done
ip -n "$(ns sw)" link add br0 type bridge
ip -n "$(ns sw)" link set br0 up
for h in "${HOSTS[@]}"; do
	# The switch's port sw-H and the host's veth0, each shaped on its way out.
	ip -n "$(ns sw)" link add "sw-$h" type veth peer name veth0 netns "$(ns $h)"
	ip -n "$(ns sw)" link set "sw-$h" master br0 up
	ip -n "$(ns $h)" addr add "${IP[$h]}/24" dev veth0
	ip -n "$(ns $h)" link set veth0 up
	tc -n "$(ns sw)" qdisc add dev "sw-$h" root tbf rate "$RATE" burst 64kb latency 50ms
	tc -n "$(ns $h)" qdisc add dev veth0 root tbf rate "$RATE" burst 64kb latency 50ms
done
# Random loss on every frame the switch forwards, and an (empty for now) chain to cut w2 off.
in_ns sw nft -f - <<EOF
table bridge tally_netns {
	counter random_drop { }
	counter cut_w2 { }
	chain cutoff { }
	chain forward_filter {
		type filter hook forward priority 0; policy accept;
		jump cutoff
		numgen random mod 100 < $DROP_PCT counter name "random_drop" drop
	}
}
EOF
nft_packets() { in_ns sw nft list counter bridge tally_netns "$1" | sed -n 's/.*packets \([0-9]*\).*/\1/p'; }
if ip route get "$COORD_IP" >/dev/null 2>&1; then fail "$COORD_IP became routable from the root namespace"; fi
say "network up: bridge in $(ns sw), tbf $RATE on 8 link ends, ${DROP_PCT}% random drop, $(since "$t1") s"

# ---- the federation over it: workers reach the coordinator only through the delay proxy.
ip netns exec "$(ns c)" "${GUARD[@]}" /usr/bin/python3 "$SRC/tests/tools/delay_proxy.py" --listen "$COORD_IP:$PROXY_PORT" \
	--target "$COORD_IP:$COORD_PORT" --delay-ms "$DELAY_MS" --ready-file "$WORK/proxy.ready" \
	--stats-file "$WORK/proxy.json" --max-seconds 400 >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_for 15 test -s "$WORK/proxy.ready" || fail "delay proxy did not start: $(tail -5 "$WORK/proxy.log")"
# Each worker namespace reaches the proxy (before the coordinator runs, so the proxy just closes).
for h in w0 w1 w2; do
	in_ns $h timeout 15 bash -c "exec 3<>/dev/tcp/$COORD_IP/$PROXY_PORT" 2>/dev/null ||
		fail "$h cannot reach the coordinator's namespace"
done
t2=$(date +%s.%N)
run_coordinator netns "tcp://$COORD_IP:$COORD_PORT" ip netns exec "$(ns c)"
for k in 0 1 2; do run_worker netns $k "tcp://$COORD_IP:$PROXY_PORT" ip netns exec "$(ns w$k)"; done

# Mid-run, once round 1 is applied, w2 is cut off (every frame to or from its switch port dropped)
# for CUT_S seconds, then let back in. Patience is longer than the cut: w2 must be waited for.
wait_for 120 netns_rounds_at_least 1 ||
	fail "netns: round 1 not applied within 120 s"
rounds_at_cut=$(rounds_applied netns)
[ "$rounds_at_cut" -lt $ROUNDS ] || fail "netns: the run ended before w2 could be cut off"
in_ns sw nft add rule bridge tally_netns cutoff iifname "sw-w2" counter name cut_w2 drop
in_ns sw nft add rule bridge tally_netns cutoff oifname "sw-w2" counter name cut_w2 drop
say "w2 cut off after round $rounds_at_cut for $CUT_S s"
sleep "$CUT_S"
in_ns sw nft flush chain bridge tally_netns cutoff
cut_packets=$(nft_packets cut_w2)
say "w2 back; $cut_packets frames to or from it were dropped meanwhile"

finish netns 240
t_netns=$(since "$t2")
kill -TERM "$PROXY_PID" # it writes its final figures and leaves
wait_exit "$PROXY_PID" 10 || fail "the delay proxy did not stop on SIGTERM"
reaped "$PROXY_PID"
drop_packets=$(nft_packets random_drop)

# ---- the figures
tbf_report=""
tbf_overlimits=0 tbf_drops=0
for h in "${HOSTS[@]}"; do
	for end in "sw:sw-$h" "$h:veth0"; do
		s=$(tc -s -n "$(ns ${end%%:*})" qdisc show dev "${end#*:}" | sed -n \
			's/.*Sent \([0-9]*\) bytes \([0-9]*\) pkt (dropped \([0-9]*\), overlimits \([0-9]*\).*/\1 \2 \3 \4/p')
		read -r bytes pkts dropped over <<<"$s"
		tbf_drops=$((tbf_drops + dropped))
		tbf_overlimits=$((tbf_overlimits + over))
		tbf_report+="  tbf ${end#*:} in $(ns ${end%%:*}): sent $bytes bytes in $pkts packets, dropped $dropped, overlimits $over"$'\n'
	done
done
acc_lo=$(final_accuracy lo)
acc_netns=$(final_accuracy netns)
echo "---- figures"
echo "loopback: $t_lo s for $ROUNDS rounds; round attempt applied updates seconds accuracy:"
metrics lo | sed 's/^/  /'
echo "netns: $t_netns s for $ROUNDS rounds (rate $RATE, ${DROP_PCT}% drop, +${DELAY_MS} ms each way, w2 cut $CUT_S s after round $rounds_at_cut)"
metrics netns | sed 's/^/  /'
echo "final accuracy: netns $acc_netns, loopback $acc_lo"
echo "nft: $drop_packets frames dropped at random, $cut_packets dropped while w2 was cut off"
printf '%s' "$tbf_report"
echo "proxy: $(cat "$WORK/proxy.json" 2>/dev/null || echo 'no stats')"
echo "reconnects logged by w2: $(grep -c "reconnecting" "$WORK/netns-w2.log" || true); workers marked lost: $(grep -c "marked lost" "$WORK/netns-coordinator.log" || true)"

# ---- the checks
/usr/bin/python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= 0.02 else 1)' \
	"$acc_netns" "$acc_lo" || fail "final accuracy over the shaped network $acc_netns differs from loopback's $acc_lo by more than 0.02"
pass "same outcome as on loopback: accuracy $acc_netns (netns) vs $acc_lo (loopback)"

for k in 0 1 2; do
	grep -q "CURVE handshake with tcp://$COORD_IP:$PROXY_PORT succeeded" "$WORK/netns-w$k.log" ||
		fail "w$k did not negotiate CURVE through the proxy"
done
grep -q "admitted worker 'w2' (key [0-9a-f]*) from $COORD_IP" "$WORK/netns-coordinator.log" ||
	fail "the coordinator did not see w2 arrive through the proxy ($COORD_IP)"
/usr/bin/python3 -c 'import json,sys
s=json.load(open(sys.argv[1])); d=float(sys.argv[2])
ok = s["connections"] >= 3 and all(s[k]["chunks"] > 0 and s[k]["hold_ms_min"] >= d - 1 for k in ("to_target","to_client"))
sys.exit(0 if ok else 1)' "$WORK/proxy.json" "$DELAY_MS" || fail "the delay proxy did not carry the traffic with +$DELAY_MS ms"
pass "all three workers went through the delay proxy (+$DELAY_MS ms each way) over CURVE"

[ "$drop_packets" -gt 0 ] || fail "nftables dropped no frame at random: shaping was not active"
[ $((tbf_overlimits + tbf_drops)) -gt 0 ] || fail "tbf neither throttled nor dropped anything: shaping was not active"
pass "shaping active: $drop_packets frames dropped by nftables, tbf overlimits $tbf_overlimits, tbf drops $tbf_drops"

# Evidence of the cut: frames to or from w2 were dropped by the cut rule, and a round in progress
# then waited for w2 (lasting about as long as the cut) instead of going on without it.
[ "$cut_packets" -gt 0 ] || fail "the cut-off rule dropped nothing: w2 was not cut off"
longest=$(metrics netns | awk -v r="$rounds_at_cut" '$1 > r && $5 > m {m = $5} END {print m + 0}')
/usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) - 2 else 1)' "$longest" "$CUT_S" ||
	fail "no round after the cut lasted about $CUT_S s (longest $longest s): the cut did not stall a round"
# Usually the round waits the cut out; on a loaded machine TCP's back-off can stretch the
# silence past the patience, and then w2 must be marked lost, rejoin by itself, and the round
# be retried (checked above: every round applied with three updates).
if grep -q "marked lost" "$WORK/netns-coordinator.log"; then
	grep -q "worker 'w2' silent" "$WORK/netns-coordinator.log" ||
		fail "a worker other than w2 was marked lost: $(grep "marked lost" "$WORK/netns-coordinator.log")"
	[ "$(grep -c "worker 'w2' joined" "$WORK/netns-coordinator.log")" -ge 2 ] || fail "w2 was lost and did not rejoin"
	pass "w2 was cut off for $CUT_S s ($cut_packets frames dropped), marked lost after the patience, rejoined by itself"
else
	pass "w2 was cut off for $CUT_S s ($cut_packets frames dropped) and waited for: the stalled round took $longest s, no worker lost"
fi
