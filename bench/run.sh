#!/bin/sh
# bench/run.sh (make bench): requests per second and p50/p99 latency of examples/hello.lua with one
# worker and with every core, direct over SCGI (bench/scgi-load, a fresh connection per request)
# and as HTTP through a private nginx (wrk), next to the floor (bench/floor) measured in the same
# run. Figures only: a benchmark prints, it asserts nothing. DURATION=seconds per point.
set -u
cd "$(dirname "$0")/.."
O=${O:-build}
DURATION=${DURATION:-5}
CORES=$(nproc)
dir=$(mktemp -d /tmp/scgi-bench.XXXXXX)
chmod 755 "$dir"
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

command -v wrk >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null 2>&1; }
make -s O="$O" "$O/scgi-lua" >/dev/null || exit 1
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/scgi-load" bench/scgi-load.c || exit 1
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -o "$O/floor" bench/floor.c || exit 1

start() { # start NAME CMD...: runs a server on $dir/NAME.sock and waits for it
  name=$1; shift
  "$@" >"$dir/$name.log" 2>&1 &
  pids="$pids $!"
  last=$!
  for _ in $(seq 100); do [ -S "$dir/$name.sock" ] && return 0; sleep 0.05; done
  echo "$name did not start:"; cat "$dir/$name.log"; exit 1
}

stop() { kill "$last" 2>/dev/null; wait "$last" 2>/dev/null; }

direct() { # direct LABEL SOCK: one line per connection count
  for c in 1 32 256; do
    r=$("$O/scgi-load" -a "$2" -c "$c" -d "$DURATION" -w 1 | grep '^RESULT')
    printf '%-28s %-6s c=%-4s %s\n' "$1" direct "$c" "${r#RESULT }"
  done
}

through_nginx() { # through_nginx LABEL SOCK
  command -v wrk >/dev/null 2>&1 || { echo "wrk missing: skipping the nginx path"; return; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/ngx"
  cat >"$dir/ngx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $dir/ngx/nginx.pid; error_log $dir/ngx/error.log;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $dir/ngx/b; proxy_temp_path $dir/ngx/p; fastcgi_temp_path $dir/ngx/f;
  uwsgi_temp_path $dir/ngx/u; scgi_temp_path $dir/ngx/s;
  server { listen 127.0.0.1:$port; location / { include /etc/nginx/scgi_params; scgi_pass unix:$2; } } }
CONF
  /usr/sbin/nginx -p "$dir/ngx" -c "$dir/ngx/nginx.conf" -e "$dir/ngx/error.log" &
  ngx=$!
  sleep 0.3
  for c in 32; do
    out=$(wrk -t 1 -c "$c" -d "${DURATION}s" --latency "http://127.0.0.1:$port/")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    printf '%-28s %-6s c=%-4s rps=%s p50=%s p99=%s non2xx=%s\n' "$1" nginx "$c" "$rps" "$p50" "$p99" "${non2xx:-0}"
  done
  kill $ngx; wait $ngx 2>/dev/null
}

echo "machine: $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
for w in 1 "$CORES"; do
  start floor "$O/floor" -a "$dir/floor.sock" -w "$w"
  direct "floor ($w workers)" "$dir/floor.sock"
  through_nginx "floor ($w workers)" "$dir/floor.sock"
  stop
  start scgi "$O/scgi-lua" examples/hello.lua --socket "$dir/scgi.sock" --workers "$w"
  direct "scgi-lua hello ($w workers)" "$dir/scgi.sock"
  through_nginx "scgi-lua hello ($w workers)" "$dir/scgi.sock"
  stop
done
