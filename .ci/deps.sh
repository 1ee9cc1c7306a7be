#!/bin/sh
# .ci/deps.sh [build|test|all]: installs the Debian packages scgi-lua needs that are missing
# (as root with apt-get, or through sudo); says which are missing otherwise. Used by make run,
# make test and .ci/run.
set -u
what=${1:-all}
build="build-essential liblua5.4-dev lua5.4 libev-dev libssl-dev nginx-light"
test="clang lua-busted lua-socket luarocks redis-server lua-redis python3 procps lua-sec openssl postgresql python3-prometheus-client iproute2"
case "$what" in
  build) want=$build ;;
  test) want="$build $test" ;;
  *) want="$build $test valgrind" ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null
elif command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
else
  echo "missing Debian packages:$missing (install them with apt-get as root)" >&2
  exit 1
fi
