#!/bin/bash
# bench/ab.sh: several server variants side by side on one load, for comparing builds or options
# (for example a patched copy of core/ against this one). SPECS holds one variant per line:
#   NAME BINARY APP unix|tcp [OPTIONS...]
# All variants run at once (idle ones cost nothing); for each connection count in CONNS, REPS
# rounds measure every variant in turn (the order rotating), DURATION seconds each, with
# bench/scgi-load (LOADARGS added, e.g. "-b 8388608 -u /chunks"). Prints per variant the median
# rps, p50 and p99, and the CPU time and voluntary context switches per request of every thread
# of its processes over the same window. Figures only: it asserts nothing.
#
#   SPECS="a build-bench/scgi-lua examples/hello.lua unix --workers 2
#   b /tmp/patched/scgi-lua examples/hello.lua unix --workers 2" O=build-bench bash bench/ab.sh
#
# A BINARY that is a wrapper script (to set an environment variable) works: its processes are
# counted through their parent.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init ab
[ -n "${SPECS:-}" ] || die "SPECS is empty (see the comment at the top of bench/ab.sh)"
CONNS=${CONNS:-"8 1"}
REPS=${REPS:-3}
DURATION=${DURATION:-3}
LOADARGS=${LOADARGS:-}
build
NAMES=""
declare -A ADDR PIDS
while read -r name bin app sock args; do
  [ -n "$name" ] || continue
  NAMES="$NAMES $name"
  if [ "$sock" = unix ]; then a=$dir/$name.sock; else a=$(free_port); fi
  if [ "$sock" = unix ]; then s=$a; else s=127.0.0.1:$a; fi
  # shellcheck disable=SC2086
  bg "$name" "$bin" "$app" --socket "$s" $args
  PIDS[$name]=$BGPID
  wait_ready "$name" "$a"
  ADDR[$name]=$s
done <<<"$SPECS"
say "machine: $(machine_line)"
# shellcheck disable=SC2086
for n in $NAMES; do load "${ADDR[$n]}" 8 0.5 -w 0 $LOADARGS >/dev/null; done
k=0
for c in $CONNS; do
  for rep in $(seq "$REPS"); do
    k=$((k + 1))
    for n in $(rotated "$NAMES" "$k"); do
      ps_=$(tree "${PIDS[$n]}")
      # shellcheck disable=SC2086
      c0=$(cpu_ns $ps_) x0=$(ctxsw $ps_)
      # shellcheck disable=SC2086
      r=$(load "${ADDR[$n]}" "$c" "$DURATION" -w 0 $LOADARGS)
      # shellcheck disable=SC2086
      c1=$(cpu_ns $ps_) x1=$(ctxsw $ps_)
      echo "ab $n $c $rep $r" | awk -v c0="$c0" -v c1="$c1" -v x0="$x0" -v x1="$x1" \
        '{q = ($8 > 0) ? $8 : 1; printf "%s %.2f %.3f\n", $0, (c1 - c0) / 1e3 / q, (x1 - x0) / q}' >>"$DATA"
    done
  done
done
{
  echo "| variant | connections | rps | p50 / p99 ms | CPU µs / req | vol. ctx switches / req | rps spread |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
  for c in $CONNS; do
    for n in $NAMES; do
      echo "| $n | $c | $(f0 "$(med ab "$n" "$c" 5)") | $(f3 "$(med ab "$n" "$c" 6)") / $(f3 "$(med ab "$n" "$c" 7)") | $(f1 "$(med ab "$n" "$c" 11)") | $(f2 "$(med ab "$n" "$c" 12)") | $(rng ab "$n" "$c" 5) |"
    done
  done
  echo
  echo "$REPS rounds of ${DURATION} s per point, medians; $(machine_line) at the end."
} >"$OUT/ab.md"
