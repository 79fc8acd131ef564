#!/usr/bin/env bash
# The open data path: masked update chunks travel over a plain socket of their own, tied to a
# session by a token (bound to the first connection that presents it) and checked by digest.
# Seven federations over CURVE (four workers, fixed seeds), one after the other:
#   A  secure, data path on: every round takes all its update chunks (participants x chunks; two
#      per update, the model being over 2^20 parameters) from the data path;
#   B  the same with --no-data-path on every worker: none from it, and the same model bits, round
#      by round, as A;
#   C  the same with --data-bind off on the coordinator: none, nothing opened, the same bits;
#   D  plain FedAvg (--no-secure-agg): the data path is open but never used;
#   E  a long secure run whose workers' data path goes through an on-path observer (a relay that
#      reads their session tokens off the wire) while tally-data-hostile sends the data port
#      garbage, oversize frames, other message types, missing, short and unknown tokens, too many
#      frames, an observed token from a connection of its own, a connection from an unknown
#      address: every message is dropped and counted, nothing is answered, and the rounds go on
#      with every update;
#   F  A again, the observer turned attacker: it flips bytes of w0's masked chunks in flight (the
#      token and envelope stay right): its last chunk in round 1, all of them in round 2. Each
#      altered chunk is dropped, not charged to w0: the rest of its update comes over CURVE, every
#      round applies with all four updates at its first attempt, and the model bits are A's;
#   G  liveness and rebinding: w0 (the only worker on the data path) is stopped while the relay
#      replays its last chunk on its own data connection: the replays are not counted and do not
#      keep it alive, it is marked lost after its patience; resumed, it comes back with a new
#      Welcome, and its chunks under the new token on its new connection are taken again.
source "$(dirname "$0")/lib/common.bash"

DH="$BIN/tally-data-hostile"
WPIDS=()
[ -x "$DH" ] || fail "$DH is not built (target tally-data-hostile)"
PY=/usr/bin/python3
BIG=mlp:784-1340-10 # 1065310 parameters: a masked update is over 2^20 words, so two chunks
SMALL=mlp:784-16-10
WORKERS=(w0 w1 w2 w3)
keys coordinator "${WORKERS[@]}"

# ---- the on-path relay (ZMTP 3 over TCP, worker to coordinator parsed frame by frame) ----
cat >"$WORK/relay.py" <<'PYEOF'
# A TCP relay from LISTEN_HOST:PORT to UPSTREAM_HOST:PORT (PORT picked here, written to
# PORT_FILE). It reads the ZMTP stream from workers, writes each session token it sees to
# TOKEN_FILE and, per RULES (ROUND:INDEX:NTH, comma separated), flips the first byte of the
# tensor frame of the NTH update_chunk of that round and index (counted over attempts). While
# INJECT_FILE exists it sends the last update_chunk it forwarded again, every 50 ms, on the
# connection that carried it (between whole messages), and logs "injected #N".
import os, socket, sys, threading, time

listen_host, upstream_host, port_file, token_file, log_file, rules, inject_file = sys.argv[1:8]
rules = {tuple(int(x) for x in r.split(":")) for r in rules.split(",") if r}
lock = threading.Lock()
seen, tokens, last = {}, [], None
log = open(log_file, "a", buffering=1)

def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1
        v |= (c & 0x7F) << s; s += 7
        if not c & 0x80:
            return v, i

def fields(b):
    i, out = 0, {}
    while i < len(b):
        k, i = varint(b, i)
        t = k & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 2:
            n, i = varint(b, i); v = bytes(b[i:i + n]); i += n
        elif t in (1, 5):
            n = 8 if t == 1 else 4; v = b[i:i + n]; i += n
        else:
            raise ValueError("wire type %d" % t)
        out[k >> 3] = v
    return out

