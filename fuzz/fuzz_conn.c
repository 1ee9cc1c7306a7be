/* fuzz_conn.c: libFuzzer target for the connection state machine (core/conn.c), the tasks and
   requests (core/task.c, core/request.c, core/guard.c), the client object (core/lclient.c) and
   scgi's coroutine library (core/lcoro.c), with a real Lua handler and no network.

   Build and run (make fuzz does both; client_lua.h comes from
   `make O=build-fuzz build-fuzz/client_lua.h`):
     clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 \
       -D_GNU_SOURCE -I/usr/include/lua5.4 -Ibuild-fuzz fuzz/fuzz_conn.c \
       $(ls core/[a-z]*.c | grep -v -e core/main.c -e core/test_parse.c) \
       -llua5.4 -lev -lm -pthread -o build-fuzz/fuzz_conn
     build-fuzz/fuzz_conn -dict=fuzz/conn.dict build-fuzz/corpus-conn fuzz/corpus/conn

   At start-up the target builds one server and one worker as server_run and worker_main do:
   config_init with short limits, a logger writing to /dev/null, worker_init and worker_setup (the
   worker's loop, buffers and Lua runtime, from an app file written to /tmp), and the guard's
   watchdog thread, which signals this thread as it would a worker's. Then for each input:

     byte 0   bit 0  end the main connection with close() instead of shutdown(SHUT_WR)
              bit 1  read the answer between chunks and before closing (else only at the end,
                     so a handler writing much parks on a full socket)
              bit 2  a twin connection gets the same bytes, interleaved, and ends the other way
                     (two requests in flight in the worker at once)
              bit 3  three idle connections are opened first: the third, the main one and a
                     twin are over --max-connections (2) and must each get the server's 503
              bit 4  the listener is TCP, not unix (conn_peer_alive then counts POLLRDHUP)
              bit 5  a full Lua GC between chunks (parked coroutines and clients must survive)
              bit 6  stall: --timeout is 1 ms, and the loop waits up to 50 ms for the timers
                     after the last chunk, before the peers end
              bit 7  --request-timeout is 4 ms and --cpu-limit 1 ms (504s and 500s, handlers
                     stopped by the budget or the CPU guard)
     byte 1   bits 0-3: N, the number of chunk-size bytes that follow
              bit 4  two loop turns between chunks instead of one
              bit 5  reload (as SIGHUP does) after the first chunk: requests in flight finish on
                     the old Lua state, which is closed when the last of them ends
              bit 6  pools off for this input: conns and coroutines are freed, not kept, so ASan
                     sees any use after the end of a request
              bit 7  abandon: after the last chunk, rt_abandon() and conn_close_all() (what a
                     worker does when the grace period is over) instead of letting the
                     requests finish
     N bytes  chunk sizes: (b & 0x7f) + 1, times 64 if b & 0x80; what is left after the N chunks
              is the last chunk
     rest     the bytes the web server sends: an SCGI request, or not

   Each connection is a socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK): conn_accept() on one
   end, the chunks written to the other, ev_run(EVRUN_NOWAIT) between chunks, then the peer's
   write side is shut (or the peer closed) and the loop runs until the worker has freed every
   connection. Checked after each input (abort() on a broken invariant; ASan and UBSan report
   memory errors, LeakSanitizer leaks):
     - the worker is idle again: nconns == 0, live == 0, no conns, no current request, nothing
       left on the app state's stack, the Lua registry does not grow, libev's ev_verify passes
       (freed memory is filled, so a watcher left active in a freed conn trips it), no event
       pending, the server's descriptors are closed, and the pooled conns have no active or
       pending watcher and the pooled coroutines are clean
     - once its peer was gone, every connection was freed within SETTLE_LIMIT (5 s), while
       --timeout is 30 s (1 ms in stall mode): a connection that waits for the inactivity timer,
       or for nothing, is caught; abandoning freed every connection at once
     - every answer starts with "Status: "; for a connection ended with shutdown, on unix,
       without the timer modes and not abandoned, the answer is the one the bytes call for: the
       server's own 400, 431, 413 or 503 byte for byte, nothing for a header block cut short,
       else the app's 200 or the server's 500 (or 504), and 200 when none of the handler's steps
       can fail (a body cut short by the EOF may get any answer: scgi-lua takes it for a web
       server that went away).

   The app (APP_SRC below) runs the steps named by the characters of the last segment of the
   REQUEST_URI's path, so the fuzzer steers the handler: reads by line, all, count, writes,
   flush, respond with each kind of body, errors of each kind, close, <close>, yield, sleep,
   pcall, another coroutine, the memory limit, __close handlers that write or sleep.

   In the environment: FUZZ_CONN_LOG=1 logs to stderr instead of /dev/null; FUZZ_CONN_DUMP=1
   prints the first line of each answer. */
