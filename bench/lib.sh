# shellcheck shell=bash disable=SC2034
# bench/lib.sh: helpers shared by bench/scale.sh, bench/lua.sh and bench/upload.sh (sourced by
# bash). A script calls bench_init NAME first; it then has $dir (a private temporary directory,
# removed on exit), $DATA (one line per measurement: KIND SERVER PARAM REP VALUES...), $O (the
# build directory) and the functions below. Sections of RESULTS.md go to $OUT/NAME.md and target
# rows to $OUT/NAME.targets; $OUT is $BENCH_OUT when bench/all.sh runs the script, else $dir (and
# the section is printed at the end).

bench_init() {
  set -u
  BENCH_NAME=$1
  cd "${BENCH_ROOT:-$(dirname "$0")/..}" || exit 1
  O=${O:-build}
  CORES=$(nproc)
  T0=$(date +%s)
  dir=$(mktemp -d "/tmp/scgi-$BENCH_NAME.XXXXXX")
  chmod 755 "$dir"
  OUT=${BENCH_OUT:-$dir}
  mkdir -p "$OUT"
  DATA=$OUT/$BENCH_NAME.tsv
  : >"$DATA"
  : >"$OUT/$BENCH_NAME.targets"
  BG_PIDS=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local p
  for p in $BG_PIDS; do
    kill_tree "$p"
  done
  wait 2>/dev/null
  if [ -z "${BENCH_OUT:-}" ] && [ -s "$OUT/$BENCH_NAME.md" ]; then cat "$OUT/$BENCH_NAME.md"; fi
  rm -rf "$dir"
}

say() { printf '[%s %4ss] %s\n' "$BENCH_NAME" $(($(date +%s) - T0)) "$*" >&2; }
die() {
  echo "$BENCH_NAME: $*" >&2
  exit 1
}

# need CMD_OR_PATH PACKAGE...: installs the Debian packages (as root) when the first is missing
need() {
  local what=$1
  shift
  if [ "${what#/}" != "$what" ]; then [ -e "$what" ] && return 0; else command -v "$what" >/dev/null 2>&1 && return 0; fi
  [ "$(id -u)" = 0 ] || die "missing $what (apt-get install $*)"
  say "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >"$dir/apt.log" 2>&1 ||
    { apt-get update -q >>"$dir/apt.log" 2>&1 && apt-get install -y -q "$@" >>"$dir/apt.log" 2>&1; } ||
    { cat "$dir/apt.log" >&2; die "apt-get install $* failed"; }
}

# build: the program in $O and the load generator and floor next to it
build() {
  make -s O="$O" "$O/scgi-lua" >"$dir/make.log" 2>&1 || { cat "$dir/make.log" >&2; die "make failed"; }
  cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/scgi-load" bench/scgi-load.c || die "cannot build scgi-load"
  cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/floor" bench/floor.c || die "cannot build the floor"
  SCGI=$O/scgi-lua
  LOAD=$O/scgi-load
  FLOOR=$O/floor
}

# tree PID: the process and all its descendants (scgi-lua's supervisor and serving processes,
# uWSGI's master and workers, nginx's master and workers)
tree() {
  local p=$1 k
  echo "$p"
  for k in $(pgrep -P "$p" 2>/dev/null); do tree "$k"; done
}

kill_tree() {
  local p=$1 all
  all=$(tree "$p")
  # shellcheck disable=SC2086
  kill -TERM $all 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $all 2>/dev/null
  wait "$p" 2>/dev/null
}

# cpu_ns PIDS...: CPU time (user + system, ns) of every thread of the processes
# (/proc/PID/task/*/schedstat; threads that ended are not counted: none end while measured)
cpu_ns() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{s += $1} END {printf "%.0f\n", s}'
}

# ticks PIDS...: "utime stime" in clock ticks of the processes (every thread, ended ones too)
ticks() {
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done | sed 's/^.*) //' | awk '{u += $12; s += $13} END {print u + 0, s + 0}'
}

# ctxsw PIDS...: voluntary context switches of every thread of the processes
ctxsw() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}'
}

# busy_ns: CPU time the whole machine spent busy (all CPUs, ns) from /proc/stat
busy_ns() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / {print ($2 + $3 + $4 + $7 + $8) * 1e9 / hz; exit}' /proc/stat
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bg NAME CMD...: starts CMD in the background with its output in $dir/NAME.log; sets BGPID
bg() {
  local name=$1
  shift
  "$@" </dev/null >"$dir/$name.log" 2>&1 &
  BGPID=$!
  BG_PIDS="$BG_PIDS $BGPID"
}

