/* request.h: a request: the handler's task bound to a connection (or, for a timer, to none), the
   tasks it spawned, its budget and client, and the one policy for how it ends (which status,
   what is logged, what is cut). */
#ifndef SCGI_REQUEST_H
#define SCGI_REQUEST_H

#include <ev.h>
#include <lua.h>
#include <stdint.h>

#include "scgi_parse.h"
#include "task.h"

struct conn;
struct timer;

/* How a response ends. */
enum request_end {
  END_RETURNED, /* the handler (and every task it spawned) returned */
  END_CLOSED,   /* the handler closed the client (close, <close>, __gc) */
  END_ERROR,    /* the handler raised, or the guard stopped it */
  END_BUDGET,   /* --request-timeout (--timer-timeout) while it waited */
  END_STOPPED   /* the worker stops now (the grace period is over) */
};

/* The client object's box: the request, NULL once the response ended. */
struct client_box {
  const char *tag; /* lbind.h */
  struct request *r;
};

struct request {
  struct task main; /* the handler's task (a timer's function); first member */
  struct rt *rt;
  struct app *app;      /* holds a reference */
  struct conn *conn;    /* NULL once the response ended, and for a timer */
  struct timer *timer;  /* the timer this job runs, or NULL */
  struct task *spawned; /* tasks scgi.spawn started, still running */
  unsigned nspawned;
  struct task *conn_waiter;
  struct client_box *client;
  struct request *prev, *next; /* the worker's live requests */
  ev_timer budget;
  double start, deadline; /* monotonic; deadline 0: none */
  uint64_t id;
  char method[12];                /* REQUEST_METHOD (TIMER for a timer), for the logs */
  char *uri;                      /* REQUEST_URI (a timer's function) once there is no connection */
  const struct scgi_header *hdrs; /* while the handler starts */
  size_t nhdrs;
  unsigned repeated : 1;      /* some header name repeats: merge */
  unsigned cpu_killed : 1;    /* stopped by the CPU guard */
  unsigned budget_killed : 1; /* stopped by its budget */
  unsigned stopped_twice : 1; /* a clean-up was stopped too: abandoned */
  unsigned finished : 1;      /* the handler's task ended */
  unsigned returned : 1;      /* ... by returning: the response ends with the last task */
  unsigned premature : 1;     /* a timer run early: the worker stops, or the app was reloaded */
  unsigned slow_logged : 1;   /* --slow-log said it */
};

/* The request's REQUEST_URI (or "-"), for the logs. */
const char *request_uri(const struct request *r);
/* The handler ended the response itself (client:close, <close>, __gc). */
void request_close(struct request *r);
/* client:budget(seconds): the request may run that long from now; 0 lifts the limit. */
void request_set_budget(struct request *r, double seconds);
/* A task's coroutine ended (st and nres as lua_resume gave them). */
void request_task_ended(struct task *t, int st, int nres);

/* Between request.c and spawn.c. */
struct request *request_new(struct rt *rt, struct app *app, uint64_t id, double deadline);
void request_start(struct request *r, lua_CFunction body, int nargs);
void request_stop(struct request *r, enum request_end why);
/* Ends the task's hold on its coroutine; one that did not return cleanly is closed, under the
   guard, so that its to-be-closed variables run. */
void request_close_task(struct task *t, int reusable);
/* The log text of the error on top of co (message and traceback), on the app state's stack. */
const char *request_describe_error(struct request *r, lua_State *co, int st);
/* The request's last task ended. */
void request_tasks_done(struct request *r);
void request_maybe_free(struct request *r);

/* "request budget of N s spent (--request-timeout)", or --timer-timeout for a timer's run. */
const char *request_budget_text(const struct request *r, char *buf, size_t len);

#endif