#include <lauxlib.h>

#include "../core/app.h"
#include "../core/clock.h"
#include "../core/conn.h"
#include "../core/lbind.h"
#include "../core/log.h"
#include "../core/rt.h"
#include "../core/server.h"
#include "../core/task.h"
#include "../core/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER 4096
#define MAX_BODY 65536
#define MAX_CONNS 2
#define TIMEOUT 30.0        /* --timeout, except in stall mode: longer than SETTLE_LIMIT */
#define STALL_TIMEOUT 0.001 /* --timeout in stall mode */
#define STALL_WAIT 0.05     /* how long stall mode lets the timers run */
#define SETTLE_LIMIT 5.0    /* seconds a connection whose peer went away may take to be freed */
#define BUDGET 30.0         /* --request-timeout, except in budget mode */
#define SHORT_BUDGET 0.004  /* --request-timeout in budget mode: over SHORT_CPU_LIMIT */
#define MAX_PEERS 5
#define CROWD (MAX_CONNS + 1)
#define CPU_LIMIT 5.0
#define SHORT_CPU_LIMIT 0.001
#define ANSWER_KEEP 512 /* bytes of each answer kept for the checks (all are counted) */
#define STALL_TRIES 64  /* loop turns a blocked write may wait before the rest is dropped */
/* references the app may keep between requests: idle coroutines, cached header strings */
#define REGISTRY_SLACK (APP_CO_POOL + 2 * APP_NAME_SLOTS + 8)
#define SETTLE_TURNS 256 /* loop turns a connection whose peer is gone may take to go */

/* Steps: one per character of the last segment of REQUEST_URI's path ("/any/path/STEPS?query"),
   the first MAX_STEPS only:
     l L a *     client:read("l"), ("L"), ("a"), ("*a")
     0-9 k K     client:read(n) with n the digit, 1000, 70000
     ! -         client:read("x") and client:read(-1): argument errors
     o           client:write({}): an argument error
     w f b B q   write pieces (a number too), flush, write 100 KB at once, write 20 x 4 KB,
                 write back what was read
     r s i T     respond(200, headers, list), respond("200 OK", nil, string),
                 respond(200, {}, iterator), respond(200) then write the body in pieces
     h           respond with a header name holding CR LF: raises before writing
     e E z Z     error("..."), error(object with __tostring), error(), error({})
     c u n       client:close(), a <close> variable going out of scope, return now
     x t g W     client:closed(), tostring(client), collectgarbage(), scgi.worker()
     y S Q       coroutine.yield() (an error), scgi.sleep(0), scgi.sleep(0.002)
     p P C       pcall(client.read, client, "a"), pcall(error), a read from a coroutine.wrap
     O N j       error objects whose __tostring raises, returns a number, or yields
     v F A       a coroutine that reads, sleeps and yields values; a generator that sleeps
                 between values; coroutine.resume of one that yields bare, then status, close
     m           scgi.serve called from the handler (raises; caught with pcall)
     X J         with the short budget only: a <close> that loops, then a loop (the guard stops
                 both: the clean-up too); pcall(coroutine.wrap(an endless loop))
     M           allocate 80 MiB (over --memory-limit)
     H           run Lua for a while (200,000 loop turns: the CPU guard's hook runs)
     R           client:read() (a line, the default)
     U V         client:budget(0) (no limit), client:budget(0.001) (504 or cut short soon)
     D Y         anywhere in the steps: a to-be-closed variable for the whole handler, whose
                 __close writes (once the status line is out) or sleeps
   When no step started the response, the handler answers 200 with what it read. The first
   write of any step is the status line, so every answer starts with "Status: ". */
