#!/bin/bash
# bench/upload.sh: request bodies. 8 MiB uploads over a unix socket (bench/scgi-load -b, a new
# connection per upload, 1 and 2 at a time) read by scgi-lua (bench/apps/upload.lua) in 64 KiB
# chunks (client:read(65536) until nil) and whole (client:read("a")), by uWSGI's Lua plugin
# (bench/uwsgi/io.lua: env.input:read(65536) until empty; two configurations) and by the floor
# (bench/floor.c reads and drops the body: the socket's own rate). MiB/s, and the server's CPU
# per MiB (every thread of its processes). All servers side by side, rotating, medians of REPS.
# Then where an upload's time goes in scgi-lua (Lua linked statically, --no-master, one worker):
# system calls per upload (strace -c), and a perf profile of each read mode (kernel included).
# Writes the upload part of bench/PROFILE.md. Figures only: it asserts nothing.
#
#   bash bench/upload.sh       (O=build-bench to build elsewhere; REPS, UPLOADS, PROFILE=0)
#
# Under a minute with the defaults.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init upload
REPS=${REPS:-5}
UPLOADS=${UPLOADS:-60}
PROFILE=${PROFILE:-1}
SIZE=$((8 << 20))
need uwsgi uwsgi-core
need /usr/lib/uwsgi/plugins/lua_plugin.so uwsgi-plugin-lua5.2
build
say "machine: $(machine_line)"

declare -A SPID
bg scgi "$SCGI" bench/apps/upload.lua --socket "$dir/scgi.sock"
SPID[scgi]=$BGPID
wait_ready scgi "$dir/scgi.sock"
bg uwsgi uwsgi --ini bench/uwsgi/hello.ini --lua bench/uwsgi/io.lua --scgi-socket "$dir/uwsgi.sock" --processes "$CORES"
SPID[uwsgi]=$BGPID
wait_ready uwsgi "$dir/uwsgi.sock"
UWSGI_LUA_GC_FREQ=1000 bg uwsgiasync uwsgi --ini bench/uwsgi/hello.ini --lua bench/uwsgi/io.lua --scgi-socket "$dir/uwsgiasync.sock" \
  --plugins ugreen --processes "$CORES" --async 64 --ugreen
SPID[uwsgiasync]=$BGPID
wait_ready uwsgiasync "$dir/uwsgiasync.sock"
bg floor "$FLOOR" -a "$dir/floor.sock" -w "$CORES"
SPID[floor]=$BGPID
wait_ready floor "$dir/floor.sock"
sleep 0.5 # uWSGI forks its workers after the bind

# RUN: NAME (server) and URI
RUNS="scgi-chunks scgi-all uwsgi uwsgiasync floor"
sock_of() { case $1 in scgi-*) echo "$dir/scgi.sock" ;; *) echo "$dir/$1.sock" ;; esac; }
uri_of() { case $1 in scgi-all) echo /all ;; scgi-chunks) echo /chunks ;; *) echo /upload ;; esac; }
pid_of() { case $1 in scgi-*) echo "${SPID[scgi]}" ;; *) echo "${SPID[$1]}" ;; esac; }
for n in $RUNS; do load "$(sock_of $n)" 2 - -n 4 -w 0 -b "$SIZE" -u "$(uri_of $n)" >/dev/null; done
for rep in $(seq "$REPS"); do
  for c in 1 2; do
    for n in $(rotated "$RUNS" $((rep + c))); do
      ps_=$(tree "$(pid_of "$n")")
      # shellcheck disable=SC2086
      c0=$(cpu_ns $ps_)
      r=$(load "$(sock_of "$n")" "$c" - -n "$UPLOADS" -w 0 -b "$SIZE" -u "$(uri_of "$n")")
      # shellcheck disable=SC2086
      c1=$(cpu_ns $ps_)
      # up NAME CONNS REP rps p50 p99 requests errors non2xx MiB/s cpu_ms_per_MiB
      echo "up $n $c $rep $r" | awk -v c0="$c0" -v c1="$c1" -v mib=$((SIZE >> 20)) \
        '{q = $8 + 1; printf "%s %.0f %.3f\n", $0, $5 * mib, (c1 - c0) / 1e6 / q / mib}' >>"$DATA"
    done
  done
  say "round $rep: $(awk -v r="$rep" '$1 == "up" && $4 == r {printf "%s c=%s %s MiB/s; ", $2, $3, $11}' "$DATA")"
