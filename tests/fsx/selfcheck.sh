#!/bin/sh
# selfcheck.sh: the oracle check of sm-fsx itself, run by `meson test` on a local directory.
# A few seeds must pass (local ops; external changes by the honest hook, visible after a re-open
# and at once); then a hook that corrupts a write without telling the model must be caught:
# exit 1, the first differing offset, the op log, and a --replay of that log failing at the
# same op; and under settle-ms, at the change itself when its deadline passes.   usage: selfcheck.sh SM_FSX HOOK
set -u
fsx=$1
hook=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/sm-fsx-selfcheck.XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/files"

fail() {
	echo "selfcheck: $*" >&2
	exit 1
}

run() { # expected-status, sm-fsx args...
	want=$1
	shift
	timeout 240 "$fsx" "$@" "$dir/files" >"$dir/out" 2>&1
	got=$?
	[ "$got" = "$want" ] || { cat "$dir/out" >&2; fail "exit $got, expected $want: $*"; }
}

for seed in 1 2 3; do
	run 0 --seed "$seed" --ops 500
done
run 0 --seed 4 --ops 500 --external "$hook direct $dir/files"
run 0 --seed 5 --ops 500 --external "$hook direct $dir/files" --external-visibility settle-ms=0
run 0 --seed 6 --ops 300 --files 1 --maxlen 65536 --no-direct --no-mmap

run 1 --seed 7 --ops 500 --external "$hook corrupt $dir/files" --log "$dir/log"
grep -q "first differing offset" "$dir/out" || fail "no first differing offset in: $(cat "$dir/out")"
grep -q "sm-fsx: replay: " "$dir/out" || fail "no replay command in the output"
head -1 "$dir/log" | grep -q "^# sm-fsx seed=7 " || fail "no op log header in $dir/log"
at=$(grep "^sm-fsx: FAIL at op " "$dir/out")
[ -n "$at" ] || fail "no FAIL line"
run 1 --replay "$dir/log" --external "$hook corrupt $dir/files"
grep -qF "$at" "$dir/out" || fail "the replay did not fail at the same op ($at): $(cat "$dir/out")"
# under settle-ms the corrupted write is caught at the change itself, once its deadline passed
run 1 --seed 8 --ops 500 --external "$hook corrupt $dir/files" --external-visibility settle-ms=50
grep -q "still not visible 50 ms after the hook returned" "$dir/out" ||
	fail "no settle deadline failure in: $(cat "$dir/out")"
grep -q "first differing offset" "$dir/out" || fail "the settle failure names no offset"
echo "selfcheck: ok ($at caught and replayed; a change unseen at its deadline caught)"