#define MAX_STEPS 24                         /* as in APP_SRC */
#define FAILING_STEPS "!-ohezEZcunyMYVONjXJ" /* and H, in budget mode */

static const char APP_SRC[] =
    "-- written by fuzz/fuzz_conn.c: the last segment of REQUEST_URI's path names the steps\n"
    "local scgi = require 'scgi.core'\n"
    "local STATUS = 'Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'\n"
    "local big, piece = string.rep('b', 100000), string.rep('p', 4096)\n"
    "local concat, tostring, pcall = table.concat, tostring, pcall\n"
    "local function burn() local n = 0; for i = 1, 200000 do n = n + i end end\n"
    "return function(env, client)\n"
    "  local path = (env.REQUEST_URI or ''):match('^[^?]*')\n"
    "  local uri, got, started, steps = path:match('[^/]*$'), {}, false, 0\n"
    "  local function start()\n"
    "    if not started then started = true; client:write(STATUS) end\n"
    "  end\n"
    "  local function keep(s) if s then got[#got + 1] = s end end\n"
    "  local d <close> = uri:find('D', 1, true) and setmetatable({}, {__close = function()\n"
    "    if started then client:write('closing\\n') end\n"
    "  end}) or nil\n"
    "  local y <close> = uri:find('Y', 1, true) and setmetatable({}, {__close = function()\n"
    "    scgi.sleep(0)\n"
    "  end}) or nil\n"
    "  for op in uri:gmatch('.') do\n"
    "    steps = steps + 1\n"
    "    if steps > 24 then break end -- MAX_STEPS\n"
    "    if op == 'l' or op == 'L' or op == 'a' then keep(client:read(op))\n"
    "    elseif op == '*' then keep(client:read('*a'))\n"
    "    elseif op:find('^%d$') then keep(client:read(tonumber(op)))\n"
    "    elseif op == 'k' then keep(client:read(1000))\n"
    "    elseif op == 'K' then keep(client:read(70000))\n"
    "    elseif op == '!' then client:read('x')\n"
    "    elseif op == '-' then client:read(-1)\n"
    "    elseif op == 'o' then client:write({})\n"
    "    elseif op == 'w' then start(); client:write('piece ', #got, ' ', 2.5, '\\n')\n"
    "    elseif op == 'f' then start(); client:flush()\n"
    "    elseif op == 'b' then start(); client:write(big)\n"
    "    elseif op == 'B' then start(); for _ = 1, 20 do client:write(piece) end\n"
    "    elseif op == 'q' then start(); for _, s in ipairs(got) do client:write(s) end\n"
    "    elseif op == 'r' then\n"
    "      started = true\n"
    "      client:respond(200, {['Content-Type'] = 'text/plain', ['X-Steps'] = {'a', 'b'},\n"
    "                           ['X-N'] = #got}, got)\n"
    "    elseif op == 's' then started = true; client:respond('200 OK', nil, concat(got))\n"
    "    elseif op == 'i' then\n"
    "      started = true\n"
    "      local i = 0\n"
    "      client:respond(200, {}, function() i = i + 1; return got[i] end)\n"
    "    elseif op == 'T' then\n"
    "      started = true; client:respond(200); client:write(concat(got, ','))\n"
    "    elseif op == 'h' then client:respond(200, {['Bad\\r\\nName'] = 'x'})\n"
    "    elseif op == 'e' then error('fuzz: error step')\n"
    "    elseif op == 'E' then\n"
    "      error(setmetatable({}, {__tostring = function() return 'fuzz: object' end}))\n"
    "    elseif op == 'z' then error()\n"
    "    elseif op == 'Z' then error({})\n"
    "    elseif op == 'c' then client:close()\n"
    "    elseif op == 'u' then do local c <close> = client end\n"
    "    elseif op == 'n' then return\n"
    "    elseif op == 'x' then client:closed()\n"
    "    elseif op == 't' then tostring(client)\n"
    "    elseif op == 'g' then collectgarbage()\n"
    "    elseif op == 'W' then scgi.worker()\n"
    "    elseif op == 'y' then coroutine.yield()\n"
    "    elseif op == 'S' then scgi.sleep(0)\n"
    "    elseif op == 'Q' then scgi.sleep(0.002)\n"
    "    elseif op == 'p' then pcall(client.read, client, 'a')\n"
    "    elseif op == 'P' then pcall(error, 'caught')\n"
    "    elseif op == 'C' then coroutine.wrap(function() return client:read('a') end)()\n"
    "    elseif op == 'M' then local _ = string.rep('m', 80 * 1048576)\n"
    "    elseif op == 'H' then burn()\n"
    "    elseif op == 'R' then keep(client:read())\n"
    "    elseif op == 'U' then client:budget(0)\n"
    "    elseif op == 'V' then client:budget(0.001)\n"
    "    elseif op == 'O' then\n"
    "      error(setmetatable({}, {__tostring = function() error('fuzz: tostring raised') end}))\n"
    "    elseif op == 'N' then error(setmetatable({}, {__tostring = function() return 42 end}))\n"
    "    elseif op == 'j' then\n"
    "      error(setmetatable({}, {__tostring = function() coroutine.yield() end}))\n"
    "    elseif op == 'v' then\n"
    "      local f = coroutine.wrap(function()\n"
    "        keep(client:read('a')); scgi.sleep(0); coroutine.yield('y'); return 'r' end)\n"
    "      keep(f()); keep(f())\n"
    "    elseif op == 'F' then\n"
    "      for v in coroutine.wrap(function()\n"
    "        for i = 1, 3 do scgi.sleep(0); coroutine.yield(tostring(i)) end end) do keep(v) end\n"
    "    elseif op == 'A' then\n"
    "      local co = coroutine.create(function() coroutine.yield() end)\n"
    "      coroutine.resume(co); keep(coroutine.status(co)); coroutine.close(co)\n"
    "    elseif op == 'm' then pcall(scgi.serve, function() end)\n"
    "    elseif op == 'X' and FUZZ_SHORT then\n"
    "      local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
    "      while true do end\n"
    "    elseif op == 'J' and FUZZ_SHORT then\n"
    "      pcall(coroutine.wrap(function() while true do end end))\n"
    "    end\n"
    "  end\n"
    "  if not started then client:respond(200, {['X-Read'] = #concat(got)}, got) end\n"
    "end\n";

