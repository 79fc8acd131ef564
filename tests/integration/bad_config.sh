#!/usr/bin/env bash
# Bad configuration is refused with exit status 2 and a message naming the file, line, key and
# problem; so are hostile flags. Nothing is started.
source "$(dirname "$0")/lib/common.bash"

expect2() { # expect2 PATTERN COMMAND... : exit status 2 and stderr matching PATTERN
	local pattern="$1" rc=0
	shift
	"$@" >"$WORK/out.txt" 2>&1 || rc=$?
	[ "$rc" = 2 ] || fail "'$*' exited $rc, expected 2: $(cat "$WORK/out.txt")"
	grep -q -- "$pattern" "$WORK/out.txt" || fail "'$*' said '$(cat "$WORK/out.txt")', expected /$pattern/"
}

printf '[coordinator]\nbind = "tcp://127.0.0.1:*"\n\n[rounds]\ncount = 3\ncuont = 4\n' >"$WORK/typo.toml"
expect2 "typo.toml:6.*unknown key 'rounds.cuont'" "$BIN/tally-coordinator" --config "$WORK/typo.toml"
printf '[rounds]\ncount = "three"\n' >"$WORK/type.toml"
expect2 "type.toml:2.*rounds.count" "$BIN/tally-coordinator" --config "$WORK/type.toml"
printf '[train]\nlr = -1.0\n' >"$WORK/range.toml"
expect2 "range.toml:2.*train.lr.*outside" "$BIN/tally-coordinator" --config "$WORK/range.toml"
printf '[rounds\ncount = 3\n' >"$WORK/syntax.toml"
expect2 "syntax.toml:1" "$BIN/tally-coordinator" --config "$WORK/syntax.toml"
expect2 "nope.toml" "$BIN/tally-coordinator" --config "$WORK/nope.toml"
expect2 "unknown flag --bogus" "$BIN/tally-coordinator" --bogus 1
expect2 "rounds.*not an integer" "$BIN/tally-coordinator" --rounds 1e99x
expect2 "rounds.*outside" "$BIN/tally-coordinator" --rounds 0
expect2 "model.arch" "$BIN/tally-coordinator" --insecure --model mlp:784-0-10 --state-dir "$WORK/s"
expect2 "needs a value" "$BIN/tally-worker" --coordinator
printf '[data]\nscheme = "dirichlet:-1"\n' >"$WORK/w.toml"
expect2 "dirichlet" "$BIN/tally-worker" --config "$WORK/w.toml" --insecure
expect2 "partition" "$BIN/tally-worker" --insecure --partition 5/3
"$BIN/tally" keygen "$WORK/k" >/dev/null
chmod 644 "$WORK/k.key"
expect2 "chmod 600" "$BIN/tally-worker" --key "$WORK/k.key" --coordinator-key "$WORK/k.pub"
[ "$(stat -c %a "$WORK/k.pub")" = 644 ] || fail "public key mode"
pass "bad configurations and flags exit 2 with a message naming the problem"