# wait_ready NAME ADDR: until ADDR (a unix path or a TCP port on 127.0.0.1) accepts, and for
# scgi-lua until it said it listens (its serving processes are up); fails if the process ended
wait_ready() {
  local name=$1 addr=$2
  for _ in $(seq 300); do
    kill -0 "$BGPID" 2>/dev/null || break
    if case $addr in /*) [ -S "$addr" ] ;; *) (exec 3<>"/dev/tcp/127.0.0.1/$addr") 2>/dev/null ;; esac then
      if grep -q '^scgi-lua: ' "$dir/$name.log" 2>/dev/null && ! grep -q '^scgi-lua: listening on' "$dir/$name.log"; then
        sleep 0.05
        continue
      fi
      return 0
    fi
    sleep 0.05
  done
  echo "$name did not start:" >&2
  cat "$dir/$name.log" >&2
  exit 1
}

# load ADDR CONNS SECONDS [scgi-load options]: "rps p50_ms p99_ms requests errors non2xx"
# (SECONDS "-": no -d, for a count given with -n)
load() {
  local a=$1 c=$2 d=$3
  shift 3
  [ "$d" = - ] || set -- -d "$d" "$@"
  "$LOAD" -a "$a" -c "$c" "$@" 2>&1 | awk '/^RESULT/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["rps"], v["p50_ms"], v["p99_ms"], v["requests"], v["errors"], v["non2xx"]; found = 1 }
    END { if (!found) print "0 0 0 0 -1 0" }'
}

# rotated "A B C" K: the list rotated left by K-1 (which one goes first changes every round)
rotated() {
  local -a items
  read -r -a items <<<"$1"
  local n=${#items[@]} k i out=""
  k=$((($2 - 1) % n))
  for ((i = 0; i < n; i++)); do out="$out ${items[$(((i + k) % n))]}"; done
  echo $out
}

# med KIND SERVER PARAM FIELD: the median of field FIELD (5 is the first value) over the reps
med() {
  awk -v k="$1" -v s="$2" -v p="$3" -v f="$4" '$1 == k && $2 == s && $3 == p {v[n++] = $f + 0}
    END { if (!n) { print "nan"; exit }
          for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$DATA"
}
# rng KIND SERVER PARAM FIELD: "min-max"
rng() {
  awk -v k="$1" -v s="$2" -v p="$3" -v f="$4" '$1 == k && $2 == s && $3 == p {x = $f + 0; if (!n++ || x < lo) lo = x; if (n == 1 || x > hi) hi = x}
    END {if (n) printf "%g-%g", lo, hi; else printf "-"}' "$DATA"
}
# pmed KIND A B PARAM FIELD: the median over the reps of A's field over B's in the same rep
pmed() {
  awk -v k="$1" -v a="$2" -v b="$3" -v p="$4" -v f="$5" '$1 == k && $3 == p && ($2 == a || $2 == b) {x[$2 " " $4] = $f + 0; r[$4] = 1}
    END { for (i in r) if ((b " " i) in x && x[b " " i] > 0 && (a " " i) in x) v[n++] = x[a " " i] / x[b " " i]
          if (!n) { print "nan"; exit }
          for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$DATA"
}
f0() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else printf "%.0f", v }'; }
f1() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else printf "%.1f", v }'; }
f2() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else printf "%.2f", v }'; }
f3() { awk -v v="$1" 'BEGIN { if (v == "nan") print "-"; else printf "%.3f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "nan" && b != "nan" && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
# ok VALUE OP TARGET: 1 when VALUE OP TARGET holds (OP: ge or le), else 0
ok() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { if (a == "n/a" || a == "nan") print 0; else print (op == "ge" ? a >= b : a <= b) ? 1 : 0 }'; }

# target MEASURED_TEXT VALUE OP TARGET "now" NOTE: one row of the issue's target table
target() {
  local v
  v=$(ok "$2" "$3" "$4")
  printf '%s|%s|%s %s|%s|%s|%s\n' "$1" "$2" "$([ "$3" = ge ] && echo '>=' || echo '<=')" "$4" "$v" "$5" "${6:-}" >>"$OUT/$BENCH_NAME.targets"
}

machine_line() {
  echo "$CORES cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# profile_section TAG FILE: puts FILE between "<!-- TAG: begin -->" and "<!-- TAG: end -->" in
# bench/PROFILE.md (the text around the markers is kept; the markers are appended if missing)
profile_section() {
  local tag=$1 gen=$2 P=bench/PROFILE.md b e
  b="<!-- $tag: begin -->"
  e="<!-- $tag: end -->"
  [ -s "$gen" ] || return 0
  if [ -f "$P" ] && grep -qF "$b" "$P" && grep -qF "$e" "$P"; then
    awk -v gen="$gen" -v b="$b" -v e="$e" '
      $0 == b {print; while ((getline l < gen) > 0) print l; skip = 1; next}
      $0 == e {skip = 0} !skip' "$P" >"$P.tmp" && mv "$P.tmp" "$P"
  else
    { echo; echo "$b"; cat "$gen"; echo "$e"; } >>"$P"
  fi
}