done
for n in "${!SPID[@]}"; do kill_tree "${SPID[$n]}"; done

# ---- where an upload's time goes ----
if [ "$PROFILE" = 1 ]; then
  LUA_A=$(ls /usr/lib/"$(cc -dumpmachine)"/liblua5.4.a /usr/lib/liblua5.4.a 2>/dev/null | head -1)
  STATIC=$SCGI
  if [ -n "$LUA_A" ] && make -s -j"$CORES" O="$dir/prof" LUA_LIB="$LUA_A -ldl" "$dir/prof/scgi-lua" >"$dir/prof.log" 2>&1; then
    STATIC=$dir/prof/scgi-lua
  fi
  if command -v strace >/dev/null 2>&1; then
    for m in chunks all; do
      rm -f "$dir/st.sock"
      strace -f -c -o "$dir/strace.$m" "$STATIC" bench/apps/upload.lua --no-master --workers 1 --socket "$dir/st.sock" >"$dir/st.log" 2>&1 &
      sp=$!
      for _ in $(seq 100); do
        [ -S "$dir/st.sock" ] && break
        sleep 0.1
      done
      "$LOAD" -a "$dir/st.sock" -c 1 -n 20 -w 0 -b "$SIZE" -u "/$m" >/dev/null 2>&1
      # shellcheck disable=SC2046
      kill -TERM $(pgrep -P $sp) 2>/dev/null # the traced server; strace ends with it
      wait $sp 2>/dev/null
      # per upload (21: the probe and 20), the calls that move or wait for data
      awk -v m="$m" '$NF ~ /^(recvfrom|read|sendto|write|epoll_wait|accept4|mmap|munmap|brk|madvise|mremap|close)$/ {
        calls = ($4 ~ /^[0-9]+$/) ? $4 : $5; printf "strace %s %s 1 %.1f\n", m, $NF, calls / 21 }' "$dir/strace.$m" >>"$DATA"
    done
  fi
  if command -v perf >/dev/null 2>&1; then
    for m in chunks all; do
      bg "perf-$m" "$STATIC" bench/apps/upload.lua --no-master --workers 1 --socket "$dir/perf-$m.sock"
      wait_ready "perf-$m" "$dir/perf-$m.sock"
      pp=$BGPID
      perf record -q -e cpu-clock -F 4000 -p "$pp" -o "$dir/perf.$m" -- sleep 2 >/dev/null 2>&1 &
      pr=$!
      "$LOAD" -a "$dir/perf-$m.sock" -c 1 -d 2.5 -w 0 -b "$SIZE" -u "/$m" >/dev/null 2>&1
      wait $pr
      kill_tree "$pp"
      perf report -i "$dir/perf.$m" --no-children --sort dso,sym --stdio 2>/dev/null |
        awk '/^ *[0-9.]+%/ {pct = $1; dso = $2; sym = $0; sub(/^ *[0-9.]+% +[^ ]+ +\[[^]]*\] +/, "", sym); printf "%s\t%s\t%s\n", pct, dso, sym}' |
        head -15 >"$dir/perf.$m.top"
    done
  fi
fi