#define CHECK(cond, what)                                                                          \
  do {                                                                                             \
    if (!(cond)) fail(what, __LINE__);                                                             \
  } while (0)

static void fail(const char *what, int line) {
  fprintf(stderr, "fuzz_conn.c:%d: invariant broken: %s\n", line, what);
  abort();
}

/* Freed memory is filled, so that libev (not instrumented) trips on a watcher of a freed conn
   when ev_verify walks its lists. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "max_free_fill_size=4096:free_fill_byte=85"; }

static struct server srv;
static struct worker wk;
static char app_path[64];
static struct scgi_header parse_hdrs[SCGI_MAX_HEADERS];
static lua_Unsigned registry_base;
static int dump;

struct peer {
  int fd;           /* our end, -1 once closed */
  int srv_fd;       /* the server's end, for the closed-descriptor check */
  ino_t srv_ino;    /* ... and its inode: the number may be reused once the server closed it */
  int close_at_end; /* close() rather than shutdown(SHUT_WR) */
  int stopped;      /* a write failed or stalled: the rest of the input was not sent */
  int eof;          /* the answer is complete (EOF seen) */
  size_t sent;
  size_t answer_len; /* bytes received */
  char answer[ANSWER_KEEP];
};

static struct peer peers[MAX_PEERS];
static int npeers;

static void drain(struct peer *p) {
  char buf[65536];
  if (p->fd < 0 || p->eof) return;
  for (;;) {
    ssize_t n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      if (p->answer_len < ANSWER_KEEP) {
        size_t room = ANSWER_KEEP - p->answer_len, k = room < (size_t)n ? room : (size_t)n;
        memcpy(p->answer + p->answer_len, buf, k);
      }
      p->answer_len += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) p->eof = 1;
    return;
  }
}

