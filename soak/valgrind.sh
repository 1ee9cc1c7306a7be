#!/bin/sh
# soak/valgrind.sh [SPEC...]: runs busted specs against the program under valgrind's memcheck and
# summarises every server process's report (the supervisor's serving processes are traced too:
# --trace-children; the system's programs a handler runs are not). Definite or indirect leaks
# and memory errors make valgrind exit 99 (so a spec that checks the exit status fails too) and
# this script exit 1.
#
#   sh soak/valgrind.sh                               # the default subset below
#   sh soak/valgrind.sh spec/faults_spec.lua          # any specs
#   PROGRAM=/path/to/scgi-lua sh soak/valgrind.sh     # another build (default: build/scgi-lua)
#
# Specs that time things tightly fail under valgrind's slowdown (20-50x); that is not a finding
# by itself: the reports are. The reports stay in $VG_OUT (default: a new /tmp/scgi-valgrind.*).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROGRAM=${PROGRAM:-$ROOT/build/scgi-lua}
OUT=${VG_OUT:-$(mktemp -d /tmp/scgi-valgrind.XXXXXX)}
mkdir -p "$OUT"
chmod 1777 "$OUT" # specs that run the server as another user (setpriv nobody) write reports too
SPECS=${*:-spec/core_spec.lua spec/errors_spec.lua spec/client_spec.lua spec/shared_spec.lua}

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }
[ -x "$PROGRAM" ] || { echo "no program at $PROGRAM (make first)"; exit 2; }

wrapper=$OUT/scgi-lua
cat >"$wrapper" <<EOF
#!/bin/sh
exec valgrind --trace-children=yes --trace-children-skip='/bin/*,/usr/bin/*,/sbin/*,/usr/sbin/*' \\
  --leak-check=full --show-leak-kinds=definite,indirect \\
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30 \\
  --log-file=$OUT/vg.%p.log $PROGRAM "\$@"
EOF
chmod +x "$wrapper"

cd "$ROOT" || exit 2
start=$(date +%s)
echo "== busted $SPECS, with SCGI_LUA=$wrapper ($PROGRAM under valgrind)"
SCGI_LUA=$wrapper busted --lua=lua5.4 -o TAP $SPECS >"$OUT/busted.tap" 2>&1
pass=$(grep -c '^ok ' "$OUT/busted.tap")
fail=$(grep -c '^not ok ' "$OUT/busted.tap")
grep '^not ok ' "$OUT/busted.tap" | sed 's/^/  /'
echo "specs: $pass passed, $fail failed in $(( $(date +%s) - start )) s (tap: $OUT/busted.tap)"

# One report per process: a server stopped by a signal or exiting on its own ends with a leak
# summary; one killed with SIGKILL (H.cleanup's last resort) has none.
procs=0 complete=0 bad=0
for log in "$OUT"/vg.*.log; do
  [ -e "$log" ] || continue
  procs=$((procs + 1))
  if ! grep -q 'ERROR SUMMARY' "$log"; then continue; fi
  complete=$((complete + 1))
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tr -d ,)
  definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d ,)
  indirect=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d ,)
  if [ "${errors:-0}" != 0 ] || [ "${definite:-0}" != 0 ] || [ "${indirect:-0}" != 0 ]; then
    bad=$((bad + 1))
    echo "-- $log: ${errors:-0} errors, ${definite:-0} bytes definitely and ${indirect:-0} indirectly lost"
    sed -n 's/^==[0-9]*== Command: /   command: /p' "$log"
    grep -E -A12 'Invalid|uninitialised|definitely lost in|indirectly lost in' "$log" | head -60 | sed 's/^/   /'
  fi
done
echo "valgrind: $procs processes, $complete with a full report, $bad with errors or definite/indirect leaks"
echo "reports: $OUT"
[ "$bad" -eq 0 ]