def on_message(frames):  # True for an update_chunk
    try:
        env = fields(frames[0][1])
        chunk = fields(env[17])  # Envelope.update_chunk
    except (ValueError, IndexError, KeyError):
        return False
    key = (env.get(3, 0), chunk.get(1, 0))  # round, index
    tok = chunk.get(2, b"").hex()
    with lock:
        seen[key] = nth = seen.get(key, 0) + 1
        if tok and tok not in tokens:
            tokens.append(tok)
            with open(token_file + ".tmp", "w") as f:
                f.write("\n".join(tokens) + "\n")
            os.rename(token_file + ".tmp", token_file)
        log.write("chunk round %d index %d #%d token %s\n" % (key + (nth, tok)))
        if key + (nth,) in rules and len(frames) > 1 and frames[1][1]:
            frames[1][1][0] ^= 0xFF
            log.write("tampered round %d index %d #%d\n" % (key + (nth,)))
    return True

def upstream(src, dst):
    global last
    greet, buf, msg, out = 64, bytearray(), [], threading.Lock()  # out: whole messages to dst
    while True:
        data = src.recv(1 << 20)
        if not data:
            break
        if greet:  # the greeting goes on as it comes: each side waits for part of the other's
            n = min(greet, len(data))
            with out:
                dst.sendall(data[:n])
            greet -= n; data = data[n:]
        buf += data
        while len(buf) >= 2:
            flags, hl = buf[0], 9 if buf[0] & 2 else 2
            if len(buf) < hl:
                break
            size = int.from_bytes(buf[1:9], "big") if flags & 2 else buf[1]
            if len(buf) < hl + size:
                break
            head, body = bytes(buf[:hl]), bytearray(buf[hl:hl + size])
            del buf[:hl + size]
            if flags & 4:  # a command
                with out:
                    dst.sendall(head + body)
                continue
            msg.append([head, body])
            if not flags & 1:
                chunk = on_message(msg)
                raw = b"".join(h + bytes(b) for h, b in msg)
                with out:
                    dst.sendall(raw)
                if chunk:
                    with lock:
                        last = (dst, out, raw)
                msg = []

def inject():
    n = 0
    while True:
        time.sleep(0.05)
        with lock:
            target = last
        if target is None or not os.path.exists(inject_file):
            continue
        dst, out, raw = target
        try:
            with out:
                dst.sendall(raw)
        except OSError as e:
            log.write("inject failed: %s\n" % e)
            continue
        n += 1
        log.write("injected #%d\n" % n)

def downstream(src, dst):
    while True:
        data = src.recv(1 << 16)
        if not data:
            break
        dst.sendall(data)

def guarded(f, a, b):
    try:
        f(a, b)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

srv = socket.socket()
srv.bind((listen_host, 0))
srv.listen(16)
port = srv.getsockname()[1]
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % port)
os.rename(port_file + ".tmp", port_file)
threading.Thread(target=inject, daemon=True).start()
while True:
    c, _ = srv.accept()
    try:
        u = socket.create_connection((upstream_host, port))
    except OSError:
        c.close()
        continue
    threading.Thread(target=guarded, args=(upstream, c, u), daemon=True).start()
    threading.Thread(target=guarded, args=(downstream, u, c), daemon=True).start()
PYEOF

# start_relay RUN RULES : relay 127.0.0.1:PORT -> 127.0.0.2:PORT, injecting while $WORK/RUN.inject
# exists; sets RELAY_PORT
start_relay() {
	$PY "$WORK/relay.py" 127.0.0.1 127.0.0.2 "$WORK/$1.relay-port" "$WORK/$1.tokens" "$WORK/$1-relay.log" "$2" \
		"$WORK/$1.inject" 2>"$WORK/$1-relay-stderr.log" &
	PIDS+=($!)
	wait_for 20 test -s "$WORK/$1.relay-port" || fail "relay did not start: $(tail -3 "$WORK/$1-relay-stderr.log")"
	RELAY_PORT=$(cat "$WORK/$1.relay-port")
}

