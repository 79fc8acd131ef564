#!/usr/bin/env bash
# The open data path: masked update chunks travel over a plain socket of their own, tied to a
# worker's session by a token and checked by digest. The token in a chunk is good for one attempt
# of one round (BLAKE2b-128 keyed by the session secret from the Welcome, over "tally-data-v1",
# round, attempt), and bound, in that attempt, to the first connection that presents it.
# Eight federations over CURVE (four workers, fixed seeds), one after the other:
#   A  secure, data path on: every round takes all its update chunks (participants x chunks; two
#      per update, the model being over 2^20 parameters) from the data path;
#   B  the same with --no-data-path on every worker: none from it, and the same model bits, round
#      by round, as A;
#   C  the same with --data-bind off on the coordinator: none, nothing opened, the same bits;
#   D  plain FedAvg (--no-secure-agg): the data path is open but never used;
#   E  a long secure run whose workers' data path goes through an on-path observer (a relay that
#      reads their tokens off the wire) while tally-data-hostile sends the data port garbage,
#      oversize frames, other message types, missing, short and unknown tokens, too many frames,
#      a connection from an unknown address, and observed tokens from a connection of its own:
#      one of the attempt in progress (the relay holds that round open: it passes on one worker's
#      update and holds back the other three until the tool is done), refused for its connection,
#      and one of an attempt that is over, refused as unknown. Every message is dropped and
#      counted, nothing is answered, and every round goes on with every update, the held one too;
#   F  A again, the observer turned attacker: it flips bytes of w0's masked chunks in flight (the
#      token and envelope stay right): its last chunk in round 1, all of them in round 2. Each
#      altered chunk is dropped, not charged to w0: the rest of its update comes over CURVE, every
#      round applies with all four updates at its first attempt, and the model bits are A's; the
#      relay sees a new token of w0's in each round;
#   G  rebinding and liveness, w0 the only worker on the data path: the relay cuts w0's data
#      connection; w0's DEALER connects again and the next attempt binds the new connection (every
#      later round takes w0's chunk from it, none is dropped). Then the relay stops w0 just before
#      passing on its chunk and replays that chunk on w0's connection while the round waits for
#      w0: the replays are neither counted nor dropped nor keep w0 alive; it is marked lost after
#      its patience, and only then are replays dropped (its token matches nothing); resumed, it
#      comes back with a new Welcome on a new data connection, and its chunks are taken again;
#   H  A again, the relay swallowing w0's masked chunks (w0 alone on the data path; they reach the
#      coordinator neither good nor bad): its last chunk in round 1, all of them in round 2. With
#      a patience (1.5 s) far shorter than the deadline (60 s), requests that have had no answer
#      for a patience are asked for again over CURVE: every round applies with all four updates
#      at its first attempt, seconds after it started, w0 neither lost nor banned, A's model bits.
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
# A TCP relay from LISTEN_HOST:PORT to UPSTREAM_HOST:PORT (PORT picked here). Its files are
# PREFIX.NAME: it writes the port to PREFIX.relay-port, what it does to PREFIX-relay.log and each
# data token it sees, the first time, to PREFIX.tokens as ROUND:ATTEMPT:HEX (a token is good for
# one attempt of one round). It parses the ZMTP stream from workers frame by frame and, per RULES
# (ROUND:INDEX:NTH, comma separated; NTH counts over attempts), flips the first byte of the tensor
# frame of the NTH update_chunk of that round and index (token and envelope stay right). Files the
# test creates steer it:
#   PREFIX.swallow (RULES, as above, read at each update_chunk): an update_chunk a rule names is
#     not passed on; the stream goes on in step, from the next whole message;
#   PREFIX.hold: the next round to start has its first update_chunk passed on (and that chunk's
#     ROUND:ATTEMPT:HEX written to PREFIX.held) and every later one held back until PREFIX.hold
#     is removed, so that round stays open (once);
#   PREFIX.stop (a pid): before passing on the next update_chunk, it sends that pid SIGSTOP and
#     removes the file;
#   PREFIX.cut: once the next update_chunk is passed on, it closes the connection that carried it
#     (both ways, after all that was sent) and removes the file;
#   PREFIX.inject: while it exists, the last update_chunk passed on is sent again every 50 ms on
#     the connection that carried it (between whole messages).
import os, signal, socket, sys, threading, time

listen_host, upstream_host, prefix, spec = sys.argv[1:5]
def parse_rules(text):
    return {tuple(int(x) for x in r.split(":")) for r in text.strip().split(",") if r}