static void drain_all(void) {
  for (int i = 0; i < npeers; i++)
    drain(&peers[i]);
}

/* Whether the worker still has a connection, a refused one or a request. */
static int busy(void) { return wk.nconns > 0 || wk.nrefusals > 0 || rt_live(&wk) > 0; }

static void turn(int drain_too) {
  ev_run(wk.loop, EVRUN_NOWAIT);
  if (drain_too) drain_all();
}

static void on_guard(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)t;
  (void)revents;
}

/* Runs the loop, blocking for its timers (a guard timer bounds each wait), for up to seconds or
   until the worker has no connection left. */
static void run_timers(double seconds, int drain_too) {
  ev_timer guard;
  ev_timer_init(&guard, on_guard, 0.001, 0.001);
  ev_timer_start(wk.loop, &guard);
  double until = clock_now() + seconds;
  while (busy() && clock_now() < until) {
    ev_run(wk.loop, EVRUN_ONCE);
    if (drain_too) drain_all();
  }
  ev_timer_stop(wk.loop, &guard);
}

/* Runs the loop until every connection is freed or `limit` seconds have passed; returns whether
   every connection was freed. */
static int settle(double limit) {
  for (int i = 0; i < SETTLE_TURNS && busy(); i++)
    turn(1);
  if (busy()) run_timers(limit, 1);
  return !busy();
}

static struct peer *open_peer(int close_at_end) {
  int sv[2];
  CHECK(npeers < MAX_PEERS, "too many peers");
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
  struct peer *p = &peers[npeers++];
  memset(p, 0, sizeof *p);
  p->fd = sv[1];
  p->srv_fd = sv[0];
  struct stat st;
  CHECK(fstat(sv[0], &st) == 0, "fstat");
  p->srv_ino = st.st_ino;
  p->close_at_end = close_at_end;
  ev_now_update(wk.loop); /* as accept_some does: budgets start now */
  conn_accept(&wk, sv[0]);
  return p;
}

/* Writes one chunk; while the socket is full, lets the server run (and reads its answer). */
static void send_chunk(struct peer *p, const uint8_t *buf, size_t n) {
  int tries = 0;
  while (n > 0 && !p->stopped) {
    ssize_t k = send(p->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      buf += k;
      n -= (size_t)k;
      p->sent += (size_t)k;
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && ++tries < STALL_TRIES) {
      turn(1);
      continue;
    }
    p->stopped = 1; /* the server closed, or does not read: the rest is not sent */
  }
}

static void end_peer(struct peer *p, int drain_first) {
  if (p->close_at_end) {
    if (drain_first) drain(p);
    close(p->fd);
    p->fd = -1;
  } else {
    shutdown(p->fd, SHUT_WR);
  }
}

static int starts_with(const struct peer *p, const char *s) {
  size_t n = strlen(s);
  return p->answer_len >= n && memcmp(p->answer, s, n) == 0;
}

static int is_server_answer(const struct peer *p, int status, const char *phrase) {
  char want[160];
  int n = snprintf(want, sizeof want, "Status: %d %s\r\nContent-Type: text/plain\r\n\r\n%d %s\n",
                   status, phrase, status, phrase);
  return p->answer_len == (size_t)n && memcmp(p->answer, want, (size_t)n) == 0;
}

/* None of the steps the app runs for this request can fail. */
static int steps_cannot_fail(size_t nh) {
  for (size_t i = 0; i < nh; i++) {
    const struct scgi_header *h = &parse_hdrs[i];
    if (h->name_len == 11 && memcmp(h->name, "REQUEST_URI", 11) == 0) {
      const char *path = h->value, *end = memchr(path, '?', h->value_len), *seg = path;
      if (end == NULL) end = path + h->value_len;
      for (const char *q = path; q < end; q++)
        if (*q == '/') seg = q + 1;
      size_t n = (size_t)(end - seg) < MAX_STEPS ? (size_t)(end - seg) : MAX_STEPS;
      for (size_t k = 0; k < n; k++)
        if (strchr(FAILING_STEPS, seg[k]) != NULL) return 0;
      /* 'D' and 'Y' act wherever they are, past MAX_STEPS too */
      return memchr(seg, 'Y', (size_t)(end - seg)) == NULL;
    }
  }
  return 1;
}

