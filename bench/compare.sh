#!/bin/bash
# bench/compare.sh: scgi-lua next to uWSGI (its Lua plugin over SCGI) and the floor
# (bench/floor.c), measured in one run on this machine, all serving the same hello response.
#
#   bash bench/compare.sh          (as root it installs what is missing with apt-get)
#
# Measures, for each server: requests per second and latency direct over SCGI (bench/scgi-load
# on a unix socket, 1, 32 and 256 connections) and as HTTP through one private nginx (wrk);
# RSS idle and while holding 10,000 idle connections; a 64 MiB upload and a 256 MiB download;
# CPU time per request; user-space instructions per request under callgrind and where they go.
# uWSGI is first tried in a few configurations (bench/uwsgi/) and the best one is compared.
# Every point is repeated REPS times, alternating the servers, and the median is reported.
# Writes bench/RESULTS.md, bench/results.png (bench/plot.gp) and the generated part of
# bench/PROFILE.md. A benchmark prints and reports; it asserts nothing (exit 0 unless it could
# not run).
#
# Environment: DURATION (seconds per point, 4), REPS (3), TUNE_DURATION (seconds per point while
# trying uWSGI's configurations, 2), TUNE_PASSES (2), NGINX_CONNS ("32 256"), CPU_REQUESTS
# (100000), CG_REQUESTS (10000), UWSGI_CONFIGS (see below), O (build directory, build),
# BENCH_OUT (set by bench/all.sh: the directory where bench/scale.sh, bench/lua.sh and
# bench/upload.sh left their sections, data and target rows; RESULTS.md then includes them and
# the table of issue 13's targets). About 7 minutes on 2 cores.
set -u
cd "$(dirname "$0")/.."
O=${O:-build}
DURATION=${DURATION:-4}
REPS=${REPS:-3}
TUNE_DURATION=${TUNE_DURATION:-2}
TUNE_PASSES=${TUNE_PASSES:-2}
NGINX_CONNS=${NGINX_CONNS:-"32 256"}
CPU_REQUESTS=${CPU_REQUESTS:-100000}
CG_REQUESTS=${CG_REQUESTS:-10000}
IDLE_CONNS=10000
CONNS="1 32 256"
CORES=$(nproc)
SERVERS="scgi uwsgi floor"
T0=$(date +%s)

dir=$(mktemp -d /tmp/scgi-compare.XXXXXX)
chmod 755 "$dir"
DATA=$dir/data.tsv # one line per measurement: KIND SERVER PARAM REP VALUES...
: >"$DATA"
pids=""
cleanup() {
  for p in $pids; do
    kill "$p" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '[%4ss] %s\n' $(($(date +%s) - T0)) "$*"; }
die() {
  echo "compare.sh: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------
# What the run needs
missing=""
command -v uwsgi >/dev/null 2>&1 || missing="$missing uwsgi-core"
[ -e /usr/lib/uwsgi/plugins/lua_plugin.so ] || missing="$missing uwsgi-plugin-lua5.2" # --plugins lua
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
[ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -q $missing >"$dir/apt.log" 2>&1 ||
      { apt-get update -q >>"$dir/apt.log" 2>&1 && apt-get install -y -q $missing >>"$dir/apt.log" 2>&1; } ||
      { cat "$dir/apt.log"; die "apt-get install$missing failed"; }
  else
    die "missing:$missing (run as root to install them, or apt-get install them)"
  fi
fi
# lua_plugin.so is the alternatives link to the installed Lua plugin (lua52_plugin.so here)
PLUGIN_REAL=$(basename "$(readlink -f /usr/lib/uwsgi/plugins/lua_plugin.so)")

# 10,000 idle connections need descriptors on both sides (the servers inherit this limit)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((IDLE_CONNS + 100)) ] || die "ulimit -n is $(ulimit -n): $IDLE_CONNS idle connections need more"

say "building"
make -s O="$O" "$O/scgi-lua" >"$dir/make.log" 2>&1 || { cat "$dir/make.log"; die "make failed"; }
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/scgi-load" bench/scgi-load.c || die "cannot build scgi-load"
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/floor" bench/floor.c || die "cannot build the floor"
SCGI=$O/scgi-lua
LOAD=$O/scgi-load
FLOOR=$O/floor
TOOL=$dir/cmp-tool

# cmp-tool: the clients needed besides scgi-load (unix sockets only)
cat >"$dir/cmp-tool.c" <<'EOF'
/* cmp-tool hold PATH N    opens N connections that send nothing; prints "connected K failed F"
                           once every connect was tried, then holds them until SIGTERM
   cmp-tool up PATH BYTES  one POST /upload with a body of BYTES (URI from $URI if set)
   cmp-tool down PATH      one GET /download
                           both print "bytes_in=.. seconds=.. status=.. tail=.."
   cmp-tool port           a free TCP port on 127.0.0.1 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un sun;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dial(int nonblock) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void on_term(int sig) {
  (void)sig;
  _exit(0);
}

static int hold(long n) {
  long ok = 0, failed = 0;
  double give_up = now() + 3;
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  for (long i = 0; i < n; i++) {
    for (;;) {
      int fd = dial(1);
      if (fd >= 0) {
        ok++;
        break;
      }
      if ((errno == EAGAIN || errno == EINTR) && now() < give_up) { /* backlog full: retry */
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        continue;
      }
      failed++;
      break;
    }
  }
  printf("connected %ld failed %ld\n", ok, failed);
  fflush(stdout);
  for (;;) pause();
  return 0;
}

