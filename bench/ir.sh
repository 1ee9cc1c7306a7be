#!/bin/sh
# bench/ir.sh [BINARY...]: user-space instructions per hello request (callgrind, one worker, one
# connection, N=5000 requests; the Ir of a run that served nothing is taken off). Instruction
# counts do not depend on the machine's load, so two builds can be compared on a busy machine.
# The guard's watchdog thread is left out: it ticks by the clock (every 2 to 20 ms), so under
# valgrind's slowness it would be counted against requests it has nothing to do with.
#   sh bench/ir.sh build/scgi-lua old/build/scgi-lua      (ARGS: more options for every binary)
set -u
N=${N:-5000}
APP=${APP:-examples/hello.lua}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$dir/scgi-load" bench/scgi-load.c || exit 1
run() { # run BINARY REQUESTS: total Ir (in one process: valgrind does not follow the supervisor's
  # serving processes, so a build that has one runs with --no-master)
  one=""
  "$1" --help 2>&1 | grep -q -e '--no-master' && one=--no-master
  sock=$dir/s.sock
  rm -f "$sock"
  rm -f "$dir"/cg.out*
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.out" "$1" "$APP" \
    --socket "$sock" --workers 1 $one ${ARGS:-} >"$dir/cg.log" 2>&1 &
  vp=$!
  for _ in $(seq 600); do
    [ -S "$sock" ] && break
    sleep 0.1
  done
  [ "$2" -gt 0 ] && "$dir/scgi-load" -a "$sock" -c 1 -n "$2" -w 0 >/dev/null 2>&1
  kill -TERM $vp
  wait $vp 2>/dev/null
  total=0
  for f in "$dir"/cg.out-*; do
    grep -q '^fn=.*watchdog' "$f" && continue
    t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1; exit}')
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
for bin in "${@:-build/scgi-lua}"; do
  i0=$(run "$bin" 0)
  i1=$(run "$bin" "$N")
  echo "$bin: $(((i1 - i0) / (N + 1))) Ir per request ($N requests and a probe; start-up $i0 Ir)"
done
