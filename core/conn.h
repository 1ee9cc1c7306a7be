/* conn.h: one client connection: its descriptor, both buffers and every system call on it, its
   waits and its inactivity timer. No Lua here: the layer above (a request) is reached through
   struct conn_handler, set when the worker starts. Reads and writes answer CONN_DONE,
   CONN_WAIT (the socket would block: wait with conn_wait, then call again) or CONN_GONE. */
#ifndef SCGI_CONN_H
#define SCGI_CONN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "scgi_parse.h"
#include "stats.h"

struct worker;
struct conn;

enum conn_io { CONN_DONE = 0, CONN_WAIT = 1, CONN_GONE = -1 };

enum conn_state {
  CONN_HEAD,  /* reading the header block */
  CONN_OPEN,  /* a request owns it: reads and writes come from the handler */
  CONN_FLUSH, /* the response ended: writing what is buffered */
  CONN_LINGER /* sent: discarding the unread body until the peer closes */
};

struct conn_handler {
  /* A request was parsed; h points into the conn's buffer until the call returns. Returns 0, or
     -1 if no request could be started (the conn then answers 500 itself). */
  int (*start)(struct conn *c, const struct scgi_header *h, size_t n, int repeated);
  /* What the owner waited for with conn_wait is ready, or the peer went away, or --timeout. */
  void (*resume)(struct conn *c);
  /* The request's budget (the deadline) ran out while it owns the connection. */
  void (*expire)(struct conn *c);
};

struct conn {
  ev_io io;       /* first member: the watcher's address is the conn's */
  ev_timer timer; /* --timeout while waiting on the socket */
  struct worker *w;
  struct conn *prev, *next;
  void *owner; /* the request that reads and writes it (CONN_OPEN) */
  int fd;
  enum conn_state state;
  char *in; /* the header block, then body bytes */
  size_t in_cap, in_len, in_off;
  char *out;
  size_t out_cap, out_len, out_off;
  uint64_t content_length, body_recv, body_read;
  ev_timer budget;       /* --request-timeout: until the deadline, in every state */
  double deadline;       /* when the request's budget ends (monotonic), 0: never */
  int err;               /* why the peer is gone: an errno, ETIMEDOUT after --timeout */
  unsigned gone : 1;     /* the peer closed, reset or stalled: reads and writes answer GONE */
  unsigned waiting : 1;  /* the owner waits in conn_wait */
  unsigned repeated : 1; /* some header name came more than once */
  struct request_record rec;
};

void conn_accept(struct worker *w, int fd);

/* Appends s[*off..len) to the response, sending when the buffer fills (a large piece goes
   straight out); advances *off. */
int conn_write(struct conn *c, const char *s, size_t len, size_t *off);
int conn_flush(struct conn *c);
/* Makes at least want body bytes available (fewer only at the end of the body). */
int conn_fill(struct conn *c, size_t want);
/* The body bytes buffered now; conn_consume takes n of them. */
size_t conn_body(const struct conn *c, const char **p);
void conn_consume(struct conn *c, size_t n);
uint64_t conn_body_left(const struct conn *c);

/* Waits for the socket (EV_READ or EV_WRITE) with the inactivity timer; the handler's resume
   follows. conn_unwait stops waiting. */
void conn_wait(struct conn *c, int events);
void conn_unwait(struct conn *c);
/* Whether the peer is still there (checks the socket without reading). */
int conn_alive(struct conn *c);
/* Whether any byte of the response reached the socket, or is buffered. */
int conn_sent(const struct conn *c);
int conn_wrote(const struct conn *c);

/* The owner is done: send what is buffered, drain the unread body, close. */
void conn_end(struct conn *c);
/* The owner is done and the response is cut short: drop what is buffered, then as conn_end. */
void conn_cut(struct conn *c);
/* The server's own answer (a CGI error response with this status) instead of what is buffered;
   why, if not NULL, is logged. */
void conn_reply(struct conn *c, int status, const char *why);
/* The owner moves the deadline (0: none); the handler's expire follows when it passes. */
void conn_set_deadline(struct conn *c, double deadline);
/* The peer went away (or stalled): reads and writes answer CONN_GONE from now on. */
void conn_set_gone(struct conn *c, int err);

/* The worker is going away: every connection is closed now (owners must be gone). */
void conn_close_all(struct worker *w);
void conn_pool_free(struct worker *w);

/* The phrase of a status the server answers itself. */
const char *conn_reason(int status);

#endif