static int xfer(const char *uri, long long body) {
  char hdr[512], head[32], cl[32], tail[64];
  int hl = 0;
#define H(k, v) hl += snprintf(hdr + hl, sizeof hdr - (size_t)hl, "%s%c%s%c", k, 0, v, 0)
  snprintf(cl, sizeof cl, "%lld", body);
  H("CONTENT_LENGTH", cl);
  H("SCGI", "1");
  H("REQUEST_METHOD", body ? "POST" : "GET");
  H("REQUEST_URI", uri);
  H("QUERY_STRING", "");
  H("CONTENT_TYPE", "application/octet-stream");
  H("SERVER_PROTOCOL", "HTTP/1.1");
  H("REMOTE_ADDR", "127.0.0.1");
  H("SERVER_NAME", "localhost");
  H("SERVER_PORT", "80");
  int pl = snprintf(head, sizeof head, "%d:", hl);
  static char buf[65536];
  memset(buf, 'x', sizeof buf);
  double t0 = now();
  int fd = dial(0);
  if (fd < 0) {
    perror("cmp-tool: connect");
    return 1;
  }
  char req[600]; /* the header block in one write, as a web server sends it */
  memcpy(req, head, (size_t)pl);
  memcpy(req + pl, hdr, (size_t)hl);
  req[pl + hl] = ',';
  if (send(fd, req, (size_t)(pl + hl + 1), MSG_NOSIGNAL) != pl + hl + 1) {
    perror("cmp-tool: send");
    return 1;
  }
  for (long long left = body; left > 0;) {
    ssize_t k = send(fd, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      perror("cmp-tool: send body");
      return 1;
    }
    left -= k;
  }
  long long got = 0;
  char status[16] = "";
  size_t tl = 0;
  for (;;) {
    ssize_t k = recv(fd, buf, sizeof buf, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    if (got < 15) memcpy(status + got, buf, (size_t)(15 - got < k ? 15 - got : k));
    if (got + k <= 256) { /* a small response: keep its body for the check */
      memcpy(tail + tl, buf, (size_t)k < sizeof tail - 1 - tl ? (size_t)k : sizeof tail - 1 - tl);
      tl += (size_t)k < sizeof tail - 1 - tl ? (size_t)k : sizeof tail - 1 - tl;
    }
    got += k;
  }
  double t = now() - t0;
  close(fd);
  tail[tl] = '\0';
  char *body_start = strstr(tail, "\r\n\r\n"), *nl;
  body_start = body_start ? body_start + 4 : (char *)"-";
  if ((nl = strchr(body_start, '\n'))) *nl = '\0';
  char *sp = strchr(status, ' ');
  printf("bytes_in=%lld seconds=%.6f status=%.3s tail=%s\n", got, t, sp ? sp + 1 : "?",
         *body_start ? body_start : "-");
  return 0;
}

static int port(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) < 0)
    return 1;
  printf("%d\n", ntohs(a.sin_port));
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "port") == 0) return port();
  if (argc < 3) {
    fprintf(stderr, "usage: cmp-tool hold PATH N | up PATH BYTES | down PATH | port\n");
    return 2;
  }
  sun.sun_family = AF_UNIX;
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s", argv[2]);
  signal(SIGPIPE, SIG_IGN);
  const char *uri = getenv("URI");
  if (strcmp(argv[1], "hold") == 0 && argc == 4) return hold(atol(argv[3]));
  if (strcmp(argv[1], "up") == 0 && argc == 4) return xfer(uri ? uri : "/upload", atoll(argv[3]));
  if (strcmp(argv[1], "down") == 0) return xfer(uri ? uri : "/download", 0);
  fprintf(stderr, "cmp-tool: bad arguments\n");
  return 2;
}
EOF
cc -std=c11 -D_GNU_SOURCE -O2 -o "$TOOL" "$dir/cmp-tool.c" || die "cannot build cmp-tool"

# scgi-lua's side of the transfer tests (uWSGI's is bench/uwsgi/io.lua): POST /upload reads the
# body in 64 KiB chunks, POST /upload-all with client:read("a"), GET /download writes 256 MiB in
# 64 KiB chunks.
cat >"$dir/io.lua" <<'EOF'
local CHUNK = 65536
local chunk = string.rep("x", CHUNK)
return function(headers, client)
  if headers.REQUEST_URI == "/download" then
    client:write("Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ",
                 4096 * CHUNK, "\r\n\r\n")
    for _ = 1, 4096 do
      if not client:write(chunk) then return end
    end
  elseif headers.REQUEST_URI == "/upload-all" then
    local body = client:read("a")
    client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", #body, "\n")
  else
    local n = 0
    while true do
      local s = client:read(CHUNK)
      if not s then break end
      n = n + #s
    end
    client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", n, "\n")
  end
end
EOF

# ---------------------------------------------------------------------------------------------
# Servers. uWSGI configurations: NAME|OPTIONS|LUA_GC_FREQ (0: the plugin's default, a full
# collection after every request). The shared settings are in bench/uwsgi/hello.ini.
UWSGI_CONFIGS=${UWSGI_CONFIGS:-"\
processes|--processes $CORES|0
processes+gc1000|--processes $CORES|1000
threads+gc1000|--processes 1 --threads $CORES|1000
processes+threads+gc1000|--processes $CORES --threads 2|1000
2xprocesses+gc1000|--processes $((2 * CORES))|1000
async+gc1000|--plugins ugreen --processes $CORES --async 64 --ugreen|1000"}
UWSGI_BEST=""

cfg_field() { printf '%s\n' "$UWSGI_CONFIGS" | awk -F'|' -v n="$1" -v f="$2" '$1 == n {print $f}'; }

SPID="" # the pid of the server started last
declare -A PID # the running servers' pids by name
# server_pids [PID]: the server's processes (scgi-lua: the supervisor and its serving process;
# uWSGI: the master and its workers)
server_pids() {
  local p=${1:-$SPID}
  echo "$p"
  pgrep -P "$p" 2>/dev/null
}

# start_server KIND SOCK [APP [EXTRA...]]: KIND scgi, uwsgi[:CONFIG] or floor
start_server() {
  local kind=$1 sock=$2 app=${3:-} cfg log
  shift 2
  [ $# -gt 0 ] && shift
  rm -f "$sock"
  log=$dir/server.$(basename "$sock").log
  case $kind in
  scgi)
    "$SCGI" "${app:-examples/hello.lua}" --socket "$sock" --workers "$CORES" "$@" </dev/null >"$log" 2>&1 &
    ;;
  uwsgi*)
    cfg=${kind#uwsgi}
    cfg=${cfg#:}
    cfg=${cfg:-$UWSGI_BEST}
    local gc opts
    gc=$(cfg_field "$cfg" 3)
    opts=$(cfg_field "$cfg" 2)
    [ -n "$opts" ] || die "no uWSGI configuration '$cfg'"
    # shellcheck disable=SC2086
    if [ "${gc:-0}" != 0 ]; then
      UWSGI_LUA_GC_FREQ=$gc uwsgi --ini bench/uwsgi/hello.ini --lua "${app:-bench/uwsgi/hello.lua}" \
        --scgi-socket "$sock" $opts "$@" </dev/null >"$log" 2>&1 &
    else
      uwsgi --ini bench/uwsgi/hello.ini --lua "${app:-bench/uwsgi/hello.lua}" \
        --scgi-socket "$sock" $opts "$@" </dev/null >"$log" 2>&1 &
    fi
    ;;
  floor)
    "$FLOOR" -a "$sock" -w "$CORES" </dev/null >"$log" 2>&1 &
    ;;
  esac
  SPID=$!
  pids="$pids $SPID"
  for _ in $(seq 200); do
    if [ -S "$sock" ]; then
      case $kind in
      uwsgi*) sleep 0.5 ;; # the workers are forked after the bind
      scgi)                # the supervisor binds first; it says so once its serving process is up
        grep -q '^scgi-lua: listening on' "$log" || {
          sleep 0.05
          continue
        }
        ;;
      esac
      return 0
    fi
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  echo "$kind did not start:"
  cat "$log"
  exit 1
}

stop_server() { # stop_server [PID]
  local p=${1:-$SPID} kids
  kids=$(pgrep -P "$p" 2>/dev/null)
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$p" $kids 2>/dev/null
  wait "$p" 2>/dev/null
}

# load SOCK CONNS SECONDS WARMUP: prints "rps p50 p99 errors non2xx"
load() {
  "$LOAD" -a "$1" -c "$2" -d "$3" -w "$4" 2>&1 | awk '/^RESULT/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["rps"], v["p50_ms"], v["p99_ms"], v["errors"], v["non2xx"]; found = 1 }
    END { if (!found) print "0 0 0 -1 0" }'
}