rules = parse_rules(spec)
lock = threading.Lock()
seen, rounds, known, last, held = {}, set(), set(), None, None
log = open(prefix + "-relay.log", "a", buffering=1)
tokens = open(prefix + ".tokens", "a", buffering=1)

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

def write_file(name, text):
    with open(name + ".tmp", "w") as f:
        f.write(text)
    os.rename(name + ".tmp", name)

def on_message(frames, conn):
    """None for anything but an update_chunk, else a dict: "what" and "token" name the chunk;
    "swallow", "first-held", "hold", "stopped" (the pid) and "cut" say what to do with it."""
    global held
    try:
        env = fields(frames[0][1])
        chunk = fields(env[17])  # Envelope.update_chunk
    except (ValueError, IndexError, KeyError):
        return None
    rnd, att, idx = env.get(3, 0), env.get(4, 0), chunk.get(1, 0)
    tok = chunk.get(2, b"").hex()
    todo = {"what": "round %d index %d" % (rnd, idx), "token": "%d:%d:%s" % (rnd, att, tok)}
    with lock:
        seen[rnd, idx] = nth = seen.get((rnd, idx), 0) + 1
        todo["what"] += " #%d" % nth
        if tok and tok not in known:
            known.add(tok)
            tokens.write(todo["token"] + "\n")
        log.write("chunk %s token %s connection %d\n" % (todo["what"], tok, conn))
        if (rnd, idx, nth) in rules and len(frames) > 1 and frames[1][1]:
            frames[1][1][0] ^= 0xFF
            log.write("tampered %s\n" % todo["what"])
        if os.path.exists(prefix + ".swallow"):
            with open(prefix + ".swallow") as f:
                if (rnd, idx, nth) in parse_rules(f.read()):
                    todo["swallow"] = True
                    return todo
        if held is None and rnd not in rounds and os.path.exists(prefix + ".hold"):
            held = rnd
            todo["first-held"] = True
        elif held == rnd:
            todo["hold"] = True
        rounds.add(rnd)
        if os.path.exists(prefix + ".stop"):
            with open(prefix + ".stop") as f:
                pid = int(f.read())
            os.kill(pid, signal.SIGSTOP)
            os.unlink(prefix + ".stop")
            todo["stopped"] = pid
        if os.path.exists(prefix + ".cut"):
            os.unlink(prefix + ".cut")
            todo["cut"] = True
    return todo

def upstream(src, dst, conn):
    global last
    greet, buf, msg, out = 64, bytearray(), [], threading.Lock()  # out: whole messages to dst
    while True:
        data = src.recv(1 << 20)
        if not data:
            return
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
            if flags & 1:
                continue
            todo = on_message(msg, conn)
            raw = b"".join(h + bytes(b) for h, b in msg)
            msg = []
            if todo and todo.get("swallow"):
                log.write("swallowed %s connection %d\n" % (todo["what"], conn))
                continue
            if todo and todo.get("hold") and os.path.exists(prefix + ".hold"):
                log.write("held %s connection %d\n" % (todo["what"], conn))
                while os.path.exists(prefix + ".hold"):
                    time.sleep(0.02)
                log.write("released %s\n" % todo["what"])
            with out:
                dst.sendall(raw)
            if todo is None:
                continue
            with lock:
                last = (dst, out, raw)
            if "first-held" in todo:
                write_file(prefix + ".held", todo["token"] + "\n")
                log.write("holding the rest of round %s after %s\n" % (todo["token"].split(":")[0], todo["what"]))
            if "stopped" in todo:
                log.write("stopped %d, then passed on %s\n" % (todo["stopped"], todo["what"]))
            if "cut" in todo:
                log.write("cut connection %d after %s\n" % (conn, todo["what"]))
                return

def inject():
    n = 0
    while True:
        time.sleep(0.05)
        with lock:
            target = last
        if target is None or not os.path.exists(prefix + ".inject"):
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

def downstream(src, dst, conn):
    while True:
        data = src.recv(1 << 16)
        if not data:
            return
        dst.sendall(data)

def guarded(f, a, b, conn):
    try:
        f(a, b, conn)
    except OSError:
        pass
    for s in (a, b):  # shutdown, not close: a FIN after everything sent, never a reset
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