/* What a connection ended with shutdown must have been answered, given the bytes it was sent. */
static void check_answer(const struct peer *p, const uint8_t *req, int over_limit, int strict) {
  if (p->answer_len > 0) CHECK(starts_with(p, "Status: "), "an answer without a Status: line");
  if (!strict || p->close_at_end) return; /* the answer may be cut anywhere */
  CHECK(p->eof, "no EOF after the connection was freed");
  if (over_limit) {
    CHECK(is_server_answer(p, 503, "Service Unavailable"), "expected the server's 503");
    return;
  }
  size_t nh = SCGI_MAX_HEADERS;
  uint64_t cl = 0;
  const char *why = NULL;
  int repeated = 0;
  int r = scgi_parse_request((const char *)req, p->sent, MAX_HEADER, parse_hdrs, &nh, &cl,
                             &repeated, &why);
  if (r == SCGI_PARSE_INVALID) {
    CHECK(is_server_answer(p, 400, "Bad Request"), "expected the server's 400");
  } else if (r == SCGI_PARSE_TOO_LARGE ||
             (r == SCGI_PARSE_INCOMPLETE && p->sent >= MAX_HEADER + 32)) {
    CHECK(is_server_answer(p, 431, "Request Header Fields Too Large"), "expected the server's 431");
  } else if (r == SCGI_PARSE_INCOMPLETE) {
    CHECK(p->answer_len == 0, "an answer to a header block cut short");
  } else if (cl > MAX_BODY) {
    CHECK(is_server_answer(p, 413, "Content Too Large"), "expected the server's 413");
  } else if (p->sent - (size_t)r < cl) {
    /* the body was cut short by the EOF: to scgi-lua the web server went away, and reads and
       writes answer "closed" from then on, so any answer (or none) may have been sent */
  } else if (steps_cannot_fail(nh)) {
    CHECK(starts_with(p, "Status: 200 OK\r\n"), "expected the app's 200");
  } else {
    CHECK(starts_with(p, "Status: 200 OK\r\n") ||
              is_server_answer(p, 500, "Internal Server Error") ||
              is_server_answer(p, 504, "Gateway Timeout"),
          "expected the app's 200 or the server's 500 or 504");
  }
}

static void remove_app_file(void) { unlink(app_path); }

/* The server closed its end of p: the descriptor is gone, or its number now names another file
   (a later peer's socketpair, a file a loader thread opened). */
static int srv_closed(const struct peer *p) {
  struct stat st;
  if (fstat(p->srv_fd, &st) < 0) return errno == EBADF;
  return st.st_ino != p->srv_ino;
}

static int watcher_idle(void *w) {
  return !ev_is_active((ev_watcher *)w) && !ev_is_pending((ev_watcher *)w);
}