# rotated LIST K: LIST rotated left by K-1 (alternates which server goes first)
rotated() {
  local -a a=($1)
  local n=${#a[@]} k=$((($2 - 1) % ${#a[@]})) out="" i
  for ((i = 0; i < n; i++)); do out="$out ${a[$(((i + k) % n))]}"; done
  echo $out
}

# ---------------------------------------------------------------------------------------------
say "machine: $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. uWSGI's configurations: all started at once (each on its own socket), then every point
#    measured for each in turn, the order changing from point to point
NCFG=$(printf '%s\n' "$UWSGI_CONFIGS" | grep -c .)
say "uWSGI: trying $NCFG configurations, $TUNE_PASSES passes"
CFGS=$(printf '%s\n' "$UWSGI_CONFIGS" | cut -d'|' -f1 | grep . | tr '\n' ' ')
i=0
for name in $CFGS; do
  i=$((i + 1))
  start_server "uwsgi:$name" "$dir/uwsgi-$i.sock"
  PID[cfg$i]=$SPID
done
k=0
for pass in $(seq "$TUNE_PASSES"); do
  for c in $CONNS; do
    k=$((k + 1))
    line="tune pass $pass c=$c:"
    for j in $(rotated "$(seq -s ' ' "$NCFG")" "$k"); do
      name=$(echo "$CFGS" | cut -d' ' -f"$j")
      r=$(load "$dir/uwsgi-$j.sock" "$c" "$TUNE_DURATION" 0.5)
      echo "tune $name $c $pass $r" >>"$DATA"
      line="$line $name $(echo "$r" | cut -d' ' -f1);"
    done
    say "$line"
  done
done
for i in $(seq "$NCFG"); do stop_server "${PID[cfg$i]}"; done
UWSGI_BEST=$(awk '$1 == "tune" {s[$2] += $5; n[$2]++} END {for (k in s) print s[k] / n[k], k}' "$DATA" | sort -rn | head -1 | cut -d' ' -f2)
say "uWSGI: best configuration: $UWSGI_BEST ($(cfg_field "$UWSGI_BEST" 2), lua-gc-freq $(cfg_field "$UWSGI_BEST" 3))"

# 2. Direct SCGI: the three servers run side by side (the idle ones cost nothing); every point
#    is measured for each in turn, the order changing from point to point
for s in $SERVERS; do
  start_server "$s" "$dir/$s.sock"
  PID[$s]=$SPID
done
k=0
for rep in $(seq "$REPS"); do
  for c in $CONNS; do
    k=$((k + 1))
    for s in $(rotated "$SERVERS" "$k"); do
      r=$(load "$dir/$s.sock" "$c" "$DURATION" 1)
      echo "direct $s $c $rep $r" >>"$DATA"
      say "direct $s c=$c rep $rep: $r"
    done
  done
done

# 3. CPU time per request (user + system of the server's processes over CPU_REQUESTS requests)
TCK=$(getconf CLK_TCK)
ticks() {
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done | sed 's/^.*) //' | awk '{u += $12; s += $13} END {print u + 0, s + 0}'
}
for rep in $(seq "$REPS"); do
  for s in $(rotated "$SERVERS" "$rep"); do
    ps_=$(server_pids "${PID[$s]}")
    # shellcheck disable=SC2086
    a=$(ticks $ps_)
    r=$("$LOAD" -a "$dir/$s.sock" -c 32 -n "$CPU_REQUESTS" -w 0 2>&1 | awk '/^RESULT/ {sub(/rps=/, "", $2); sub(/non2xx=/, "", $9); print $2, $9}')
    # shellcheck disable=SC2086
    b=$(ticks $ps_)
    echo "cpu $s - $rep $a $b $CPU_REQUESTS $TCK $r" >>"$DATA"
    say "cpu $s rep $rep: $(echo "$a $b $CPU_REQUESTS $TCK" | awk '{printf "user %.1f us, sys %.1f us per request", ($3-$1)*1e6/$6/$5, ($4-$2)*1e6/$6/$5}')"
  done
done

# 4. Through nginx: one nginx (one worker) with a port per server, the same servers still running
mkdir -p "$dir/ngx"
declare -A PORT
servers_conf=""
for s in $SERVERS; do
  PORT[$s]=$("$TOOL" port)
  servers_conf="$servers_conf
  server { listen 127.0.0.1:${PORT[$s]}; location / { include /etc/nginx/scgi_params; scgi_pass unix:$dir/$s.sock; } }"
done
cat >"$dir/ngx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $dir/ngx/nginx.pid; error_log $dir/ngx/error.log;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $dir/ngx/b; proxy_temp_path $dir/ngx/p; fastcgi_temp_path $dir/ngx/f;
  uwsgi_temp_path $dir/ngx/u; scgi_temp_path $dir/ngx/s;$servers_conf
}
CONF
/usr/sbin/nginx -p "$dir/ngx" -c "$dir/ngx/nginx.conf" -e "$dir/ngx/error.log" &
NGX=$!
pids="$pids $NGX"
sleep 0.5
kill -0 $NGX 2>/dev/null || die "nginx did not start: $(cat "$dir/ngx/error.log")"
wrk_run() { # wrk_run PORT CONNS SECONDS: prints "rps p50_ms p99_ms errors non2xx"
  wrk -t 1 -c "$2" -d "${3}s" --latency "http://127.0.0.1:$1/" 2>&1 | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ {rps = $2} $1 == "50%" {p50 = ms($2)} $1 == "99%" {p99 = ms($2)}
    /Non-2xx/ {non2xx = $5} /Socket errors/ {gsub(/,/, ""); err = $4 + $6 + $8 + $10}
    END {printf "%s %s %s %d %d\n", rps + 0, p50 + 0, p99 + 0, err, non2xx}'
}
k=0
for rep in $(seq "$REPS"); do
  for c in $NGINX_CONNS; do
    k=$((k + 1))
    for s in $(rotated "$SERVERS" "$k"); do
      wrk_run "${PORT[$s]}" "$c" 1 >/dev/null # warm-up
      r=$(wrk_run "${PORT[$s]}" "$c" "$DURATION")
      echo "nginx $s $c $rep $r" >>"$DATA"
      say "nginx $s c=$c rep $rep: $r"
    done
  done
done
kill $NGX 2>/dev/null
wait $NGX 2>/dev/null
for s in $SERVERS; do stop_server "${PID[$s]}"; done

