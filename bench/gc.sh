#!/bin/sh
# bench/gc.sh: throughput and memory of the worker states' two GC modes, for the hello app and for
# an app that allocates 1 MiB per request; the modes alternate run by run (ROUNDS, default 3),
# all in one run, so the machine's noise hits both alike. Memory: the supervisor and its serving
# process summed. Figures only.
set -u
cd "$(dirname "$0")/.."
O=${O:-build}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-3}
make -s O="$O" "$O/scgi-lua" >/dev/null || exit 1
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/scgi-load" bench/scgi-load.c || exit 1
dir=$(mktemp -d /tmp/scgi-gc.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "app    gc            round  rps       p99_ms   VmHWM_KiB  VmRSS_KiB"
for app in examples/hello.lua bench/apps/alloc.lua; do
  for r in $(seq "$ROUNDS"); do
    for gc in generational incremental; do
      "$O/scgi-lua" "$app" --gc "$gc" --socket "$dir/s.sock" --workers 2 2>"$dir/log" &
      pid=$!
      for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.05; done
      res=$("$O/scgi-load" -a "$dir/s.sock" -c 32 -d "$DURATION" -w 1 | grep '^RESULT')
      procs="$pid $(pgrep -P $pid)" # the supervisor and its serving process
      # shellcheck disable=SC2086
      hwm=$(for p in $procs; do cat /proc/$p/status; done | awk '/VmHWM/ {s += $2} END {print s}')
      # shellcheck disable=SC2086
      rss=$(for p in $procs; do cat /proc/$p/status; done | awk '/VmRSS/ {s += $2} END {print s}')
      kill $pid; wait $pid 2>/dev/null
      rps=$(echo "$res" | sed 's/.*rps=\([0-9.]*\).*/\1/')
      p99=$(echo "$res" | sed 's/.*p99_ms=\([0-9.]*\).*/\1/')
      printf '%-6s %-13s %-6s %-9s %-8s %-10s %s\n' "$(basename "$app" .lua)" "$gc" "$r" "$rps" "$p99" "$hwm" "$rss"
    done
  done
done
