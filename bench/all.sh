#!/bin/bash
# bench/all.sh (make bench): every benchmark, one after the other (never two at once), then one
# report: bench/run.sh (1 worker and all cores, printed), bench/scale.sh (16 workers on 2 cores,
# the accept modes), bench/lua.sh (Lua-heavy handlers, the page through nginx and nginx-lua,
# where the page's time goes), bench/upload.sh (request bodies), and bench/compare.sh (hello next
# to uWSGI and the floor), which writes bench/RESULTS.md with the other scripts' sections and the
# table of issue 13's targets, and bench/results.png. bench/lua.sh and bench/upload.sh write
# their parts of bench/PROFILE.md. About 15 minutes on 2 cores (885 s in the run of RESULTS.md).
#
#   make bench O=build-bench       (or: O=build-bench bash bench/all.sh)
set -u
cd "$(dirname "$0")/.." || exit 1
export O=${O:-build}
BENCH_T0=$(date +%s)
BENCH_OUT=$(mktemp -d /tmp/scgi-bench-all.XXXXXX)
export BENCH_OUT BENCH_T0
trap 'rm -rf "$BENCH_OUT"' EXIT
trap 'exit 130' INT TERM
step() {
  echo "== $* ($(($(date +%s) - BENCH_T0)) s into the run)" >&2
  "$@" || echo "== $1 failed (status $?): its part of the report is missing" >&2
}
DURATION=${RUN_DURATION:-2} step sh bench/run.sh
step bash bench/scale.sh
step bash bench/lua.sh
step bash bench/upload.sh
step bash bench/compare.sh
echo "== done in $(($(date +%s) - BENCH_T0)) s" >&2