# ---- federations ----
# start_coord RUN ARGS... : a coordinator with its state in $WORK/RUN; sets CPID, CEP
start_coord() {
	local run=$1
	shift
	"$BIN/tally-coordinator" --bind 'tcp://127.0.0.1:*' --endpoint-file "$WORK/$run.endpoint" \
		--state-dir "$WORK/$run" --key "$WORK/keys/coordinator.key" --enrolled "$WORK/enrolled" --run-id dp \
		--min-workers 4 --min-participants 4 --quorum 3 --deadline 60 --sa-stage 20 --heartbeat-ms 300 \
		--patience-ms 5000 "$@" >"$WORK/$run-coordinator.log" 2>&1 &
	CPID=$!
	PIDS+=("$CPID")
	wait_for 30 test -s "$WORK/$run.endpoint" || fail "$run: coordinator did not start: $(tail -3 "$WORK/$run-coordinator.log")"
	CEP=$(cat "$WORK/$run.endpoint")
}

# start_w RUN NAME ARGS... : worker NAME (partition wK -> K/300, 200 examples); adds to WPIDS
start_w() {
	local run=$1 name=$2
	shift 2
	"$BIN/tally-worker" --coordinator "$CEP" --key "$WORK/keys/$name.key" --coordinator-key "$WORK/keys/coordinator.pub" \
		--roster "$WORK/enrolled" --data-dir "$FMNIST" --partition "${name#w}/300" --scheme iid "$@" \
		>"$WORK/$run-$name.log" 2>&1 &
	WPIDS+=($!)
	PIDS+=($!)
}

# finish RUN : the coordinator ends its rounds and exits 0, and so do the workers it said goodbye to
finish() {
	wait_exit "$CPID" 180 || fail "$1: coordinator did not finish"
	[ "$STATUS" = 0 ] || fail "$1: coordinator exited with $STATUS"
	for p in "${WPIDS[@]}"; do
		wait_exit "$p" 30 || fail "$1: a worker did not exit after the run"
		[ "$STATUS" = 0 ] || fail "$1: a worker exited with $STATUS"
	done
	WPIDS=()
}

# federation RUN "COORD ARGS" "WORKER ARGS" : four workers, to the end of the run
federation() {
	local run=$1
	# shellcheck disable=SC2086
	start_coord "$run" $2
	for w in "${WORKERS[@]}"; do
		# shellcheck disable=SC2086
		start_w "$run" "$w" ${3:-}
	done
	finish "$run"
}

# col RUN FIELD : FIELD of every line of RUN's metrics.jsonl, space separated
col() {
	$PY -c 'import json,sys
print(" ".join(json.dumps(json.loads(l)[sys.argv[2]]) for l in open(sys.argv[1])))' "$WORK/$1/metrics.jsonl" "$2"
}

# chunks RUN : update chunks per masked update in RUN (parameters and ring width from its log)
chunks() {
	local n bits
	n=$(sed -n 's/.*model mlp:[0-9-]*: \([0-9]*\) parameters.*/\1/p' "$WORK/$1-coordinator.log" | head -1)
	bits=$(grep -o '[0-9]*-bit ring' "$WORK/$1-coordinator.log" | sort -u)
	if [ -z "$n" ] || [ "$(wc -l <<<"$bits")" != 1 ]; then
		fail "$1: no model size, or rounds of different ring widths"
	fi
	echo $(((((n + 1) * ${bits%-bit ring} / 32) + (1 << 20) - 1) / (1 << 20)))
}

# params RUN ROUND : SHA-256 of the parameters in RUN's checkpoint of ROUND
params() {
	$PY -c 'import hashlib,sys
b=open(sys.argv[1],"rb").read()
j=int.from_bytes(b[8:16],"little"); d=int.from_bytes(b[16+j:24+j],"little")
assert 24+j+d+32 == len(b), "not a checkpoint"
print(hashlib.sha256(b[24+j:24+j+d]).hexdigest())' "$(printf '%s/%s/checkpoints/round-%020d.ckpt' "$WORK" "$1" "$2")"
}