# 5. Memory: idle, then holding IDLE_CONNS idle connections
kb() { # kb FIELD PIDS...: the field summed over the processes, in kB
  local f=$1 p
  shift
  for p in "$@"; do grep "^$f:" "/proc/$p/status" 2>/dev/null; done | awk '{s += $2} END {print s + 0}'
}
pss() {
  local p
  for p in "$@"; do grep '^Pss:' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{s += $2} END {print s + 0}'
}
nfds() {
  local p
  for p in "$@"; do ls "/proc/$p/fd" 2>/dev/null; done | wc -l
}
for s in $SERVERS; do
  case $s in
  scgi) start_server scgi "$dir/$s.sock" examples/hello.lua --max-connections $IDLE_CONNS ;;
  *) start_server "$s" "$dir/$s.sock" ;;
  esac
  "$LOAD" -a "$dir/$s.sock" -c 8 -n 2000 -w 0 >/dev/null 2>&1 # every worker has served
  sleep 0.5
  ps_=$(server_pids)
  # shellcheck disable=SC2086
  idle_rss=$(kb VmRSS $ps_) idle_hwm=$(kb VmHWM $ps_) idle_pss=$(pss $ps_) fds0=$(nfds $ps_)
  "$TOOL" hold "$dir/$s.sock" $IDLE_CONNS >"$dir/hold.out" 2>&1 &
  HOLD=$!
  pids="$pids $HOLD"
  for _ in $(seq 300); do
    grep -q connected "$dir/hold.out" && break
    sleep 0.1
  done
  last=-1 # wait until the server has taken what it will take
  for _ in $(seq 50); do
    # shellcheck disable=SC2086
    n=$(nfds $ps_)
    [ "$n" = "$last" ] && break
    last=$n
    sleep 0.3
  done
  # shellcheck disable=SC2086
  conn_rss=$(kb VmRSS $ps_) conn_hwm=$(kb VmHWM $ps_) conn_pss=$(pss $ps_) held=$(($(nfds $ps_) - fds0))
  connected=$(awk '{print $2}' "$dir/hold.out")
  kill $HOLD 2>/dev/null
  wait $HOLD 2>/dev/null
  first_rss=$(kb VmRSS "$(echo "$ps_" | head -1)") # scgi-lua's supervisor, uWSGI's master
  echo "rss $s - 1 $idle_rss $idle_hwm $idle_pss $conn_rss $conn_hwm $conn_pss $held ${connected:-0} $(echo "$ps_" | wc -w) $first_rss" >>"$DATA"
  say "rss $s: idle $idle_rss kB (HWM $idle_hwm, PSS $idle_pss); $held connections held of ${connected:-0} connected: $conn_rss kB (HWM $conn_hwm, PSS $conn_pss)"
  stop_server
done

# 6. Transfers: a 64 MiB upload and a 256 MiB download over the unix socket
XREPS=$((REPS > 5 ? REPS : 5)) # each takes well under a second: a few more repetitions
for s in $SERVERS; do
  case $s in
  scgi) start_server scgi "$dir/$s.sock" "$dir/io.lua" --max-body-size 0 ;;
  uwsgi) start_server uwsgi "$dir/$s.sock" bench/uwsgi/io.lua ;;
  floor) start_server floor "$dir/$s.sock" ;; # reads and discards any body; no download
  esac
  for rep in $(seq "$XREPS"); do
    tests="up"
    [ "$s" = floor ] || tests="$tests down"
    [ "$s" = scgi ] && tests="$tests upall"
    for t in $tests; do
      case $t in
      up) r=$("$TOOL" up "$dir/$s.sock" $((64 << 20))) ;;
      upall) r=$(URI=/upload-all "$TOOL" up "$dir/$s.sock" $((64 << 20))) ;;
      down) r=$("$TOOL" down "$dir/$s.sock") ;;
      esac
      case $r in
      *status=200*) echo "xfer $s $t $rep $(echo "$r" | sed 's/[a-z_]*=//g')" >>"$DATA" ;;
      *) echo "xferfail $s $t $rep" >>"$DATA" ;;
      esac
    done
  done
  say "xfer $s: $(awk -v s="$s" '$1 == "xfer" && $2 == s {printf "%s %.3fs %s; ", $3, $6, $7}' "$DATA")"
  stop_server
done

# 7. Instructions per request under callgrind (user space), one worker; startup is measured
#    apart (a run that serves nothing) and taken off.
LUA_A=$(ls /usr/lib/"$(cc -dumpmachine)"/liblua5.4.a /usr/lib/liblua5.4.a 2>/dev/null | head -1)
PROF=""
if [ -n "$LUA_A" ]; then # the same core with Lua linked in statically: Lua's own function names
  make -s -j"$CORES" O="$dir/prof" LUA_LIB="$LUA_A -ldl" "$dir/prof/scgi-lua" >"$dir/prof.log" 2>&1 && PROF=$dir/prof/scgi-lua
fi
callgrind() { # callgrind NAME REQUESTS BINARY...: total Ir of the run
  # scgi-lua: --no-master (valgrind does not follow the serving process the supervisor execs), one
  # output per thread; the guard's watchdog thread is left out (it ticks by the clock, so under
  # valgrind's slowness it would be counted against requests it has nothing to do with). The
  # biggest thread's output (the worker's) is linked as cg.NAME for the tables by function.
  local name=$1 n=$2 sock=$dir/cg.sock f t total=0 big=0
  shift 2
  rm -f "$sock" "$dir/cg.$name" "$dir/cg.$name"-*
  case $1 in
  *floor) valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$name" "$@" -a "$sock" -w 1 >"$dir/cg.$name.log" 2>&1 & ;;
  *) valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.$name" "$@" examples/hello.lua --socket "$sock" \
    --workers 1 --no-master >"$dir/cg.$name.log" 2>&1 & ;;
  esac
  local vp=$!
  pids="$pids $vp"
  for _ in $(seq 600); do
    [ -S "$sock" ] && break
    sleep 0.1
  done
  [ "$n" -gt 0 ] && "$LOAD" -a "$sock" -c 1 -n "$n" -w 0 >/dev/null 2>&1
  kill -TERM $vp
  wait $vp 2>/dev/null
  for f in "$dir/cg.$name" "$dir/cg.$name"-*; do
    [ -f "$f" ] || continue
    grep -q '^fn=.*watchdog' "$f" && continue
    t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1; exit}')
    total=$((total + ${t:-0}))
    if [ "${t:-0}" -gt "$big" ] && [ "$f" != "$dir/cg.$name" ]; then
      big=${t:-0}
      ln -sf "$f" "$dir/cg.$name.main"
    fi
  done
  [ -e "$dir/cg.$name.main" ] && { rm -f "$dir/cg.$name"; mv "$dir/cg.$name.main" "$dir/cg.$name"; }
  echo "$total"
}
say "callgrind: scgi-lua and the floor, $CG_REQUESTS requests each"
CG_N=$((CG_REQUESTS + 1)) # scgi-load sends one probe request first
for s in scgi floor; do
  bin=$SCGI
  [ $s = floor ] && bin=$FLOOR
  i0=$(callgrind "$s.0" 0 "$bin")
  i1=$(callgrind "$s.n" "$CG_REQUESTS" "$bin")
  echo "ir $s - 1 $i0 $i1 $CG_N" >>"$DATA"
  say "callgrind $s: startup $i0 Ir, with $CG_N requests $i1 Ir: $(((i1 - i0) / CG_N)) Ir per request"
done
if [ -n "$PROF" ]; then
  i0=$(callgrind prof.0 0 "$PROF")
  i1=$(callgrind prof.n "$CG_REQUESTS" "$PROF")
  echo "ir prof - 1 $i0 $i1 $CG_N" >>"$DATA"
fi