srv = socket.socket()
srv.bind((listen_host, 0))
srv.listen(16)
write_file(prefix + ".relay-port", "%d\n" % srv.getsockname()[1])
threading.Thread(target=inject, daemon=True).start()
conns = 0
while True:
    c, _ = srv.accept()
    try:
        u = socket.create_connection((upstream_host, srv.getsockname()[1]))
    except OSError:
        c.close()
        continue
    conns += 1
    log.write("connection %d\n" % conns)
    threading.Thread(target=guarded, args=(upstream, c, u, conns), daemon=True).start()
    threading.Thread(target=guarded, args=(downstream, u, c, conns), daemon=True).start()
PYEOF

# start_relay RUN RULES : relay 127.0.0.1:PORT -> 127.0.0.2:PORT with files $WORK/RUN.* (see
# above); sets RELAY_PORT
start_relay() {
	$PY "$WORK/relay.py" 127.0.0.1 127.0.0.2 "$WORK/$1" "$2" 2>"$WORK/$1-relay-stderr.log" &
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
wait_for 30 test -s "$WORK/E/metrics.jsonl" || fail "E: no round"
per=$((4 * $(chunks E)))
wait_for 30 took E $per || fail "E: no round took every chunk from the data path"
# A token is good for one attempt, and these rounds last milliseconds: the relay holds one open.
# It passes on the first chunk of the next round (binding its token to its worker's connection:
# that worker's update is then complete) and holds back the other three until E.hold is removed.
touch "$WORK/E.hold"
wait_for 30 test -s "$WORK/E.held" || fail "E: the relay held no round"
LIVE=$(cat "$WORK/E.held") # ROUND:ATTEMPT:HEX, of the attempt held open
OLD=$(head -n 1 "$WORK/E.tokens") # the first token seen, of an attempt over before E.hold
HR=${LIVE%%:*}
[ "${OLD%%:*}" -lt "$HR" ] || fail "E: the first token seen ($OLD) is not of a round before the held one ($LIVE)"
"$DH" --data "tcp://127.0.0.2:$RELAY_PORT" --run-id dp --token "$LIVE" --old-token "$OLD" --from 127.0.0.3 \
	>"$WORK/E-hostile.log" 2>&1 || fail "E: tally-data-hostile failed: $(tail -3 "$WORK/E-hostile.log")"
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
token-wrong|unknown token (not this attempt's token of a live session)
too-many-frames|message has more than one tensor frame
index-huge|chunk index 1099511627776 is out of range
stolen-run-id|session token presented on another connection
stolen-stale-round|session token presented on another connection
stolen-expired|unknown token (not this attempt's token of a live session)
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
# (the marker's) proves that every message before it was counted exactly once. This attempt's
# token is refused for the connection it comes on, before its run id or round is looked at; the
# token of an attempt that is over matches no session.
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
# The held round was open all along (so the stolen cases were sent during its attempt), waiting
# for the three chunks the relay holds back.
held_back() { [ "$(grep -c "^held round $1 index " "$WORK/E-relay.log")" = 3 ]; }
wait_for 10 held_back "$HR" ||
	fail "E: the relay does not hold three chunks of round $HR: $(grep -c "^held round $HR " "$WORK/E-relay.log")"
grep -q "\"round\":$HR," "$WORK/E/metrics.jsonl" && fail "E: round $HR closed while the relay held it"
kill -0 "$ECPID" 2>/dev/null || fail "E: the coordinator died"
rm "$WORK/E.hold"
# The rounds go on: every round of the run, the held one too, applied with all four updates at its
# first attempt; from the first that took all its chunks from the data path on (the held one
# included: its three held chunks came after every hostile message), every one took them all.
wait_for 60 lines_at_least "$WORK/E/metrics.jsonl" $((HR + 4)) || fail "E: rounds stopped after the attack"
kill -TERM "$ECPID"
wait_exit "$ECPID" 30 || fail "E: coordinator still running 30 s after SIGTERM"
[ "$STATUS" = 0 ] || fail "E: coordinator exited with $STATUS after SIGTERM"
for p in "${WPIDS[@]}"; do kill "$p" 2>/dev/null || true; done # they would wait for it to come back
WPIDS=()
$PY - "$WORK/E/metrics.jsonl" "$HR" "$per" <<'PYEOF' || fail "E: the federation did not go on intact"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
held, per = int(sys.argv[2]), int(sys.argv[3])
assert [o["round"] for o in rows] == list(range(1, len(rows) + 1)), "round numbers skip"
bad = [o["round"] for o in rows if not o["applied"] or o["updates"] != 4 or o["attempt"] != 1]
assert not bad, "rounds not applied with 4 updates at their first attempt: %s" % bad[:10]
bad = [o["round"] for o in rows if o["data_path_chunks"] > per]
assert not bad, "rounds with data_path_chunks over %d: %s" % (per, bad[:10])
first = min(o["round"] for o in rows if o["data_path_chunks"] == per)
assert first < held, "round %d, held, is the first to take all its chunks from the data path" % held
bad = [o["round"] for o in rows[first - 1:] if o["data_path_chunks"] != per]
assert not bad, "rounds from %d on with data_path_chunks != %d: %s" % (first, per, bad[:10])
print("E: %d rounds, all applied with 4 updates" % len(rows))
PYEOF
for pat in "marked lost" "banned" "refused a message" "not used"; do
	grep -q "$pat" "$WORK/E-coordinator.log" && fail "E: an honest worker suffered: $(grep -m1 "$pat" "$WORK/E-coordinator.log")"
done
grep -q "refused a message" "$WORK"/E-w*.log && fail "E: the coordinator refused an honest worker's message"
# The stolen token's worker had its update in when the tool sent it: nothing to pull over CURVE.
grep -q "bad bytes on the data path" "$WORK/E-coordinator.log" &&
	fail "E: the CURVE fallback hit: $(grep -m1 "bad bytes on the data path" "$WORK/E-coordinator.log")"
pass "E: $(wc -l <<<"$listed") kinds of bad input on the data port, each drop counted, nothing answered; a token stolen in round $HR refused on another connection during its attempt, one of round ${OLD%%:*} as unknown after it; every round applied"

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
# w0's token is another in each attempt: the relay saw one new token a round, none again later.
c=$(cut -d: -f1 "$WORK/F.tokens" | tr '\n' ' ')
[ "$c" = "1 2 3 " ] || fail "F: new tokens first seen in rounds $c, expected one in each of 1 2 3"
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

# ---- G: a cut data connection binds again at the next attempt; liveness comes from CURVE only;
# a new Welcome starts a new connection and new tokens ----
# w0 is the only worker on the data path, and its update is one chunk. Once a round has taken it
# from there, the relay cuts w0's data connection after passing on its next chunk; w0's DEALER
# connects again (until then its chunks go over CURVE), and the first round whose chunk comes on
# the new connection binds it.
UNKNOWN="unknown token (not this attempt's token of a live session)"
start_relay G ""
start_coord G --model $SMALL --rounds 1000000 --heartbeat-ms 100 --patience-ms 2000 \
	--data-bind "tcp://127.0.0.2:$RELAY_PORT"
GCPID=$CPID
start_w G w0
W0=${WPIDS[-1]}
for w in w1 w2 w3; do start_w G "$w" --no-data-path; done
wait_for 30 test -s "$WORK/G/metrics.jsonl" || fail "G: no round"
g=$(chunks G)
[ "$g" = 1 ] || fail "G: an update of $SMALL is $g chunks: the relay's cut and stop need one"
wait_for 30 took G "$g" || fail "G: no round took w0's chunk from the data path"
touch "$WORK/G.cut"
wait_for 10 grep -q "^cut connection 1 after round [0-9]* index 0 #1\$" "$WORK/G-relay.log" ||
	fail "G: the relay did not cut w0's data connection"
CR=$(sed -n 's/^cut connection 1 after round \([0-9]*\) .*/\1/p' "$WORK/G-relay.log")
# rebound ROUND N : N rounds after ROUND took w0's chunk from the data path
rebound() { [ "$($PY -c 'import json,sys
print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["round"] > int(sys.argv[2]) and json.loads(l)["data_path_chunks"] > 0))' \
	"$WORK/G/metrics.jsonl" "$1")" -ge "$2" ]; }
wait_for 30 rebound "$CR" 3 || fail "G: after its data connection was cut, w0's chunks did not come over the data path again"
# Then w0 is stopped: the relay sends it SIGSTOP just before passing on its next chunk, whose
# round then waits for w0's reveals. Replays of that chunk on w0's connection (right token,
# connection and run, its attempt in progress) are ignored by the round code: they neither count
# nor keep w0 alive. Once w0 is lost its token matches nothing.
echo "$W0" >"$WORK/G.stop"
wait_for 10 grep -q "^stopped $W0, then passed on round [0-9]* index 0 #1\$" "$WORK/G-relay.log" ||
	fail "G: the relay did not stop w0 before its chunk"
SR=$(sed -n "s/^stopped $W0, then passed on round \([0-9]*\) .*/\1/p" "$WORK/G-relay.log")
touch "$WORK/G.inject"
wait_for 10 grep -q "^injected #1\$" "$WORK/G-relay.log" || fail "G: the relay did not inject"
wait_for 10 grep -q "worker 'w0' silent for [0-9]* ms: marked lost" "$WORK/G-coordinator.log" ||
	fail "G: w0, stopped, was not marked lost while its data connection carried its chunks"
line="data path: dropped a message ($UNKNOWN); 1 dropped so far"
wait_for 10 grep -qF "$line" "$WORK/G-coordinator.log" ||
	fail "G: no replay was dropped after w0 was lost: $(grep -m1 "data path: dropped" "$WORK/G-coordinator.log")"
rm "$WORK/G.inject"
inj=$(grep -c "^injected" "$WORK/G-relay.log")
[ "$inj" -ge 20 ] || fail "G: only $inj chunks injected over w0's patience"
# The run's first drop (none before it: not w0's chunk on its new connection after the cut, nor a
# replay while its round was open) comes after the loss.
first=$(grep -n "data path: dropped" "$WORK/G-coordinator.log" | head -1 | cut -d: -f1)
lost=$(grep -n "marked lost" "$WORK/G-coordinator.log" | head -1 | cut -d: -f1)
[ "$first" -gt "$lost" ] || fail "G: a drop before w0 was lost: $(grep -m1 "data path: dropped" "$WORK/G-coordinator.log")"
kill -CONT "$W0"
# Back with a new Welcome, w0 opens a new data connection (the relay's third).
wait_for 30 grep -q "^chunk round [0-9]* index 0 #1 token [0-9a-f]* connection 3\$" "$WORK/G-relay.log" ||
	fail "G: w0 did not come back on a new data connection"
after=$(wc -l <"$WORK/G/metrics.jsonl")
wait_for 30 lines_at_least "$WORK/G/metrics.jsonl" $((after + 4)) || fail "G: rounds did not resume after w0 came back"
kill -TERM "$GCPID"
wait_exit "$GCPID" 30 || fail "G: coordinator still running 30 s after SIGTERM"
[ "$STATUS" = 0 ] || fail "G: coordinator exited with $STATUS after SIGTERM"
for p in "${WPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
WPIDS=()
r2=$(
	$PY - "$WORK/G/metrics.jsonl" "$after" "$g" "$CR" "$SR" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
after, per, cut, stopped = (int(x) for x in sys.argv[2:6])
bad = [o["round"] for o in rows if o["data_path_chunks"] > per]
assert not bad, "injected chunks counted in data_path_chunks of rounds %s" % bad[:10]
bad = [o["round"] for o in rows if o["round"] == cut and o["data_path_chunks"] != per]
assert not bad, "round %d did not take the chunk passed on before the cut" % cut
r2 = min(o["round"] for o in rows if o["round"] > cut and o["data_path_chunks"] == per)
bad = [o["round"] for o in rows if r2 <= o["round"] <= stopped and o["data_path_chunks"] != per]
assert not bad, "rounds from %d (w0 back on the data path) to %d (stopped) without its chunk from it: %s" % (r2, stopped, bad[:10])
bad = [o["round"] for o in rows[after + 1:] if not o["applied"] or o["updates"] != 4 or o["data_path_chunks"] != per]
assert not bad, "rounds after w0's return not applied with 4, w0's chunks not from the data path: %s" % bad[:10]
print(r2)
PYEOF
) || fail "G: the rounds do not show it"
grep -q "^chunk round $r2 index 0 #1 token [0-9a-f]* connection 2\$" "$WORK/G-relay.log" ||
	fail "G: w0's chunk of round $r2, taken from the data path, did not come on its second connection"
[ "$(grep -c "joined run" "$WORK/G-w0.log")" = 2 ] || fail "G: w0 did not join twice"
[ "$(grep -c "marked lost" "$WORK/G-coordinator.log")" = 1 ] || fail "G: a worker other than w0 was lost"
[ "$(grep -c "data path: dropped" "$WORK/G-coordinator.log")" = 1 ] ||
	fail "G: more drops: $(grep "data path: dropped" "$WORK/G-coordinator.log" | tail -2)"
pass "G: cut after round $CR, w0's data connection was bound again from round $r2; $inj replays of its chunk on its own connection neither counted nor kept it alive; back with a new Welcome on a new connection, its chunks were taken again"

# ---- H: A again, w0's masked chunks swallowed in flight: asked for again over CURVE ----
# w0 is the only worker on the data path. The relay passes on none of the chunks H.swallow names:
# w0's last in round 1 (its first comes), all of them in round 2; round 3 is clean. Nothing bad
# reaches the coordinator, nothing is dropped: its requests only go unanswered. With the patience
# at 1.5 s and the deadline at 60 s, a round that fell back is far from one held to its deadline.
rules="1:$((n - 1)):1"
for ((i = 0; i < n; i++)); do rules+=",2:$i:1"; done
echo "$rules" >"$WORK/H.swallow"
start_relay H ""
# shellcheck disable=SC2086
start_coord H $SEC --heartbeat-ms 100 --patience-ms 1500 --data-bind "tcp://127.0.0.2:$RELAY_PORT"
start_w H w0
for w in w1 w2 w3; do start_w H "$w" --no-data-path; done
log="$WORK/H-coordinator.log"
stalled() { echo "round $1: for a patience, no chunk on the data path of 'w0''s requests: the rest of its update comes over CURVE"; }
# Waited for before the run ends, and well before the deadline: without the fallback this fails
# here, not minutes later.
for r in 1 2; do
	wait_for 30 grep -qF "$(stalled $r)" "$log" ||
		fail "H: round $r: w0's unanswered requests were not asked again over CURVE after a patience"
done
finish H
[ "$(chunks H)" = "$n" ] || fail "H: $(chunks H) chunks per update, A had $n"
[ "$(grep -c '^swallowed' "$WORK/H-relay.log")" = $((n + 1)) ] ||
	fail "H: the relay swallowed $(grep -c '^swallowed' "$WORK/H-relay.log") chunks, not $((n + 1))"
for r in ${rules//,/ }; do
	IFS=: read -r rr ri rn <<<"$r"
	grep -q "^swallowed round $rr index $ri #$rn connection " "$WORK/H-relay.log" ||
		fail "H: the relay did not swallow round $rr chunk $ri"
done
[ "$(grep -c "for a patience, no chunk on the data path" "$log")" = 2 ] ||
	fail "H: the stall fallback other than once in rounds 1 and 2: $(grep "for a patience" "$log" | tr '\n' ' ')"
for pat in "data path: dropped" "bad bytes on the data path" "taking its update back out" "not used" \
	"aggregate discarded" "deadline passed" "stalled in transfer" "marked lost" "banned" "refused"; do
	grep -q "$pat" "$log" && fail "H: $(grep -m1 "$pat" "$log")"
done
for r in 1 2 3; do
	grep -q "round $r: update aggregated" "$WORK/H-w0.log" || fail "H: round $r: w0 was not told its update counted"
done
[ "$(grep -c "joined run" "$WORK/H-w0.log")" = 1 ] || fail "H: w0 joined more than once"
[ "$(col H round)" = "1 2 3" ] || fail "H: rounds $(col H round), expected 1 2 3"
[ "$(col H attempt)" = "1 1 1" ] || fail "H: attempts $(col H attempt): a round was retried"
[ "$(col H applied)" = "true true true" ] || fail "H: rounds applied: $(col H applied)"
[ "$(col H updates)" = "4 4 4" ] || fail "H: updates per round $(col H updates), not 4"
# w0's first chunk of round 1 came on the data path, none of round 2; in round 3 all of them again.
[ "$(col H data_path_chunks)" = "$((n - 1)) 0 $n" ] ||
	fail "H: data_path_chunks per round $(col H data_path_chunks), expected $((n - 1)) 0 $n"
# A patience, not the deadline: each round took seconds (A's, and the 1.5 s its stall cost).
$PY -c 'import json,sys
s=[json.loads(l)["seconds"] for l in open(sys.argv[1])]
assert max(s) < 10, s' "$WORK/H/metrics.jsonl" || fail "H: a round took 10 s or more: $(col H seconds)"
for r in 1 2 3; do
	same_model H $r A $r || fail "H: round $r: the model differs from A's: a swallowed chunk was lost to the sum"
done
[ "$(digest H)" = "$(digest A)" ] || fail "H: final model $(digest H), A's $(digest A)"
pass "H: w0's swallowed chunks asked for again over CURVE after a patience: every round applied with 4 at its first attempt in $(col H seconds) s (deadline 60), A's model bits"

# ---- no sanitizer report anywhere ----
if grep -l "runtime error:\|AddressSanitizer\|LeakSanitizer\|UndefinedBehaviorSanitizer" "$WORK"/*.log; then
	fail "a sanitizer reported an error"
fi
pass "the open data path: used, off, plain, hostile, tampered, swallowed, replayed and rebound"
