/* lclient.c: the scgi.client userdata: write, read, flush, close and the Lua-written respond. */
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client_lua.h"
#include "server.h"

#define CLIENT_MT "scgi.client"

static const char client_mt_key = 0; /* its address keys the metatable in the registry */
#define CTX_SHIFT 40

struct lclient {
  struct conn *c; /* NULL once the request ended or the client was closed */
};

static struct lclient *check_lclient(lua_State *L) {
  return (struct lclient *)luaL_checkudata(L, 1, CLIENT_MT);
}

/* The live connection behind argument 1; raises if the client is closed. */
static struct conn *check_conn(lua_State *L) {
  struct lclient *cl = check_lclient(L);
  if (cl->c == NULL) luaL_error(L, "attempt to use a closed scgi client");
  return cl->c;
}

/* nil, message, code for a peer that went away or stalled. */
static int push_closed(lua_State *L, struct conn *c) {
  lua_pushnil(L);
  lua_pushstring(L, c->timed_out ? "timeout" : "closed");
  lua_pushinteger(L, c->err > 0 ? c->err : EPIPE);
  return 3;
}

/* Parks the request's coroutine until the socket is ready, then continues in k. */
static int park(lua_State *L, struct conn *c, enum conn_wait wait, lua_KContext ctx,
                lua_KFunction k) {
  if (L != c->co)
    return luaL_error(L, "cannot wait for the client outside its request's coroutine");
  if (!lua_isyieldable(L)) return luaL_error(L, "cannot wait for the client across a C call here");
  conn_park(c, wait);
  return lua_yieldk(L, 0, ctx, k);
}

static int ensure_out(lua_State *L, struct conn *c) {
  if (c->out) return 0;
  c->out = malloc(64 * 1024);
  if (c->out == NULL) return luaL_error(L, "not enough memory for the output buffer");
  c->out_cap = 64 * 1024;
  return 0;
}

/* Sends straight from a large string when nothing is buffered; returns bytes sent, 0 when the
   socket is full, -1 when the peer is gone. */
static ssize_t send_direct(struct conn *c, const char *s, size_t n) {
  if (c->bytes_out == 0) stats_note_status(c, s, n);
  for (;;) {
    ssize_t r = send(c->fd, s, n, MSG_NOSIGNAL);
    if (r > 0) {
      c->bytes_out += (uint64_t)r;
      return r;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    c->peer_gone = 1;
    c->err = r < 0 ? errno : EPIPE;
    return -1;
  }
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  struct conn *c = check_conn(L);
  int n = lua_gettop(L), i = (int)(ctx >> CTX_SHIFT);
  size_t off = (size_t)(ctx & (((lua_KContext)1 << CTX_SHIFT) - 1));
  (void)status;
  if (c->peer_gone) return push_closed(L, c);
  for (; i <= n; i++, off = 0) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    while (off < len) {
      size_t room = c->out_cap - c->out_len, k = len - off;
      if (c->out_len == 0 && k >= c->out_cap) {
        ssize_t sent = send_direct(c, s + off, k);
        if (sent < 0) return push_closed(L, c);
        if (sent == 0) return park(L, c, WAIT_WRITE, ((lua_KContext)i << CTX_SHIFT) | off, write_k);
        off += (size_t)sent;
        continue;
      }
      if (room == 0) {
        int r = conn_flush(c);
        if (r < 0) return push_closed(L, c);
        if (r == 1) return park(L, c, WAIT_WRITE, ((lua_KContext)i << CTX_SHIFT) | off, write_k);
        continue;
      }
      if (k > room) k = room;
      memcpy(c->out + c->out_len, s + off, k);
      c->out_len += k;
      off += k;
    }
  }
  lua_settop(L, 1);
  return 1;
}

/* client:write(...): strings or numbers, buffered; parks while the socket is full. */
static int client_write(lua_State *L) {
  struct conn *c = check_conn(L);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++)
    luaL_checklstring(L, i, NULL);
  ensure_out(L, c);
  if (lstate_slice_over(L, c))
    return lstate_yield_slice(L, c, (lua_KContext)2 << CTX_SHIFT, write_k);
  return write_k(L, LUA_OK, (lua_KContext)2 << CTX_SHIFT);
}

static int flush_k(lua_State *L, int status, lua_KContext ctx) {
  struct conn *c = check_conn(L);
  (void)status;
  if (c->peer_gone) return push_closed(L, c);
  int r = conn_flush(c);
  if (r < 0) return push_closed(L, c);
  if (r == 1) return park(L, c, WAIT_WRITE, ctx, flush_k);
  lua_settop(L, 1);
  return 1;
}

/* client:flush(): sends everything buffered; parks until the socket took it. */
static int client_flush(lua_State *L) {
  check_conn(L);
  return flush_k(L, LUA_OK, 0);
}