# same_model RUN ROUND RUN2 ROUND2 : both checkpoints exist and hold the same parameters
same_model() {
	local a b
	a=$(params "$1" "$2") && b=$(params "$3" "$4") && [ ${#a} = 64 ] && [ "$a" = "$b" ]
}
lines_at_least() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
# took RUN N : a round of RUN took N chunks from the data path (so the tokens of their senders are bound)
took() { [ -f "$WORK/$1/metrics.jsonl" ] && [[ " $(col "$1" data_path_chunks) " == *" $2 "* ]]; }
digest() { "$BIN/tally" inspect "$WORK/$1/model.safetensors" | awk '$1 == "digest" {print $2}'; }
opened() { grep -q "open data path for masked updates on tcp://127.0.0.1:[0-9]" "$WORK/$1-coordinator.log"; }
all_workers_opened() {
	local port
	port=$(sed -n 's|.*open data path for masked updates on tcp://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/$1-coordinator.log")
	for w in "${WORKERS[@]}"; do
		grep -q "open data path for masked updates: tcp://127.0.0.1:$port\$" "$WORK/$1-$w.log" || return 1
	done
}
no_worker_opened() { ! grep -q "open data path" "$WORK/$1"-w*.log; }

SEC="--model $BIG --rounds 3"

# ---- A: secure, data path on ----
federation A "$SEC"
n=$(chunks A)
[ "$n" -ge 2 ] || fail "A: an update of $BIG is $n chunk(s): the multi-chunk path is not exercised"
[ "$(col A round)" = "1 2 3" ] || fail "A: rounds $(col A round), expected 1 2 3 at their first attempt"
[ "$(col A applied)" = "true true true" ] || fail "A: rounds applied: $(col A applied)"
[ "$(col A secure_agg)" = "true true true" ] || fail "A: not every round was secure"
[ "$(col A updates)" = "4 4 4" ] || fail "A: updates per round $(col A updates), not 4"
[ "$(col A participants)" = "4 4 4" ] || fail "A: participants per round $(col A participants), not 4"
[ "$(col A data_path_chunks)" = "$((4 * n)) $((4 * n)) $((4 * n))" ] ||
	fail "A: data_path_chunks per round $(col A data_path_chunks), expected 4 participants x $n chunks"
opened A || fail "A: the coordinator did not open its data path"
all_workers_opened A || fail "A: not every worker opened the data path the coordinator announced"
pass "A: 3 secure rounds, all $((4 * n)) update chunks of each from the data path"

# ---- B: the same, every worker with --no-data-path ----
federation B "$SEC" --no-data-path
[ "$(col B applied)" = "true true true" ] || fail "B: rounds applied: $(col B applied)"
[ "$(col B updates)" = "4 4 4" ] || fail "B: updates per round $(col B updates), not 4"
[ "$(col B data_path_chunks)" = "0 0 0" ] || fail "B: data_path_chunks $(col B data_path_chunks) with --no-data-path"
opened B || fail "B: the coordinator did not open its data path"
no_worker_opened B || fail "B: a worker with --no-data-path opened the data path"
for r in 1 2 3; do
	same_model A $r B $r || fail "round $r: the model over the data path differs from the one over CURVE"
done
[ -n "$(digest A)" ] || fail "A: tally inspect shows no digest"
[ "$(digest A)" = "$(digest B)" ] || fail "final models differ: $(digest A) vs $(digest B)"
pass "B: --no-data-path: no chunk from the data path, the same model bits in every round ($(digest A))"

# ---- C: the coordinator with --data-bind off ----
federation C "$SEC --data-bind off"
[ "$(col C applied)" = "true true true" ] || fail "C: rounds applied: $(col C applied)"
[ "$(col C updates)" = "4 4 4" ] || fail "C: updates per round $(col C updates), not 4"
[ "$(col C data_path_chunks)" = "0 0 0" ] || fail "C: data_path_chunks $(col C data_path_chunks) with --data-bind off"
grep -q "open data path" "$WORK/C-coordinator.log" && fail "C: --data-bind off, yet the coordinator opened a data path"
no_worker_opened C || fail "C: a worker opened a data path the coordinator does not have"
[ "$(digest C)" = "$(digest A)" ] || fail "C: the final model differs from A's"
pass "C: --data-bind off: nothing opened, no chunk from the data path, the same model"

# ---- D: plain FedAvg ----
federation D "--model $SMALL --rounds 2 --no-secure-agg"
[ "$(col D applied)" = "true true" ] || fail "D: rounds applied: $(col D applied)"
[ "$(col D secure_agg)" = "false false" ] || fail "D: rounds were not plain"
[ "$(col D updates)" = "4 4" ] || fail "D: updates per round $(col D updates), not 4"
[ "$(col D data_path_chunks)" = "0 0" ] || fail "D: plain rounds took $(col D data_path_chunks) chunks from the data path"
opened D || fail "D: the coordinator did not open its data path (so 0 would prove nothing)"
all_workers_opened D || fail "D: the workers did not open the data path (so 0 would prove nothing)"
pass "D: plain rounds: the data path open, yet no chunk from it"

# ---- E: hostile input on the data port, while a secure federation runs ----
# The workers reach the data port through the relay (the coordinator listens on 127.0.0.2; each
# worker connects to its coordinator's host, 127.0.0.1, at the announced port, where the relay is).
start_relay E ""
start_coord E --model $SMALL --rounds 1000000 --quorum 4 --data-bind "tcp://127.0.0.2:$RELAY_PORT"
ECPID=$CPID
for w in "${WORKERS[@]}"; do start_w E "$w"; done
wait_for 60 lines_at_least "$WORK/E.tokens" 4 || fail "E: the relay saw fewer than 4 session tokens"
wait_for 30 took E $((4 * $(chunks E))) || fail "E: no round took every chunk from the data path"
TOKEN=$(head -n 1 "$WORK/E.tokens") # bound to its worker's own connection by now
"$DH" --data "tcp://127.0.0.2:$RELAY_PORT" --run-id dp --token "$TOKEN" --from 127.0.0.3 >"$WORK/E-hostile.log" 2>&1 ||
	fail "E: tally-data-hostile failed: $(tail -3 "$WORK/E-hostile.log")"
# Every case the program knows is expected here, in its order, and nothing else.
EXPECT=$(cat <<'EOF'
garbage|envelope of 64 bytes does not parse as protobuf
empty|envelope of 0 bytes has no body
version-2|protocol version 2 is not the supported version 1
hello|not a masked update chunk with a token
heartbeat|not a masked update chunk with a token
chunk-no-token|not a masked update chunk with a token
request-token|chunk_request: carries a data token
token-5-bytes|update_chunk: data token of 5 bytes, expected 16
token-wrong|unknown session token
too-many-frames|message has more than one tensor frame
index-huge|chunk index 1099511627776 is out of range
stolen-run-id|session token presented on another connection
stolen-stale-round|session token presented on another connection
envelope-3mib|envelope of 3145728 bytes is over the limit of 2097152
marker|envelope of 64 bytes does not parse as protobuf
EOF
)
listed=$("$DH" --list | cut -f1)
[ "$listed" = "$(cut -d'|' -f1 <<<"$EXPECT" | grep -vx marker)" ] ||
	fail "tally-data-hostile --list and this test disagree: $(tr '\n' ' ' <<<"$listed")"
sent=$(sed -n 's/^case \([^:]*\): sent .*/\1/p' "$WORK/E-hostile.log")
[ "$sent" = "$listed" ] || fail "E: not every case was sent: $(tr '\n' ' ' <<<"$sent")"
# The coordinator warns at drops 1, 1001, 2001...: with 1000 messages a case (1 for the 3 MiB
# one), each warning falls on the first message of a case and names its reason, and the last
# (the marker's) proves that every message before it was counted exactly once. The observed
# token is refused for the connection it comes on before its run id or round is looked at.
k=0
while IFS='|' read -r name reason; do
	line="data path: dropped a message ($reason); $((k * 1000 + 1)) dropped so far"
	wait_for 30 grep -qF "$line" "$WORK/E-coordinator.log" || fail "E: case $name: no log line '$line'"
	k=$((k + 1))
done <<<"$EXPECT"
[ "$(grep -c "data path: dropped a message" "$WORK/E-coordinator.log")" = "$(wc -l <<<"$EXPECT")" ] ||
	fail "E: more drops than the hostile messages: $(grep "data path: dropped" "$WORK/E-coordinator.log" | tail -3)"
grep -q "^answers received: 0$" "$WORK/E-hostile.log" || fail "E: the data socket answered: $(grep answers "$WORK/E-hostile.log")"
grep -q "^oversize: .*connection closed by the coordinator: yes$" "$WORK/E-hostile.log" ||
	fail "E: a frame over ZMQ_MAXMSGSIZE did not cost its connection"
grep -q "^unknown-address: connection from 127.0.0.3 refused at the handshake: yes$" "$WORK/E-hostile.log" ||
	fail "E: a data-path connection from 127.0.0.3 was not refused at the handshake"
grep -q "refused a data-path connection from 127.0.0.3: no enrolled worker was admitted from there" \
	"$WORK/E-coordinator.log" || fail "E: the refusal of 127.0.0.3 is not in the coordinator's log"
kill -0 "$ECPID" 2>/dev/null || fail "E: the coordinator died"
# The rounds go on: every round of the run, the ones during the attack too, applied with all four
# updates at its first attempt, none counting more chunks from the data path than it took (the
# one whose update was being pulled while its token came from elsewhere got the rest over
# CURVE); those that started after the last hostile message took all their chunks from it.
after=$(wc -l <"$WORK/E/metrics.jsonl")
wait_for 60 lines_at_least "$WORK/E/metrics.jsonl" $((after + 4)) || fail "E: rounds stopped after the attack"
kill -TERM "$ECPID"
wait_exit "$ECPID" 30 || fail "E: coordinator still running 30 s after SIGTERM"
[ "$STATUS" = 0 ] || fail "E: coordinator exited with $STATUS after SIGTERM"
for p in "${WPIDS[@]}"; do kill "$p" 2>/dev/null || true; done # they would wait for it to come back
WPIDS=()
$PY - "$WORK/E/metrics.jsonl" "$after" "$(chunks E)" <<'PYEOF' || fail "E: the federation did not go on intact"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
after, per = int(sys.argv[2]), 4 * int(sys.argv[3])
bad = [o["round"] for o in rows if not o["applied"] or o["updates"] != 4 or o["attempt"] != 1]
assert not bad, "rounds not applied with 4 updates at their first attempt: %s" % bad[:10]
bad = [o["round"] for o in rows if o["data_path_chunks"] > per]
assert not bad, "rounds with data_path_chunks over %d: %s" % (per, bad[:10])
bad = [o["round"] for o in rows[after + 1:] if o["data_path_chunks"] != per]
assert not bad, "rounds after the attack with data_path_chunks != %d: %s" % (per, bad[:10])
assert [o["round"] for o in rows] == list(range(1, len(rows) + 1)), "round numbers skip"
print("E: %d rounds, all applied with 4 updates" % len(rows))
PYEOF
for pat in "marked lost" "banned" "refused a message" "not used"; do
	grep -q "$pat" "$WORK/E-coordinator.log" && fail "E: an honest worker suffered: $(grep -m1 "$pat" "$WORK/E-coordinator.log")"
done
grep -q "refused a message" "$WORK"/E-w*.log && fail "E: the coordinator refused an honest worker's message"
suspects=$(sed -n "s/.*bad bytes on the data path under '\(.*\)''s token.*/\1/p" "$WORK/E-coordinator.log" | sort -u)
[ "$(wc -w <<<"$suspects")" -le 1 ] || fail "E: one token was observed, yet the CURVE fallback hit: $suspects"
pass "E: $(wc -l <<<"$listed") kinds of bad input on the data port, each drop counted, nothing answered, every round applied"

# ---- F: A again, an on-path attacker altering w0's masked chunks, token and envelope intact ----
# w0 is the only worker on the data path, so the altered chunks are its own and data_path_chunks
# counts its chunks only. Round 1: its last chunk altered; round 2: all of them (each requested,
# in one go, before the first one arrives). Round 3 is clean.
rules="1:$((n - 1)):1"
for ((i = 0; i < n; i++)); do rules+=",2:$i:1"; done
start_relay F "$rules"
# shellcheck disable=SC2086
start_coord F $SEC --data-bind "tcp://127.0.0.2:$RELAY_PORT"
start_w F w0
for w in w1 w2 w3; do start_w F "$w" --no-data-path; done
finish F
[ "$(chunks F)" = "$n" ] || fail "F: $(chunks F) chunks per update, A had $n"
[ "$(grep -c '^tampered' "$WORK/F-relay.log")" = $((n + 1)) ] || fail "F: the relay altered $(grep -c '^tampered' "$WORK/F-relay.log") chunks, not $((n + 1))"
for r in ${rules//,/ }; do
	IFS=: read -r rr ri rn <<<"$r"
	grep -q "^tampered round $rr index $ri #$rn\$" "$WORK/F-relay.log" || fail "F: the relay did not alter round $rr chunk $ri"
done
c=$(grep -c . "$WORK/F.tokens")
[ "$c" = 1 ] || fail "F: $c tokens on the data path, expected w0's only"
log="$WORK/F-coordinator.log"
grep -qF "data path: dropped a message (chunk does not match its committed digest); 1 dropped so far" "$log" ||
	fail "F: the first altered chunk was not dropped for its digest: $(grep -m1 "data path: dropped" "$log")"
[ "$(grep -c "data path: dropped" "$log")" = 1 ] || fail "F: other drops: $(grep "data path: dropped" "$log" | tail -2)"
for r in 1 2; do
	grep -qF "round $r: bad bytes on the data path under 'w0''s token: the rest of its update comes over CURVE" "$log" ||
		fail "F: round $r: w0's update was not pulled over CURVE after an altered chunk"
done
[ "$(grep -c "bad bytes on the data path" "$log")" = 2 ] || fail "F: the CURVE fallback in a round without altered chunks"
for pat in "taking its update back out" "not used" "aggregate discarded" "marked lost" "banned" "refused"; do
	grep -q "$pat" "$log" && fail "F: w0 was charged for the relay's bytes: $(grep -m1 "$pat" "$log")"
done
for r in 1 2 3; do
	grep -q "round $r: update aggregated" "$WORK/F-w0.log" || fail "F: round $r: w0 was not told its update counted"
done
[ "$(col F round)" = "1 2 3" ] || fail "F: rounds $(col F round), expected 1 2 3"
[ "$(col F attempt)" = "1 1 1" ] || fail "F: attempts $(col F attempt): a round was retried"
[ "$(col F applied)" = "true true true" ] || fail "F: rounds applied: $(col F applied)"
[ "$(col F updates)" = "4 4 4" ] || fail "F: updates per round $(col F updates), not 4"
# Only chunks the round took from the data path count: w0's first n-1 in round 1, none in round 2.
[ "$(col F data_path_chunks)" = "$((n - 1)) 0 $n" ] ||
	fail "F: data_path_chunks per round $(col F data_path_chunks), expected $((n - 1)) 0 $n"
for r in 1 2 3; do
	same_model F $r A $r || fail "F: round $r: the model differs from A's: altered bytes reached the sum, or an update was lost"
done
[ "$(digest F)" = "$(digest A)" ] || fail "F: final model $(digest F), A's $(digest A)"
pass "F: altered masked chunks dropped by digest, w0's update pulled over CURVE instead: every round applied with 4 at its first attempt, A's model bits"

# ---- G: liveness comes from CURVE only; a new Welcome binds the new token to the new connection ----
start_relay G ""
start_coord G --model $SMALL --rounds 1000000 --heartbeat-ms 100 --patience-ms 2000 \
	--data-bind "tcp://127.0.0.2:$RELAY_PORT"
GCPID=$CPID
start_w G w0
W0=${WPIDS[-1]}
for w in w1 w2 w3; do start_w G "$w" --no-data-path; done
wait_for 30 test -s "$WORK/G/metrics.jsonl" || fail "G: no round"
g=$(chunks G)
wait_for 30 took G "$g" || fail "G: no round took w0's $g chunk(s) from the data path"
# Replays of w0's last chunk on its own connection pass every check of the data path (right
# token, connection, run; a round in progress: the one waiting for w0) and are ignored by the
# round code: they neither count nor keep w0 alive.
kill -STOP "$W0"
touch "$WORK/G.inject"
wait_for 10 grep -q "^injected #1\$" "$WORK/G-relay.log" || fail "G: the relay did not inject"
wait_for 10 grep -q "worker 'w0' silent for [0-9]* ms: marked lost" "$WORK/G-coordinator.log" ||
	fail "G: w0, stopped, was not marked lost while its data connection carried its chunks"
# The first drop is an injected chunk whose session is gone: none before was dropped.
wait_for 10 grep -qF "data path: dropped a message (unknown session token); 1 dropped so far" "$WORK/G-coordinator.log" ||
	fail "G: replays were dropped before w0 was lost, or none came after: $(grep -m1 "data path: dropped" "$WORK/G-coordinator.log")"
rm "$WORK/G.inject"
inj=$(grep -c "^injected" "$WORK/G-relay.log")
[ "$inj" -ge 20 ] || fail "G: only $inj chunks injected over w0's patience"
kill -CONT "$W0"
wait_for 30 lines_at_least "$WORK/G.tokens" 2 || fail "G: w0 did not come back with a new token"
after=$(wc -l <"$WORK/G/metrics.jsonl")
wait_for 30 lines_at_least "$WORK/G/metrics.jsonl" $((after + 4)) || fail "G: rounds did not resume after w0 came back"
kill -TERM "$GCPID"
wait_exit "$GCPID" 30 || fail "G: coordinator still running 30 s after SIGTERM"
[ "$STATUS" = 0 ] || fail "G: coordinator exited with $STATUS after SIGTERM"
for p in "${WPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
WPIDS=()
$PY - "$WORK/G/metrics.jsonl" "$after" "$g" <<'PYEOF' || fail "G: the rounds do not show it"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
after, per = int(sys.argv[2]), int(sys.argv[3])
bad = [o["round"] for o in rows if o["data_path_chunks"] > per]
assert not bad, "injected chunks counted in data_path_chunks of rounds %s" % bad[:10]
bad = [o["round"] for o in rows[after + 1:] if not o["applied"] or o["updates"] != 4 or o["data_path_chunks"] != per]
assert not bad, "rounds after w0's return not applied with 4, w0's chunks not from the data path: %s" % bad[:10]
PYEOF
[ "$(sort -u "$WORK/G.tokens" | wc -l)" = 2 ] || fail "G: w0's second Welcome did not bring a new token"
[ "$(grep -c "joined run" "$WORK/G-w0.log")" = 2 ] || fail "G: w0 did not join twice"
[ "$(grep -c "marked lost" "$WORK/G-coordinator.log")" = 1 ] || fail "G: a worker other than w0 was lost"
[ "$(grep -c "data path: dropped" "$WORK/G-coordinator.log")" = 1 ] ||
	fail "G: more drops: $(grep "data path: dropped" "$WORK/G-coordinator.log" | tail -2)"
pass "G: $inj replays of w0's chunk on its own connection neither counted nor kept it alive; back with a new token on a new connection, its chunks were taken again"

# ---- no sanitizer report anywhere ----
if grep -l "runtime error:\|AddressSanitizer\|LeakSanitizer\|UndefinedBehaviorSanitizer" "$WORK"/*.log; then
	fail "a sanitizer reported an error"
fi
pass "the open data path: used, off, plain, hostile, tampered, replayed and rebound"