# ---------------------------------------------------------------------------------------------
# Report
say "writing bench/RESULTS.md, bench/results.png, bench/PROFILE.md"
med() { # med KIND SERVER PARAM FIELD: the median over the repetitions of field FIELD (5 = first value)
  awk -v k="$1" -v s="$2" -v p="$3" -v f="$4" '$1 == k && $2 == s && $3 == p {v[n++] = $f}
    END { if (!n) { print "nan"; exit } for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$DATA"
}
rng() { # rng KIND SERVER PARAM FIELD: "min max"
  awk -v k="$1" -v s="$2" -v p="$3" -v f="$4" '$1 == k && $2 == s && $3 == p {if (n++ == 0 || $f < lo) lo = $f; if (n == 1 || $f > hi) hi = $f} END {print lo + 0, hi + 0}' "$DATA"
}
calc() { awk "BEGIN { printf \"%s\", $* }" </dev/null; }
f0() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
f1() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }
f2() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
f3() { awk -v v="$1" 'BEGIN { printf "%.3f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

R=bench/RESULTS.md
LABEL_scgi="scgi-lua"
LABEL_uwsgi="uWSGI ($UWSGI_BEST)"
LABEL_floor="floor"
label() { eval "echo \"\$LABEL_$1\""; }
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
uv=$(uwsgi --version 2>/dev/null)
nv=$(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///')
wv=$(wrk --version 2>&1 | head -1 | awk '{print $2}')
lv=$(lua5.4 -v 2>/dev/null | awk '{print $2}')
{
  echo "# scgi-lua next to uWSGI and the floor"
  echo
  if [ -n "${BENCH_OUT:-}" ]; then
    echo "Written by \`make bench\` (bench/all.sh: bench/run.sh, bench/scale.sh, bench/lua.sh, bench/upload.sh, then"
    echo "bench/compare.sh) on $(date -u '+%Y-%m-%d %H:%M UTC') (the whole run took $(($(date +%s) - ${BENCH_T0:-$T0})) s; scgi-lua $rev)."
  else
    echo "Written by \`bash bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') (took $(($(date +%s) - T0)) s; scgi-lua $rev)."
  fi
  echo "Every server serves the same response (\`Status: 200 OK\`, \`Content-Type: text/plain\`,"
  echo "\`Content-Length: 12\`, \`Hello world\\n\`): scgi-lua runs \`examples/hello.lua\` with"
  echo "\`--workers $CORES\`; uWSGI $uv runs the WSAPI app \`bench/uwsgi/hello.lua\` with its Lua plugin"
  echo "(\`--plugins lua\`: $PLUGIN_REAL) over SCGI (\`bench/uwsgi/hello.ini\` and the best configuration below); the floor"
  echo "(\`bench/floor.c\`) answers a fixed string with the same threading as scgi-lua ($CORES workers)."
  echo "The three servers run side by side (the idle ones cost nothing) and each point is measured for each"
  echo "in turn, the order rotating from point to point: $REPS runs of ${DURATION} s (after 1 s of warm-up) per"
  echo "point and server; the median is shown. The machine is shared and noisy: see the spread under each table."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "| --- | --- |"
  echo "| cores (nproc) | $CORES |"
  echo "| CPU | $cpu_model |"
  echo "| kernel | $(uname -sr) |"
  echo "| memory | $mem |"
  echo "| OS | $(. /etc/os-release && echo "$PRETTY_NAME") |"
  echo "| load average at start | $LOAD_BEFORE (the machine is shared: other jobs ran during the run) |"
  echo "| software | nginx $nv, wrk $wv, Lua $lv (scgi-lua), uWSGI $uv |"
  echo
  echo "The load generator (bench/scgi-load, one thread, a new connection per request) and wrk run on"
  echo "the same $CORES cores as the servers."
  echo
  echo "## Requests per second, direct SCGI (unix socket)"
  echo
  echo "| connections | scgi-lua rps | p50 / p99 ms | uWSGI rps | p50 / p99 ms | floor rps | p50 / p99 ms | scgi-lua / floor | scgi-lua / uWSGI |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for c in $CONNS; do
    row="| $c"
    for s in $SERVERS; do
      row="$row | $(f0 "$(med direct $s $c 5)") | $(f3 "$(med direct $s $c 6)") / $(f3 "$(med direct $s $c 7)")"
    done
    echo "$row | $(ratio "$(med direct scgi $c 5)" "$(med direct floor $c 5)") | $(ratio "$(med direct scgi $c 5)" "$(med direct uwsgi $c 5)") |"
  done
  echo
  echo "Errors (connect/read/timeouts, summed over the runs): $(awk '$1 == "direct" {e[$2] += $8} END {for (s in e) printf "%s %d; ", s, e[s]}' "$DATA")"
  echo "non-2xx: $(awk '$1 == "direct" {e[$2] += $9} END {for (s in e) printf "%s %d; ", s, e[s]}' "$DATA")"
  echo "Spread (min-max rps over the runs): $(for c in $CONNS; do for s in $SERVERS; do printf '%s c=%s %s; ' "$s" "$c" "$(rng direct $s $c 5 | tr ' ' '-')"; done; done)"
  echo
  echo "![requests per second by connections](results.png)"
  echo
  echo "## Requests per second, HTTP through nginx (wrk, keep-alive to nginx; nginx $nv, 1 worker, \`scgi_pass unix:\`)"
  echo
  echo "| connections | scgi-lua rps | p50 / p99 ms | uWSGI rps | p50 / p99 ms | floor rps | p50 / p99 ms | scgi-lua / floor | scgi-lua / uWSGI |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for c in $NGINX_CONNS; do
    row="| $c"
    for s in $SERVERS; do
      row="$row | $(f0 "$(med nginx $s $c 5)") | $(f2 "$(med nginx $s $c 6)") / $(f2 "$(med nginx $s $c 7)")"
    done
    echo "$row | $(ratio "$(med nginx scgi $c 5)" "$(med nginx floor $c 5)") | $(ratio "$(med nginx scgi $c 5)" "$(med nginx uwsgi $c 5)") |"
  done
  echo
  echo "Socket errors / non-2xx (summed): $(awk '$1 == "nginx" {e[$2] += $8; x[$2] += $9} END {for (s in e) printf "%s %d / %d; ", s, e[s], x[s]}' "$DATA")"
  echo "Spread (min-max rps over the runs): $(for c in $NGINX_CONNS; do for s in $SERVERS; do printf '%s c=%s %s; ' "$s" "$c" "$(rng nginx $s $c 5 | tr ' ' '-')"; done; done)"
  echo
  echo "## Memory"
  echo
  echo "RSS of the server (scgi-lua: the supervisor and its serving process; uWSGI: the master and its workers;"
  echo "summed over the processes; PSS counts the pages they share once),"
  echo "after serving 2,000 requests, then while $IDLE_CONNS unix-socket connections that send nothing are"
  echo "open (scgi-lua with \`--max-connections $IDLE_CONNS\`). \"Held\" is the number of those connections"
  echo "the server has accepted (descriptors it gained); the others wait in the kernel's backlog."
  echo "uWSGI's workers (without --async) accept a connection only when free and then wait on it (up to"
  echo "--socket-timeout, 4 s), so the idle connections sit in the kernel's backlog (--listen 4096) and the"
  echo "rest are refused: its memory does not grow with them, and its RSS per connection is not comparable."
  echo
  echo "| server | processes | idle RSS (HWM) | idle PSS | connections held | RSS with them (HWM) | PSS with them | RSS per held connection |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for s in $SERVERS; do
    awk -v l="$(label $s)" '$1 == "rss" && $2 == "'$s'" {
      per = ($11 >= 100) ? sprintf("%.2f KiB", ($8 - $5) / $11) : sprintf("n/a (%d held)", $11)
      printf "| %s | %d | %.2f MiB (%.2f) | %.2f MiB | %d of %d | %.2f MiB (%.2f) | %.2f MiB | %s |\n", l, $13, $5/1024, $6/1024, $7/1024, $11, $12, $8/1024, $9/1024, $10/1024, per }' "$DATA"
  done
  echo
  awk '$1 == "rss" && $13 > 1 && $14 != "" {printf "Of the idle RSS, the first process (%s) holds %.2f MiB. ", ($2 == "scgi") ? "scgi-lua'"'"'s supervisor" : ($2 == "uwsgi") ? "uWSGI'"'"'s master" : $2, $14 / 1024}' "$DATA"
  echo "Most of a process's RSS is shared library pages mapped from files (counted once by PSS)."
  echo
  echo "## Transfers over the unix socket (median of $XREPS)"
  echo
  echo "| server | 64 MiB upload, 64 KiB reads | 64 MiB upload, \`read(\"a\")\` | 256 MiB download, 64 KiB writes |"
  echo "| --- | ---: | ---: | ---: |"
  for s in $SERVERS; do
    up=$(med xfer $s up 6) ua=$(med xfer $s upall 6) dn=$(med xfer $s down 6)
    cell() { if [ "$1" = nan ]; then echo "-"; else echo "$(awk -v t="$1" -v m="$2" 'BEGIN {printf "%.0f MiB/s (%.3f s)", m / t, t}')"; fi; }
    echo "| $(label $s) | $(cell "$up" 64) | $(cell "$ua" 64) | $(cell "$dn" 256) |"
  done
  echo
  echo "Checks: $(awk '$1 == "xfer" {k = $2 " " $3; st[k] = st[k] " " $7; if ($3 != "down") tl[k] = $8; else b[k] = $5} END {for (k in st) printf "%s status%s, %s; ", k, st[k], (k ~ /down/) ? "bytes " b[k] : "body " tl[k]}' "$DATA")"
  echo "(the upload answers the body size it read: $((64 << 20)); the download is 268435456 bytes plus the headers)."
  echo "Failed transfers (no 200 answer): $(awk '$1 == "xferfail" {n[$2 " " $3]++} END {for (k in n) printf "%s: %d; ", k, n[k]}' "$DATA")none other."
  echo
  echo "## CPU time per request"
  echo
  echo "user + system time of the server's processes (/proc/PID/stat, clock ticks of $(calc "1000/$TCK") ms) over"
  echo "$CPU_REQUESTS requests from scgi-load with 32 connections, median of $REPS (servers alternating). The system"
  echo "time is mostly the kernel's side of a unix-socket connection (accept4, recv, send, close; scgi-lua's default"
  echo "with more workers than CPUs, \`--accept direct\` hands clients on from an acceptor while the others run Lua), and it moves with the machine's load."
  echo
  echo "| server | user µs | system µs | total µs per request | / floor | rps during the count |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  awk '$1 == "cpu" {printf "%s %s %.3f %.3f %s\n", $2, $4, ($7 - $5) * 1e6 / $10 / $9, ($8 - $6) * 1e6 / $10 / $9, $11}' "$DATA" >"$dir/cpu.tsv"
  cmed() { awk -v s="$1" -v f="$2" '$1 == s {v[n++] = (f == "t") ? $3 + $4 : $f} END {for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) {t = v[i]; v[i] = v[j]; v[j] = t}; print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2}' "$dir/cpu.tsv"; }
  for s in $SERVERS; do
    echo "| $(label $s) | $(f1 "$(cmed $s 3)") | $(f1 "$(cmed $s 4)") | $(f1 "$(cmed $s t)") | $(ratio "$(cmed $s t)" "$(cmed floor t)") | $(f0 "$(cmed $s 5)") |"
  done
  echo
  echo "## Instructions per request (user space, callgrind)"
  echo
  echo "\`valgrind --tool=callgrind\`, one worker, $CG_N requests (scgi-load's probe and $CG_REQUESTS more, one connection),"
  echo "stopped with SIGTERM; the total Ir of a run that served nothing (start-up and exit) is taken off."
  echo
  echo "| server | Ir total | Ir start-up and exit | Ir per request | / floor |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  floor_ir=$(awk '$1 == "ir" && $2 == "floor" {print ($6 - $5) / $7}' "$DATA")
  for s in scgi floor prof; do
    awk -v s=$s -v fl="$floor_ir" '$1 == "ir" && $2 == s {
      name = (s == "scgi") ? "scgi-lua" : (s == "floor") ? "floor" : "scgi-lua, Lua linked statically (profile build)"
      per = ($6 - $5) / $7
      printf "| %s | %d | %d | %.0f | %.1f |\n", name, $6, $5, per, per / fl }' "$DATA"
  done
  echo
  echo "Where they go: [PROFILE.md](PROFILE.md)."
  echo
  echo "## uWSGI configurations tried"
  echo
  echo "Shared settings (\`bench/uwsgi/hello.ini\`): \`--plugins lua --scgi-modifier1 6 --master --thunder-lock"
  echo "--listen 4096 --disable-logging --die-on-term\`. All configurations run side by side; each point is measured"
  echo "for each in turn (rotating order), $TUNE_PASSES times ${TUNE_DURATION} s; the mean is shown, and the configuration"
  echo "with the best mean over all points is the one compared above."
  echo "\`lua-gc-freq\` 0 is the plugin's default: a full \`lua_gc(LUA_GCCOLLECT)\` after every request."
  echo
  echo "| configuration | options | lua-gc-freq | rps c=1 | rps c=32 | rps c=256 | mean |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  while IFS='|' read -r name opts gc; do
    [ -n "$name" ] || continue
    vals=$(for c in $CONNS; do awk -v n="$name" -v c=$c '$1 == "tune" && $2 == n && $3 == c {s += $5; k++} END {printf "%.0f ", k ? s / k : 0}' "$DATA"; done)
    mean=$(awk -v n="$name" '$1 == "tune" && $2 == n {s += $5; k++} END {printf "%.0f", k ? s / k : 0}' "$DATA")
    mark=""
    [ "$name" = "$UWSGI_BEST" ] && mark=" **(best)**"
    echo "| $name$mark | \`$opts\` | $gc | $(echo "$vals" | awk '{print $1}') | $(echo "$vals" | awk '{print $2}') | $(echo "$vals" | awk '{print $3}') | $mean |"
  done <<<"$UWSGI_CONFIGS"
  echo
  echo "## Targets"
  echo
  echo "The rps and latency verdicts compare medians of $REPS runs on a shared 2-core machine whose load"
  echo "changes under the run (see the spread lines): a ratio within ~15% of its target can flip from one"
  echo "run to the next. The memory and instruction figures are steady; CPU time per request moves with the load too."
  echo
  verdict() { # verdict OK TEXT
    if [ "$1" = 1 ]; then echo "- **met**: $2"; else echo "- **missed**: $2"; fi
  }
  # 1, 2: direct SCGI
  ok=1 txt=""
  for c in $CONNS; do
    r=$(ratio "$(med direct scgi $c 5)" "$(med direct uwsgi $c 5)")
    ge "$r" 1.3 || ok=0
    txt="$txt c=$c: $r×$(ge "$r" 1.3 || echo " (short by $(awk -v r="$r" 'BEGIN {printf "%.0f%%", (1.3 / r - 1) * 100}') of throughput)");"
  done
  verdict $ok "direct SCGI, all cores, ≥ 1.3× uWSGI's best ($UWSGI_BEST):$txt"
  ok=1 txt=""
  for c in $CONNS; do
    r=$(ratio "$(med direct scgi $c 5)" "$(med direct floor $c 5)")
    ge "$r" 0.85 || ok=0
    txt="$txt c=$c: $r×$(ge "$r" 0.85 || echo " (short by $(awk -v r="$r" 'BEGIN {printf "%.0f%%", (0.85 / r - 1) * 100}'))");"
  done
  verdict $ok "direct SCGI, all cores, ≥ 0.85× the floor:$txt"
  ok=1 txt=""
  for c in $NGINX_CONNS; do
    r=$(ratio "$(med nginx scgi $c 5)" "$(med nginx floor $c 5)")
    ge "$r" 0.95 || ok=0
    txt="$txt c=$c: $r×$(ge "$r" 0.95 || echo " (short by $(awk -v r="$r" 'BEGIN {printf "%.0f%%", (0.95 / r - 1) * 100}'))");"
  done
  verdict $ok "through nginx, ≥ 0.95× the floor behind the same nginx:$txt"
  sp=$(med direct scgi 256 7) fp=$(med direct floor 256 7)
  ge "$(calc "$fp + 1")" "$sp" && ok=1 || ok=0
  verdict $ok "p99 at 256 connections (direct) ≤ the floor's + 1 ms: $(f2 "$sp") ms vs $(f2 "$fp") + 1 ms$([ $ok = 1 ] || echo " (over by $(f2 "$(calc "$sp - $fp - 1")") ms)")"
  idle=$(awk '$1 == "rss" && $2 == "scgi" {print $5}' "$DATA")
  lim=$(((4 + CORES) * 1024))
  [ "$idle" -lt "$lim" ] && ok=1 || ok=0
  verdict $ok "idle RSS < 4 MiB + 1 MiB per worker ($((4 + CORES)) MiB with $CORES workers): $(f2 "$(calc "$idle / 1024")") MiB"
  per=$(awk '$1 == "rss" && $2 == "scgi" {printf "%.2f", ($11 > 0) ? ($8 - $5) / $11 : 1e9}' "$DATA")
  ge 8 "$per" && ok=1 || ok=0
  verdict $ok "< 8 KiB per idle connection: $per KiB"
  r=$(ratio "$(cmed scgi t)" "$(cmed floor t)")
  ge 1.3 "$r" && ok=1 || ok=0
  verdict $ok "CPU time per request ≤ 1.3× the floor's: $(f1 "$(cmed scgi t)") µs vs $(f1 "$(cmed floor t)") µs = $r×$([ $ok = 1 ] || echo " (over by $(awk -v r="$r" 'BEGIN {printf "%.0f%%", (r / 1.3 - 1) * 100}'))")"
  echo
  if [ -n "${BENCH_OUT:-}" ]; then
    # the figures issue 13 keeps, in the same form as the other scripts' target rows
    minr() { # minr KIND A B CONNS...: the smallest ratio of the medians over the connection counts
      local k=$1 a=$2 b=$3 c m=""
      shift 3
      for c in "$@"; do
        r=$(ratio "$(med "$k" "$a" "$c" 5)" "$(med "$k" "$b" "$c" 5)")
        m=$(awk -v m="$m" -v r="$r" 'BEGIN {print (m == "" || r + 0 < m + 0) ? r : m}')
      done
      echo "$m"
    }
    keep() { # keep TEXT VALUE OP TARGET NOW DETAIL
      printf '%s|%s|%s %s|%s|%s|%s\n' "$1" "$2" "$([ "$3" = ge ] && echo '>=' || echo '<=')" "$4" \
        "$(awk -v a="$2" -v op="$3" -v b="$4" 'BEGIN {print (op == "ge" ? a >= b : a <= b) ? 1 : 0}')" "$5" "$6"
    }
    # shellcheck disable=SC2086
    {
      keep "keep: direct hello, all cores, scgi-lua / uWSGI's best (the lowest over $CONNS connections)" "$(minr direct scgi uwsgi $CONNS)" ge 1.3 1.30 \
        "$(for c in $CONNS; do printf 'c=%s %s; ' "$c" "$(ratio "$(med direct scgi $c 5)" "$(med direct uwsgi $c 5)")"; done)"
      keep "keep: direct hello, all cores, scgi-lua / the floor (the lowest over $CONNS connections)" "$(minr direct scgi floor $CONNS)" ge 0.85 1.02 \
        "$(for c in $CONNS; do printf 'c=%s %s; ' "$c" "$(ratio "$(med direct scgi $c 5)" "$(med direct floor $c 5)")"; done)"
      keep "keep: hello through nginx, scgi-lua / the floor behind the same nginx (lowest over $NGINX_CONNS)" "$(minr nginx scgi floor $NGINX_CONNS)" ge 0.95 0.94 \
        "$(for c in $NGINX_CONNS; do printf 'c=%s %s; ' "$c" "$(ratio "$(med nginx scgi $c 5)" "$(med nginx floor $c 5)")"; done)"
      keep "keep: CPU per hello request, scgi-lua / the floor" "$(ratio "$(cmed scgi t)" "$(cmed floor t)")" le 1.3 1.04 \
        "$(f1 "$(cmed scgi t)") vs $(f1 "$(cmed floor t)") µs"
      keep "keep: idle RSS, supervisor + serving process, MiB (< 4 MiB + 1 MiB per worker)" "$(f2 "$(calc "$idle / 1024")")" le "$((4 + CORES))" "2.67 (one process)" \
        "$(awk '$1 == "rss" && $2 == "scgi" {printf "PSS %.2f MiB, %d processes", $7 / 1024, $13}' "$DATA")"
      keep "keep: RSS per idle connection, KiB" "$per" le 8 4.54 ""
    } >"$BENCH_OUT/compare.targets"
    # the other scripts' sections, then every target of the issue in one table
    for sec in scale lua upload; do
      [ -s "$BENCH_OUT/$sec.md" ] && { cat "$BENCH_OUT/$sec.md"; echo; }
    done
    echo "## Issue 13 targets: measured vs target"
    echo
    echo "Every figure from this one run (\`make bench\`: bench/all.sh). \"was\" is the figure the issue was filed with."
    echo "Ratios of throughput and CPU are medians of per-round ratios (servers alternating, the same machine load for"
    echo "both sides of a pair); the machine is shared and noisy, so a ratio within a few percent of its target can"
    echo "flip from one run to the next."
    echo
    echo "| measured | was | target | this run | verdict | detail |"
    echo "| --- | ---: | ---: | ---: | --- | --- |"
    for t in scale lua upload compare; do
      [ -s "$BENCH_OUT/$t.targets" ] || continue
      awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $5, $3, $2, ($4 == 1) ? "met" : "**missed**", $6}' "$BENCH_OUT/$t.targets"
    done
    echo
  fi
  echo "## Raw data"
  echo
  echo "<details><summary>every measurement (kind server param rep values)</summary>"
  echo
  echo '```'
  cat "$DATA"
  if [ -n "${BENCH_OUT:-}" ]; then
    for sec in scale lua upload; do [ -s "$BENCH_OUT/$sec.tsv" ] && sed "s/^/$sec.sh: /" "$BENCH_OUT/$sec.tsv"; done
  fi
  echo '```'
  echo
  echo "direct/nginx/tune: rps p50_ms p99_ms errors non2xx; rss: idle_rss idle_hwm idle_pss conn_rss conn_hwm conn_pss"
  echo "held connected processes first_process_rss (kB); xfer: bytes_in seconds status body; cpu: user0 sys0 user1 sys1 requests"
  echo "ticks_per_s rps non2xx; ir: Ir_startup Ir_total requests."
  if [ -n "${BENCH_OUT:-}" ]; then
    echo "scale.sh scale: rps p50_ms p99_ms requests errors non2xx cpu_us/req vol_ctx_switches/req machine_busy_cores;"
    echo "scale.sh workers: workers 1 served busiest empty_wakeups; lua.sh cpu: cpu_us/req user_us sys_us rps non2xx;"
    echo "lua.sh nginx: rps p50_ms p99_ms requests errors non2xx cpu_us/req (nginx + server); lua.sh ir: Ir_startup"
    echo "Ir_total requests; upload.sh up: rps p50_ms p99_ms requests errors non2xx MiB/s cpu_ms/MiB; upload.sh strace:"
    echo "calls per upload."
  fi
  echo "</details>"
} >"$R.tmp" && mv "$R.tmp" "$R"