/* Hands n bytes of the body to Lua. */
static void push_body(lua_State *L, struct conn *c, size_t n) {
  lua_pushlstring(L, c->in + c->in_off, n);
  c->in_off += n;
  c->body_read += n;
  if (c->in_off == c->in_len && c->in_cap > 256 * 1024) {
    char *p = realloc(c->in, 64 * 1024);
    if (p) {
      c->in = p;
      c->in_cap = 64 * 1024;
    }
    c->in_off = c->in_len = 0;
  }
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  struct conn *c = check_conn(L);
  int mode = (int)ctx;
  (void)status;
  for (;;) {
    uint64_t left = c->content_length - c->body_read;
    size_t avail = c->in_len - c->in_off, want;
    if (mode == 'n') {
      lua_Integer n = lua_tointeger(L, 2);
      if (left == 0) {
        lua_pushnil(L);
        return 1;
      }
      want = (uint64_t)n < left ? (size_t)n : (size_t)left;
    } else if (mode == 'a') {
      want = (size_t)left;
    } else {
      const char *p = c->in + c->in_off, *nl = memchr(p, '\n', avail);
      if (nl != NULL) {
        size_t len = (size_t)(nl - p) + 1;
        lua_pushlstring(L, p, mode == 'L' ? len : len - 1);
        c->in_off += len;
        c->body_read += len;
        return 1;
      }
      if (avail == left) {
        if (left == 0) {
          lua_pushnil(L);
          return 1;
        }
        want = avail;
      } else {
        want = avail + 1;
      }
    }
    if (avail >= want) {
      push_body(L, c, want);
      return 1;
    }
    int r = conn_fill(c, want);
    if (r < 0) return push_closed(L, c);
    if (r == 1) return park(L, c, WAIT_READ, ctx, read_k);
  }
}

/* client:read(n | "a" | "l" | "L"): body bytes, parking until they arrive; nil at the end. */
static int client_read(lua_State *L) {
  struct conn *c = check_conn(L);
  int mode;
  if (lua_isnoneornil(L, 2)) {
    mode = 'l';
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative count");
    if (n == 0) {
      if (c->content_length == c->body_read)
        lua_pushnil(L);
      else
        lua_pushliteral(L, "");
      return 1;
    }
    mode = 'n';
  } else {
    const char *f = luaL_checkstring(L, 2);
    if (*f == '*') f++;
    if ((*f != 'a' && *f != 'l' && *f != 'L') || f[1] != '\0')
      return luaL_argerror(L, 2, "invalid format");
    mode = *f;
  }
  lua_settop(L, 2);
  if (c->peer_gone && c->in_off == c->in_len) return push_closed(L, c);
  if (lstate_slice_over(L, c)) return lstate_yield_slice(L, c, mode, read_k);
  return read_k(L, LUA_OK, mode);
}

/* Ends the response: 500 if the handler wrote nothing, else flush and close. */
static void end_response(struct lclient *cl) {
  struct conn *c = cl->c;
  cl->c = NULL;
  c->client = NULL;
  if (c->bytes_out == 0 && c->out_len == 0 && !c->peer_gone)
    conn_respond_error(c, 500, "the client was closed before a response was written");
  else
    conn_finish(c);
}

/* client:close(): ends the response now; the handler may go on with other work. */
static int client_close(lua_State *L) {
  struct lclient *cl = check_lclient(L);
  check_conn(L);
  end_response(cl);
  lua_pushboolean(L, 1);
  return 1;
}

/* __close and __gc: like close, but a no-op on a closed client. */
static int client_gc(lua_State *L) {
  struct lclient *cl = check_lclient(L);
  if (cl->c) end_response(cl);
  return 0;
}

/* client:closed(): true once the request ended or the web server went away. */
static int client_closed(lua_State *L) {
  struct lclient *cl = check_lclient(L);
  lua_pushboolean(L, cl->c == NULL || !conn_peer_alive(cl->c));
  return 1;
}

/* client:budget(seconds): the request may run that long from now (0: no limit), for streams
   such as Server-Sent Events that outlive --request-timeout. Returns the client. */
static int client_budget(lua_State *L) {
  struct conn *c = check_conn(L);
  lua_Number secs = luaL_checknumber(L, 2);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 2, "seconds out of range");
  conn_set_budget(c, (double)secs);
  lua_settop(L, 1);
  return 1;
}

static int client_tostring(lua_State *L) {
  struct lclient *cl = check_lclient(L);
  if (cl->c == NULL)
    lua_pushliteral(L, "scgi.client (closed)");
  else
    lua_pushfstring(L, "scgi.client (%s %s)", cl->c->method, cl->c->uri ? cl->c->uri : "-");
  return 1;
}

static const luaL_Reg methods[] = {
    {"write", client_write},
    {"read", client_read},
    {"flush", client_flush},
    {"close", client_close},
    {"closed", client_closed},
    {"budget", client_budget},
    {NULL, NULL},
};

/* __gc is part of the contract (a client collected while attached ends its response), though a
   request holds its client until it ends; bench/PROFILE.md measures what it costs (~6%). */
static const luaL_Reg metamethods[] = {
    {"__gc", client_gc},
    {"__close", client_gc},
    {"__tostring", client_tostring},
    {NULL, NULL},
};

/* Creates the client metatable in L's registry unless it is there already. */
void lclient_open(lua_State *L) {
  if (!luaL_newmetatable(L, CLIENT_MT)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &client_mt_key);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  if (luaL_loadbuffer(L, client_lua, sizeof client_lua - 1, "=scgi/client.lua") != LUA_OK)
    lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0); /* adds respond and the reason phrases */
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, CLIENT_MT);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

struct lclient *lclient_push(lua_State *L, struct conn *c) {
  struct lclient *cl = (struct lclient *)lua_newuserdatauv(L, sizeof *cl, 0);
  cl->c = c;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &client_mt_key); /* faster than a lookup by name */
  lua_setmetatable(L, -2);
  return cl;
}

void lclient_detach(struct lclient *cl) { cl->c = NULL; }