# ---- the section of RESULTS.md and the upload part of PROFILE.md ----
label() {
  case $1 in
  scgi-chunks) echo "scgi-lua, \`client:read(65536)\` until nil" ;;
  scgi-all) echo "scgi-lua, \`client:read(\"a\")\`" ;;
  uwsgi) echo "uWSGI, \`--processes $CORES\`, \`input:read(65536)\`" ;;
  uwsgiasync) echo "uWSGI, \`--processes $CORES --async 64 --ugreen\`, lua-gc-freq 1000, \`input:read(65536)\`" ;;
  floor) echo "floor (reads and drops the body)" ;;
  esac
}
best_uwsgi() { # the uWSGI configuration with the higher median at 1 connection
  local a b
  a=$(med up uwsgi 1 11)
  b=$(med up uwsgiasync 1 11)
  awk -v a="$a" -v b="$b" 'BEGIN {print (b > a) ? "uwsgiasync" : "uwsgi"}'
}
BU=$(best_uwsgi)
{
  echo "## Request bodies (bench/upload.sh)"
  echo
  echo "8 MiB uploads over a unix socket, one connection per upload, $UPLOADS uploads per run, $REPS runs per point"
  echo "(rotating order); medians. CPU: every thread of the server's processes (scgi-lua: the supervisor and its"
  echo "serving process; uWSGI: the master and its workers) per MiB received."
  echo
  echo "| server and read | connections | MiB/s | p50 / p99 ms per upload | server CPU ms / MiB | / uWSGI's best ($BU) | MiB/s spread |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
  for c in 1 2; do
    for n in $RUNS; do
      echo "| $(label $n) | $c | $(f0 "$(med up $n $c 11)") | $(f2 "$(med up $n $c 6)") / $(f2 "$(med up $n $c 7)") | $(f3 "$(med up $n $c 12)") | $(f2 "$(pmed up $n "$BU" $c 11)") | $(rng up $n $c 11) |"
    done
  done
  echo
  echo "\`read(\"a\")\` / chunked, same round: $(f2 "$(pmed up scgi-all scgi-chunks 1 11)") at 1 connection, $(f2 "$(pmed up scgi-all scgi-chunks 2 11)") at 2."
  echo "Errors / non-2xx (summed; the handler answers 500 when it read other than CONTENT_LENGTH bytes): $(awk '$1 == "up" {e[$2] += $9; x[$2] += $10} END {for (s in e) printf "%s %d / %d; ", s, e[s], x[s]}' "$DATA")"
} >"$OUT/upload.md"
if [ "$PROFILE" = 1 ]; then
  {
    echo "## Uploads: this run's figures (generated by bench/upload.sh, $(date -u '+%Y-%m-%d'))"
    echo
    if grep -q '^strace' "$DATA"; then
      echo "System calls per 8 MiB upload (\`strace -f -c\`, scgi-lua with Lua linked statically, \`--no-master --workers 1\`,"
      echo "21 uploads one at a time):"
      echo
      echo "| call | \`read(65536)\` loop | \`read(\"a\")\` |"
      echo "| --- | ---: | ---: |"
      awk '$1 == "strace" {v[$3 " " $2] = $5; c[$3] = 1} END {for (k in c) printf "| `%s` | %s | %s |\n", k, (k " chunks" in v) ? v[k " chunks"] : "-", (k " all" in v) ? v[k " all"] : "-"}' "$DATA" | sort
      echo
    fi
    for m in chunks all; do
      [ -s "$dir/perf.$m.top" ] || continue
      echo "perf (\`-e cpu-clock\`, kernel included), uploads one at a time read with $([ $m = chunks ] && echo "\`client:read(65536)\`" || echo "\`client:read(\"a\")\`"):"
      echo
      echo "| share | where | function |"
      echo "| ---: | --- | --- |"
      awk -F'\t' '{printf "| %s | %s | `%s` |\n", $1, $2, $3}' "$dir/perf.$m.top"
      echo
    done
  } >"$OUT/upload.profile.md"
fi

target "8 MiB uploads, 64 KiB chunks, 1 connection, scgi-lua / uWSGI's best ($BU)" "$(f2 "$(pmed up scgi-chunks "$BU" 1 11)")" ge 1.2 0.85 \
  "$(f0 "$(med up scgi-chunks 1 11)") vs $(f0 "$(med up "$BU" 1 11)") MiB/s; at 2 connections $(f2 "$(pmed up scgi-chunks "$BU" 2 11)")"
target "8 MiB uploads, read(\"a\") / 64 KiB chunks, 1 connection" "$(f2 "$(pmed up scgi-all scgi-chunks 1 11)")" ge 0.9 - \
  "$(f0 "$(med up scgi-all 1 11)") vs $(f0 "$(med up scgi-chunks 1 11)") MiB/s; at 2 connections $(f2 "$(pmed up scgi-all scgi-chunks 2 11)")"
profile_section upload.sh "$OUT/upload.profile.md"
say "done ($(($(date +%s) - T0)) s)"
