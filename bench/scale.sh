#!/bin/bash
# bench/scale.sh: many workers on few cores. examples/hello.lua served by scgi-lua with 2 and 16
# workers, in the three accept modes (--accept direct, the default, handoff and shared), next to
# the floor (bench/floor.c, EPOLLEXCLUSIVE in the set each thread sleeps in) with 2 and 16
# threads, on a unix socket and on TCP loopback; 8 connections (the throughput ratio 16 / 2
# workers) and 1 connection (latency). All servers run side by side (idle ones cost nothing),
# each point is measured for each in turn, the order rotating from round to round; the figures
# are medians of REPS rounds. Also per request: the CPU time of the server's processes and their
# voluntary context switches over the same window. Figures only: it asserts nothing.
#
#   bash bench/scale.sh              (O=build-bench to build elsewhere; DURATION, REPS)
#
# About 5 minutes with the defaults (DURATION 3, REPS 3).
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init scale
DURATION=${DURATION:-3}
REPS=${REPS:-3}
CONNS=${SCALE_CONNS:-"8 1"}
build

# NAME: KIND-WORKERS-SOCKET, KIND direct, handoff, shared or floor
SERVERS=""
declare -A ADDR
for sock in unix tcp; do
  for kind in direct handoff shared floor; do
    for w in 2 16; do
      n=$kind-$w-$sock
      SERVERS="$SERVERS $n"
      if [ $sock = unix ]; then a=$dir/$n.sock; else a=$(free_port); fi
      case $kind in
      floor) if [ $sock = unix ]; then bg "$n" "$FLOOR" -a "$a" -w $w; else bg "$n" "$FLOOR" -a "127.0.0.1:$a" -w $w; fi ;;
      *) if [ $sock = unix ]; then bg "$n" "$SCGI" examples/hello.lua --socket "$a" --workers $w --accept $kind; else
        bg "$n" "$SCGI" examples/hello.lua --socket "127.0.0.1:$a" --workers $w --accept $kind; fi ;;
      esac
      eval "PID_${kind}_${w}_${sock}=$BGPID"
      wait_ready "$n" "$a"
      if [ $sock = unix ]; then ADDR[$n]=$a; else ADDR[$n]=127.0.0.1:$a; fi
    done
  done
done
pid_of() { # pid_of NAME
  local k=${1//-/_}
  eval "echo \$PID_$k"
}
say "machine: $(machine_line)"
for n in $SERVERS; do load "${ADDR[$n]}" 8 0.5 -w 0 >/dev/null; done # every worker has run

k=0
for c in $CONNS; do
  for rep in $(seq "$REPS"); do
    k=$((k + 1))
    for n in $(rotated "$SERVERS" "$k"); do
      ps_=$(tree "$(pid_of "$n")")
      # shellcheck disable=SC2086
      c0=$(cpu_ns $ps_) x0=$(ctxsw $ps_) b0=$(busy_ns)
      r=$(load "${ADDR[$n]}" "$c" "$DURATION" -w 0)
      # shellcheck disable=SC2086
      c1=$(cpu_ns $ps_) x1=$(ctxsw $ps_) b1=$(busy_ns)
      # scale NAME CONNS REP rps p50 p99 requests errors non2xx cpu_us_per_req ctxsw_per_req machine_busy_cores
      echo "scale $n $c $rep $r" | awk -v c0="$c0" -v c1="$c1" -v x0="$x0" -v x1="$x1" -v b0="$b0" -v b1="$b1" -v d="$DURATION" \
        '{q = ($8 > 0) ? $8 : 1; printf "%s %.2f %.3f %.3f\n", $0, (c1 - c0) / 1e3 / q, (x1 - x0) / q, (b1 - b0) / 1e9 / d}' >>"$DATA"
      say "c=$c rep $rep $n: $(tail -1 "$DATA" | cut -d' ' -f5-)"
    done
  done
done
# The workers' own counts over the whole run (exit lines): empty wake-ups and the busiest's share
for n in $SERVERS; do
  case $n in floor*) continue ;; esac
  kill_tree "$(pid_of "$n")"
  awk -v n="$n" '/worker [0-9]+: served/ {
      s = $0; sub(/.*served /, "", s); split(s, a, " "); served += a[1]; if (a[1] > top) top = a[1]
      e = $0; sub(/.*errors, /, "", e); split(e, b, " "); empty += b[1]; k++ }
    END { if (served) printf "workers %s %d 1 %d %d %d\n", n, k, served, top, empty }' "$dir/$n.log" >>"$DATA"
done

