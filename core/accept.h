/* accept.h: how clients reach the workers: direct (the default: the first workers wait for
   clients themselves, one woken per client; the acceptor helps out), the acceptor's handoff, or
   a listener every worker watches (shared). */
#ifndef SCGI_ACCEPT_H
#define SCGI_ACCEPT_H

struct server;
struct worker;

#define ACCEPT_QUEUE 1024 /* clients handed to a worker and not taken yet, at most */

/* In the main thread: start watching the listener (handoff), or not (shared); stop (SIGTERM):
   what is in the listen queue is handed on, then the listener is closed. */
void accept_start(struct server *s);
void accept_stop(struct server *s);

/* direct, from the watchdog thread: the acceptor takes over while every direct worker is in a
   long Lua resume (now: CLOCK_MONOTONIC in ns). */
void accept_watch(struct server *s, unsigned long long now);

/* In a worker: its side of accepting; stop serves what is queued. */
void accept_worker_init(struct worker *w);
int accept_worker_start(struct worker *w);
void accept_worker_stop(struct worker *w);
void accept_worker_close(struct worker *w);
/* The worker takes the clients handed to it. */
void accept_take(struct worker *w);

#endif
