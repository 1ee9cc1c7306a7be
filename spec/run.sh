#!/bin/sh
# spec/run.sh [BUILD_DIR] [SPEC...]: runs the C tests (SCGI parser, WebSocket frames) and the busted
# specs against the build in BUILD_DIR (default: build); ends with one line: "N passed, N failed".
O=${1:-build}
[ $# -gt 0 ] && shift
SPECS=${*:-spec}
log=$(mktemp)
trap 'rm -f "$log" "$log.c" "$log.b"' EXIT

# Each C test program (under ASan and UBSan) prints "ok"/"not ok" lines; their counts are summed.
c_pass=0
c_fail=0
for t in test_parse test_ws_frame; do
  echo "== C tests ($O/$t, ASan and UBSan)"
  if [ -x "$O/$t" ]; then
    "$O/$t" >"$log.c" 2>&1
    rc=$?
  else
    echo "$O/$t is missing: build it with make $O/$t" >"$log.c"
    rc=1
  fi
  cat "$log.c"
  p=$(grep -c '^ok ' "$log.c")
  f=$(grep -c '^not ok ' "$log.c")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  c_pass=$((c_pass + p))
  c_fail=$((c_fail + f))
done

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
