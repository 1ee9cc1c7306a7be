/* request.h: a request: the handler's task bound to a connection, its budget and client, and the
   one policy for how it ends (which status, what is logged, what is cut). */
#ifndef SCGI_REQUEST_H
#define SCGI_REQUEST_H

#include <ev.h>
#include <lua.h>
#include <stdint.h>

#include "scgi_parse.h"
#include "task.h"

struct conn;

/* How a response ends. */
enum request_end {
  END_RETURNED, /* the handler returned */
  END_CLOSED,   /* the handler closed the client (close, <close>, __gc) */
  END_ERROR,    /* the handler raised, or the guard stopped it */
  END_BUDGET,   /* --request-timeout while it waited */
  END_STOPPED   /* the worker stops now (the grace period is over) */
};

/* The client object's box: the request, NULL once the response ended. */
struct client_box {
  struct request *r;
};

struct request {
  struct task main; /* the handler's task; first member */
  struct rt *rt;
  struct app *app;   /* holds a reference */
  struct conn *conn; /* NULL once the response ended */
  struct task *conn_waiter;
  struct client_box *client;
  struct request *prev, *next; /* the worker's live requests */
  ev_timer budget;
  double start, deadline; /* monotonic; deadline 0: none */
  uint64_t id;
  char method[12]; /* REQUEST_METHOD, and REQUEST_URI once the connection is gone */
  char *uri;
  const struct scgi_header *hdrs; /* while the handler starts */
  size_t nhdrs;
  unsigned repeated : 1;      /* some header name repeats: merge */
  unsigned cpu_killed : 1;    /* stopped by the CPU guard */
  unsigned budget_killed : 1; /* stopped by --request-timeout */
  unsigned stopped_twice : 1; /* its clean-up was stopped too: abandoned */
  unsigned finished : 1;      /* the handler's task ended */
};

/* The request's REQUEST_URI (or "-"), for the logs. */
const char *request_uri(const struct request *r);
/* The handler ended the response itself (client:close, <close>, __gc). */
void request_close(struct request *r);
/* client:budget(seconds): the request may run that long from now; 0 lifts the limit. */
void request_set_budget(struct request *r, double seconds);
/* A task's coroutine ended (st and nres as lua_resume gave them). */
void request_task_ended(struct task *t, int st, int nres);

#endif