/* Drops the app's idle coroutines (their registry references go, the GC frees them). */
static void drop_idle_coroutines(struct app *a) {
  for (int i = 0; i < a->nidle; i++)
    luaL_unref(a->L, LUA_REGISTRYINDEX, a->idle_ref[i]);
  a->nidle = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char err[1024];
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  dump = getenv("FUZZ_CONN_DUMP") != NULL;
  config_init(&srv.cfg);
  srv.cfg.workers = 1;
  srv.cfg.max_header_size = MAX_HEADER;
  srv.cfg.max_body_size = MAX_BODY;
  srv.cfg.timeout = TIMEOUT;
  srv.cfg.request_timeout = BUDGET;
  srv.cfg.cpu_limit = CPU_LIMIT;
  srv.cfg.memory_limit = 16;
  srv.cfg.max_connections = MAX_CONNS;
  srv.cfg.log_level = LOG_DEBUG;
  srv.nworkers = 1;
  srv.workers = &wk;
  srv.lst.fd = srv.web.lst.fd = -1;
  srv.lst.is_unix = 1;
  srv.started = clock_now();
  pthread_mutex_init(&srv.mu, NULL);
  pthread_cond_init(&srv.cv, NULL);
  pthread_mutex_init(&srv.files_mu, NULL);
  /* the error log and the access log both go to /dev/null: their lines are still formatted */
  const char *log_path = getenv("FUZZ_CONN_LOG") ? NULL : "/dev/null";
  srv.log = log_start(log_path, log_path, LOG_DEBUG, err, sizeof err);
  CHECK(srv.log != NULL, err);

  snprintf(app_path, sizeof app_path, "/tmp/scgi-fuzz-conn-%ld.lua", (long)getpid());
  FILE *f = fopen(app_path, "w");
  CHECK(f != NULL && fwrite(APP_SRC, 1, sizeof APP_SRC - 1, f) == sizeof APP_SRC - 1 &&
            fclose(f) == 0,
        "cannot write the app file");
  atexit(remove_app_file); /* kept until then for the reloads */
  srv.cfg.app = app_path;

  srv.bindings = &scgi_bindings;
  srv.stats = stats_table_new(1, 1, NULL);
  CHECK(srv.stats != NULL, "the figures' table");
  CHECK(worker_init(&wk, &srv, 0) == 0, "worker_init");
  wk.st = stats_worker(srv.stats, 0, 0);
  wk.thread = pthread_self(); /* the watchdog signals this thread */
  CHECK(worker_setup(&wk) == 0, wk.load_error);
  CHECK(rt_guard_start(&srv, err, sizeof err) == 0, err);
  lua_gc(wk.rt->app->L, LUA_GCCOLLECT);
  registry_base = lua_rawlen(wk.rt->app->L, LUA_REGISTRYINDEX);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  unsigned flags = data[0], opts = data[1], nsizes = opts & 15u, turns = (opts >> 4 & 1u) + 1u;
  if (size < 2 + nsizes) return 0;
  const uint8_t *sizes = data + 2, *req = data + 2 + nsizes;
  size_t len = size - 2 - nsizes;
  int close_main = flags & 1, drain_between = flags >> 1 & 1, twin = flags >> 2 & 1;
  int crowd = flags >> 3 & 1, tcp = flags >> 4 & 1, gc_between = flags >> 5 & 1;
  int stall = flags >> 6 & 1, short_budget = flags >> 7 & 1;
  int reload = opts >> 5 & 1, nopool = opts >> 6 & 1, abandon = opts >> 7 & 1;

  srv.lst.is_unix = !tcp;
  srv.cfg.timeout = stall ? STALL_TIMEOUT : TIMEOUT;
  srv.cfg.request_timeout = short_budget ? SHORT_BUDGET : BUDGET;
  srv.cfg.cpu_limit = short_budget ? SHORT_CPU_LIMIT : CPU_LIMIT;
  lua_pushboolean(wk.rt->app->L, short_budget); /* lets the app loop only when that is stopped */
  lua_setglobal(wk.rt->app->L, "FUZZ_SHORT");
  if (nopool) {
    conn_pool_free(&wk);
    wk.nfree = UINT_MAX; /* conn_free frees every conn */
    drop_idle_coroutines(wk.rt->app);
  }

  npeers = 0;
  if (crowd)
    for (int i = 0; i < CROWD; i++)
      open_peer(1);
  struct peer *first = open_peer(close_main);
  struct peer *other = twin ? open_peer(!close_main) : NULL;

  size_t off = 0;
  for (unsigned i = 0; i <= nsizes && off <= len; i++) {
    size_t n = len - off;
    if (i < nsizes) {
      size_t want = ((size_t)(sizes[i] & 0x7f) + 1) * (sizes[i] & 0x80 ? 64 : 1);
      if (want < n) n = want;
    }
    send_chunk(first, req + off, n);
    if (other) send_chunk(other, req + off, n);
    off += n;
    if (reload && i == 0) { /* as on SIGHUP: the loop's wake-up watcher does the reload */
      atomic_store(&wk.reload, 1);
      ev_async_send(wk.loop, &wk.wake);
    }
    for (unsigned t = 0; t < turns; t++)
      turn(drain_between);
    if (gc_between) lua_gc(wk.rt->app->L, LUA_GCCOLLECT);
    if (off == len) break;
  }
  if (stall) run_timers(STALL_WAIT, drain_between);
  if (abandon) {
    rt_abandon(&wk);
    conn_close_all(&wk);
    CHECK(!busy(), "abandoning left connections or requests");
  }

  for (int i = 0; i < npeers; i++)
    end_peer(&peers[i], drain_between);
  CHECK(settle(stall ? 3 * STALL_TIMEOUT + 1 : SETTLE_LIMIT),
        "a connection was not freed within seconds of its peer going away");
  drain_all();

  struct app *app = wk.rt->app;
  lua_State *L = app->L;
  CHECK(wk.nconns == 0 && wk.conns == NULL, "connections left in the worker");
  CHECK(wk.nrefusals == 0 && wk.refusals == NULL, "refused connections left in the worker");
  CHECK(rt_live(&wk) == 0 && wk.rt->live == NULL, "requests left alive");
  CHECK(wk.rt->current == NULL && wk.rt->running == NULL, "a current task after the loop");
  CHECK(app->refs == 1, "the app's references do not return to 1");
  CHECK(lua_gettop(L) == 0, "values left on the app state's stack");
  CHECK(ev_pending_count(wk.loop) == 0, "events pending after the loop");
  ev_verify(wk.loop);
  for (int i = 0; i < npeers; i++)
    CHECK(srv_closed(&peers[i]), "the server's descriptor was not closed");
  unsigned pooled = 0;
  for (struct conn *c = wk.free_conns; c; c = c->next, pooled++)
    CHECK(watcher_idle(&c->io) && watcher_idle(&c->timer) && watcher_idle(&c->budget),
          "a pooled conn has an active or pending watcher");
  CHECK(nopool ? pooled == 0 : pooled == wk.nfree, "the conn pool's count is wrong");
  for (int i = 0; i < app->nidle; i++) {
    CHECK(lua_status(app->idle[i]) == LUA_OK && lua_gettop(app->idle[i]) == 0,
          "a pooled coroutine is not clean");
    CHECK(lua_gethook(app->idle[i]) == NULL && lua_gethookmask(app->idle[i]) == 0,
          "a pooled coroutine has a hook (the CPU guard's?)");
    CHECK(!task_holds(app->idle[i]), "a pooled coroutine is still part of a task");
  }

  int strict = !tcp && !stall && !short_budget && !abandon;
  for (int i = 0; i < npeers; i++) {
    struct peer *p = &peers[i];
    if (crowd && i < MAX_CONNS)
      CHECK(p->answer_len == 0, "an answer to an idle connection");
    else
      check_answer(p, req, crowd, strict);
    if (dump) {
      size_t n = p->answer_len < ANSWER_KEEP ? p->answer_len : ANSWER_KEEP;
      const char *eol = memchr(p->answer, '\r', n);
      fprintf(stderr, "fuzz_conn: peer %d (%s, sent %zu%s): %zu bytes: %.*s\n", i,
              p->close_at_end ? "close" : "shutdown", p->sent, p->stopped ? ", stopped" : "",
              p->answer_len, (int)(eol ? (size_t)(eol - p->answer) : n), p->answer);
    }
    if (p->fd >= 0) close(p->fd);
  }

  if (nopool) {
    wk.nfree = 0;
    drop_idle_coroutines(app);
  }
  srv.cfg.timeout = TIMEOUT;
  srv.cfg.request_timeout = BUDGET;
  srv.cfg.cpu_limit = CPU_LIMIT;
  lua_gc(L, LUA_GCCOLLECT);
  if (reload) registry_base = lua_rawlen(L, LUA_REGISTRYINDEX); /* a new state */
  CHECK(lua_rawlen(L, LUA_REGISTRYINDEX) <= registry_base + REGISTRY_SLACK,
        "the Lua registry grows");
  return 0;
}