# The chart
for c in $CONNS; do
  line="$c"
  for s in $SERVERS; do
    line="$line $(med direct $s $c 5) $(rng direct $s $c 5)"
  done
  echo "$line"
done >"$dir/chart.dat"
gnuplot -e "datafile='$dir/chart.dat'; outfile='bench/results.png'; t1='scgi-lua ($CORES workers)'; t2='uWSGI ($UWSGI_BEST)'; t3='floor ($CORES workers)'; subtitle='$CORES cores ($cpu_model), direct SCGI on a unix socket, median of $REPS runs (bars: min-max)'" bench/plot.gp ||
  echo "gnuplot failed: no chart"

# The generated part of PROFILE.md: between the markers; the text around them is kept
P=bench/PROFILE.md
BEGIN_M='<!-- compare.sh: begin -->'
END_M='<!-- compare.sh: end -->'
{
  echo "$BEGIN_M"
  echo "## This run's callgrind figures (generated by bench/compare.sh, $(date -u '+%Y-%m-%d'))"
  echo
  echo "User-space instructions (Ir) per request, $CG_N requests on one worker, start-up taken off:"
  echo
  awk -v o="$O" '$1 == "ir" {n = ($2 == "scgi") ? "scgi-lua (" o "/scgi-lua, liblua5.4.so)" : ($2 == "floor") ? "floor" : "scgi-lua, Lua linked statically (profile build)"
       printf "- %s: %.0f Ir per request (%d total, %d start-up and exit)\n", n, ($6 - $5) / $7, $6, $5}' "$DATA"
  for pair in "prof:scgi-lua (profile build: Lua's functions named)" "floor:floor"; do
    f=$dir/cg.${pair%%:*}.n
    [ "${pair%%:*}" = prof ] && [ -z "$PROF" ] && f=$dir/cg.scgi.n
    [ -s "$f" ] || continue
    n=$(awk -v k="${pair%%:*}" '$1 == "ir" && $2 == k {print $7}' "$DATA")
    [ -n "$n" ] || n=$CG_N
    echo
    echo "### ${pair#*:}: top functions by self cost (\`callgrind_annotate\`), Ir per request"
    echo
    echo "| Ir per request | share | function |"
    echo "| ---: | ---: | --- |"
    callgrind_annotate "$f" 2>/dev/null | awk -v n="$n" '
      /file:function/ {go = 1; next} go && /^ *[0-9,]+ / && ++k <= 25 {
        ir = $1; gsub(/,/, "", ir); match($0, /\( *[0-9.]+%\)/); pct = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", pct)
        fn = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", fn); sub(/ \[.*\]$/, "", fn); sub(/^.*\//, "", fn); sub(/^\?\?\?:/, "", fn)
        printf "| %.0f | %s | `%s` |\n", ir / n, pct, fn }'
    if [ "${pair%%:*}" = prof ]; then
      echo
      echo "### scgi-lua (profile build): inclusive cost of the request path, Ir per request"
      echo
      echo "| Ir per request | function |"
      echo "| ---: | --- |"
      callgrind_annotate --inclusive=yes "$f" 2>/dev/null | awk -v n="$n" '
        /file:function/ {go = 1; next} go && /^ *[0-9,]+ / {
          ir = $1; gsub(/,/, "", ir)
          fn = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", fn); sub(/ \[.*\]$/, "", fn); sub(/^.*:/, "", fn)
          if (fn ~ /^(accept_take|on_handoff|conn_accept|conn_read_head|conn_dispatch|scgi_parse_request|request_new|request_start|on_start|task_run|push_headers|lclient_push_args|app_push_header|lua_newthread|lua_createtable|lua_pushlstring|lua_rawset|luaL_ref|luaL_unref|lua_resume|luaV_execute|client_write|conn_write|luaL_checkudata|conn_end|conn_flush|conn_done_sending|conn_close|conn_free|request_end|request_free|luaC_step|GCTM|client_gc|lalloc|stats_request_done|stats_note_request|snprintf|malloc|free|realloc|calloc)$/ && !seen[fn]++)
            printf "| %.0f | `%s` |\n", ir / n, fn }'
    fi
  done
  echo
  echo "$END_M"
} >"$dir/profile.gen"
if [ -f "$P" ] && grep -q "$BEGIN_M" "$P" && grep -q "$END_M" "$P"; then
  awk -v gen="$dir/profile.gen" -v b="$BEGIN_M" -v e="$END_M" '
    $0 == b {while ((getline l < gen) > 0) print l; skip = 1; next}
    $0 == e {skip = 0; next} !skip' "$P" >"$P.tmp" && mv "$P.tmp" "$P"
else
  { echo "# Where scgi-lua's time goes"; echo; cat "$dir/profile.gen"; } >"$P"
fi

say "done: $R ($(($(date +%s) - T0)) s)"
sed -n '/^## Targets/,/^## Raw/p' "$R" | sed '$d'
