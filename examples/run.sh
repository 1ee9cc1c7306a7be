#!/bin/sh
# examples/run.sh (make run): installs what is missing on Debian, builds, and serves APP
# (default examples/hello.lua) behind a private nginx on 127.0.0.1:PORT (default 8080).
set -e
cd "$(dirname "$0")/.."
APP=${APP:-examples/hello.lua}
PORT=${PORT:-8080}
sh .ci/deps.sh build || exit 1
make
dir=$(mktemp -d /tmp/scgi-run.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs"
cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 1024; }
http {
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / {
      include /etc/nginx/scgi_params;
      scgi_pass unix:$dir/scgi.sock;
    }
  }
}
CONF
./scgi-lua "$APP" --socket "$dir/scgi.sock" --socket-mode 0666 &
app_pid=$!
PATH=$PATH:/usr/sbin nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" &
nginx_pid=$!
trap 'kill $nginx_pid $app_pid 2>/dev/null; wait; rm -rf "$dir"' EXIT INT TERM
sleep 0.5
echo
echo "scgi-lua is serving $APP behind nginx: open http://127.0.0.1:$PORT/ (Ctrl-C stops both)"
wait $app_pid
