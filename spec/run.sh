#!/bin/sh
# spec/run.sh [BUILD_DIR] [SPEC...]: runs the C parser tests and the busted specs against the build
# in BUILD_DIR (default: build) and ends with one line: "N passed, N failed".
O=${1:-build}
[ $# -gt 0 ] && shift
SPECS=${*:-spec}
log=$(mktemp)
trap 'rm -f "$log" "$log.c" "$log.b"' EXIT

echo "== C parser tests ($O/test_parse, ASan and UBSan)"
"$O/test_parse" >"$log.c" 2>&1
c_rc=$?
cat "$log.c"
c_pass=$(grep -c '^ok ' "$log.c")
c_fail=$(grep -c '^not ok ' "$log.c")
[ "$c_rc" -ne 0 ] && [ "$c_fail" -eq 0 ] && c_fail=1

echo "== busted specs ($SPECS)"
SCGI_BUILD=$O busted --lua=lua5.4 -o TAP $SPECS >"$log.b" 2>&1
b_rc=$?
cat "$log.b"
b_pass=$(grep -c '^ok ' "$log.b")
b_fail=$(grep -c '^not ok ' "$log.b")
[ "$b_rc" -ne 0 ] && [ "$b_fail" -eq 0 ] && b_fail=1

pass=$((c_pass + b_pass))
fail=$((c_fail + b_fail))
echo "C: $c_pass passed, $c_fail failed; busted: $b_pass passed, $b_fail failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