# ---- the section of RESULTS.md ----
row() { # row NAME CONNS
  local n=$1 c=$2
  printf '| %s | %s | %s | %s / %s | %s | %s | %s |\n' "${n%-*}" "$c" "$(f0 "$(med scale "$n" "$c" 5)")" \
    "$(f3 "$(med scale "$n" "$c" 6)")" "$(f3 "$(med scale "$n" "$c" 7)")" "$(f1 "$(med scale "$n" "$c" 11)")" \
    "$(f2 "$(med scale "$n" "$c" 12)")" "$(rng scale "$n" "$c" 5)"
}
{
  echo "## Many workers on $CORES cores (bench/scale.sh)"
  echo
  echo "\`examples/hello.lua\`, scgi-lua with \`--workers 2\` and \`--workers 16\` in each accept mode, and the floor"
  echo "with 2 and 16 threads; all servers side by side, each point measured for each in turn (rotating order),"
  echo "$REPS rounds of ${DURATION} s, medians. CPU and context switches: every thread of the server's processes"
  echo "(scgi-lua: the supervisor and its serving process), over the same window, per request."
  echo "Machine: $(machine_line) at the end of the run."
  for sock in unix tcp; do
    echo
    echo "### $([ $sock = unix ] && echo "Unix socket" || echo "TCP loopback")"
    echo
    echo "| server (mode-workers) | connections | rps | p50 / p99 ms | CPU µs / req | vol. ctx switches / req | rps spread |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    for c in $CONNS; do
      for kind in direct handoff shared floor; do
        for w in 2 16; do row "$kind-$w-$sock" "$c"; done
      done
    done
    echo
    echo "| mode | 16 / 2 workers, rps at 8 connections (median of the per-round ratios) | the medians' ratio |"
    echo "| --- | ---: | ---: |"
    for kind in direct handoff shared floor; do
      echo "| $kind | $(f2 "$(pmed scale "$kind-16-$sock" "$kind-2-$sock" 8 5)") | $(ratio "$(med scale "$kind-16-$sock" 8 5)" "$(med scale "$kind-2-$sock" 8 5)") |"
    done
    echo
    echo "direct / shared with 2 workers (same rounds): rps at 8 connections"
    echo "$(f2 "$(pmed scale "direct-2-$sock" "shared-2-$sock" 8 5)"), CPU per request $(f2 "$(pmed scale "direct-2-$sock" "shared-2-$sock" 8 11)");"
    echo "at 1 connection p50 $(f2 "$(pmed scale "direct-2-$sock" "shared-2-$sock" 1 6)"), CPU per request $(f2 "$(pmed scale "direct-2-$sock" "shared-2-$sock" 1 11)")."
    echo
    echo "The hand-off's own price, handoff / shared with 2 workers (same rounds): rps at 8 connections"
    echo "$(f2 "$(pmed scale "handoff-2-$sock" "shared-2-$sock" 8 5)"), CPU per request $(f2 "$(pmed scale "handoff-2-$sock" "shared-2-$sock" 8 11)");"
    echo "at 1 connection p50 $(f2 "$(pmed scale "handoff-2-$sock" "shared-2-$sock" 1 6)"), CPU per request $(f2 "$(pmed scale "handoff-2-$sock" "shared-2-$sock" 1 11)")."
    echo "handoff with 16 workers / shared with 2 (what a 16-core default costs on 2 cores): rps at 8 connections"
    echo "$(f2 "$(pmed scale "handoff-16-$sock" "shared-2-$sock" 8 5)")."
  done
  echo
  echo "Over the whole run (both connection counts), from the workers' exit lines:"
  echo
  echo "| server | workers | requests | busiest worker's share | empty wake-ups per request |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  awk '$1 == "workers" {printf "| %s | %d | %d | %.0f%% | %.3f |\n", $2, $3, $5, 100 * $6 / $5, $7 / $5}' "$DATA"
} >"$OUT/scale.md"

for sock in unix tcp; do
  for kind in direct handoff shared; do
    r=$(pmed scale "$kind-16-$sock" "$kind-2-$sock" 8 5)
    was=$([ $sock = unix ] && echo 0.36 || echo 0.70)
    [ $kind = shared ] || was="- (shared, the default then: $was)"
    target "hello, 16 vs 2 workers, 8 connections, $sock socket, --accept $kind" "$(f2 "$r")" ge 0.9 "$was" \
      "$(f0 "$(med scale "$kind-16-$sock" 8 5)") vs $(f0 "$(med scale "$kind-2-$sock" 8 5)") rps; CPU per request $(f1 "$(med scale "$kind-16-$sock" 8 11)") vs $(f1 "$(med scale "$kind-2-$sock" 8 11)") µs"
  done
  for kind in direct handoff; do
    r=$(pmed scale "$kind-2-$sock" "shared-2-$sock" 1 6)
    target "latency at 1 connection, 2 workers, $sock: p50 $kind / shared (the default when the issue was filed)" "$(f2 "$r")" le 1.0 "-" \
      "p50 $(f3 "$(med scale "$kind-2-$sock" 1 6)") vs $(f3 "$(med scale "shared-2-$sock" 1 6)") ms, p99 $(f3 "$(med scale "$kind-2-$sock" 1 7)") vs $(f3 "$(med scale "shared-2-$sock" 1 7)") ms; 16 workers: p50 $(f3 "$(med scale "$kind-16-$sock" 1 6)") vs $(f3 "$(med scale "shared-16-$sock" 1 6)") ms"
  done
done
say "done ($(($(date +%s) - T0)) s)"
