#!/bin/sh
# examples/services.sh: the peers the examples of docs/services.md talk to, on loopback, in a fresh
# temporary directory, and APP behind a private nginx; Ctrl-C (or SIGTERM) stops them all.
#
#   sh examples/services.sh APP [scgi-lua options...]
#
#   http://127.0.0.1:$PORT/          APP (scgi-lua over a unix socket behind nginx)
#   http://127.0.0.1:$HTTP_PORT/     examples/slow_peer.lua behind nginx (?delay=S: answers after S s)
#   https://127.0.0.1:$HTTPS_PORT/   the same over TLS, with a throwaway self-signed certificate
#                                    for localhost and 127.0.0.1 (made here with openssl)
#   redis-server on 127.0.0.1:$REDIS_PORT (nothing saved to disk)
#   PostgreSQL on 127.0.0.1:$PG_PORT (initdb -A trust, user postgres; only when it is installed)
#
# APP gets HTTP_URL, HTTPS_URL, CA_FILE (the certificate), REDIS_PORT and PG_PORT in its
# environment, LUA_PATH="/usr/share/lua/5.3/?.lua;;" (Debian's lua-redis is installed for Lua
# 5.1-5.3 only) unless LUA_PATH is set, and --ca-file with the certificate unless CA=system.
# Defaults: PORT=8080 HTTP_PORT=8081 HTTPS_PORT=8443 REDIS_PORT=6390 PG_PORT=5440
# SCGI_LUA=./scgi-lua. Needs nginx, redis-server and openssl (apt-get install nginx-light
# redis-server openssl; postgresql for PG_PORT).
set -e
cd "$(dirname "$0")/.."
APP=${1:?usage: sh examples/services.sh APP [scgi-lua options...]}
shift
PORT=${PORT:-8080} HTTP_PORT=${HTTP_PORT:-8081} HTTPS_PORT=${HTTPS_PORT:-8443}
REDIS_PORT=${REDIS_PORT:-6390} PG_PORT=${PG_PORT:-5440} SCGI_LUA=${SCGI_LUA:-./scgi-lua}
PATH=$PATH:/usr/sbin
dir=$(mktemp -d /tmp/scgi-services.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"
pids=
stop() {
  trap - EXIT INT TERM
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 0' INT TERM

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>"$dir/logs/openssl.log"

cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/logs/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / { include /etc/nginx/scgi_params; scgi_pass unix:$dir/app.sock; scgi_read_timeout 120s; }
  }
  server {
    listen 127.0.0.1:$HTTP_PORT;
    listen 127.0.0.1:$HTTPS_PORT ssl;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    location / { include /etc/nginx/scgi_params; scgi_pass unix:$dir/peer.sock; }
  }
}
CONF

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  >"$dir/logs/redis.log" 2>&1 &
pids="$pids $!"

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -n "$pg_bin" ]; then
  as=
  if [ "$(id -u)" = 0 ]; then # PostgreSQL refuses to run as root
    as="setpriv --reuid=nobody --regid=nogroup --clear-groups"
    mkdir "$dir/pg" && chown nobody "$dir/pg"
  else
    mkdir "$dir/pg"
  fi
  $as "$pg_bin/initdb" -D "$dir/pg/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
    >"$dir/logs/initdb.log" 2>&1
  $as "$pg_bin/postgres" -D "$dir/pg/data" -p "$PG_PORT" -k "$dir/pg" \
    -c listen_addresses=127.0.0.1 -c fsync=off >"$dir/logs/postgres.log" 2>&1 &
  pids="$pids $!"
fi

nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/nginx-error.log" &
pids="$pids $!"

"$SCGI_LUA" examples/slow_peer.lua --socket "$dir/peer.sock" --socket-mode 0666 --workers 1 \
  --log-file "$dir/logs/peer.log" &
pids="$pids $!"
for i in 1 2 3 4 5 6 7 8 9 10; do [ -S "$dir/peer.sock" ] && break; sleep 0.2; done

[ "${CA:-local}" = system ] || set -- --ca-file "$dir/cert.pem" "$@"
HTTP_URL=http://127.0.0.1:$HTTP_PORT HTTPS_URL=https://127.0.0.1:$HTTPS_PORT CA_FILE=$dir/cert.pem \
  REDIS_PORT=$REDIS_PORT PG_PORT=$PG_PORT LUA_PATH=${LUA_PATH-"/usr/share/lua/5.3/?.lua;;"} \
  "$SCGI_LUA" "$APP" --socket "$dir/app.sock" --socket-mode 0666 "$@" &
pids="$pids $!"

sleep 1
echo "$APP on http://127.0.0.1:$PORT/ (logs and certificate in $dir; Ctrl-C stops everything)"
wait
