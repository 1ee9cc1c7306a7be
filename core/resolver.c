/* resolver.c: getaddrinfo on a few threads of its own, so that a slow or failing DNS never holds
   a worker: a worker asks, goes on serving, and gets the addresses back through an ev_async on
   its loop. One lookup (a job) serves every asker of its name at the time; an asker that goes
   away leaves it, and a queued job nobody waits for is dropped. Lock order: rs->mu, then a
   worker queue's mu. */
#include "resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESOLVER_THREADS_MAX 16 /* lookups someone waits for that may run at once */
#define RESOLVER_THREADS_ALL 64 /* threads in all, those in lookups nobody waits for included */

struct resolve_job {
  struct resolve_job *next; /* in the queue or the running list */
  struct resolve_ask *asks; /* who waits for it */
  char host[256];
  int family;
  int err, naddrs;
  struct sockaddr_storage addrs[RESOLVE_MAX];
  socklen_t lens[RESOLVE_MAX];
};

struct slot {
  pthread_t id;
  int busy; /* in a lookup (then detached at the stop, not joined) */
};

struct resolver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct resolve_job *head, *tail; /* queued */
  struct resolve_job *running;
  int stop, nthreads, idle, queued;
  int refs; /* the owner and every thread that has not ended: the last one frees */
  struct slot threads[RESOLVER_THREADS_ALL];
};

static void fill(struct resolve_job *j, struct addrinfo *res) {
  j->naddrs = 0;
  for (struct addrinfo *a = res; a && j->naddrs < RESOLVE_MAX; a = a->ai_next) {
    if (a->ai_addrlen > sizeof j->addrs[0]) continue;
    memcpy(&j->addrs[j->naddrs], a->ai_addr, a->ai_addrlen);
    j->lens[j->naddrs++] = a->ai_addrlen;
  }
}

static void lookup(struct resolve_job *j, int flags) {
  struct addrinfo hints = {.ai_family = j->family,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV | flags},
                  *res = NULL;
  int rc = getaddrinfo(j->host, "0", &hints, &res);
  if (rc == 0) fill(j, res);
  if (res) freeaddrinfo(res);
  j->err = rc == 0 && j->naddrs == 0 ? EAI_NONAME : rc;
}

/* Copies the job's answer into a, with a's port. */
static void answer(struct resolve_ask *a, const struct resolve_job *j) {
  a->err = j->err;
  a->naddrs = j->naddrs;
  for (int i = 0; i < j->naddrs; i++) {
    a->addrs[i] = j->addrs[i];
    a->lens[i] = j->lens[i];
    if (a->addrs[i].ss_family == AF_INET)
      ((struct sockaddr_in *)&a->addrs[i])->sin_port = htons((uint16_t)a->port);
    else if (a->addrs[i].ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&a->addrs[i])->sin6_port = htons((uint16_t)a->port);
  }
}

/* Hands the job's answer to everyone who still waits (rs->mu held). */
static void deliver(struct resolve_job *j) {
  struct resolve_ask *a = j->asks;
  j->asks = NULL;
  while (a) {
    struct resolve_ask *next = a->next;
    struct resolve_done *q = a->done_q;
    answer(a, j);
    a->job = NULL;
    pthread_mutex_lock(&q->mu);
    a->next = q->head;
    q->head = a;
    atomic_store(&a->state, RESOLVE_QUEUED);
    pthread_mutex_unlock(&q->mu);
    ev_async_send(q->loop, &q->async);
    a = next;
  }
}

static void unlink_job(struct resolve_job **list, struct resolve_job *j) {
  for (struct resolve_job **p = list; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      return;
    }
}

/* Drops one reference to rs (rs->mu held, and released here); the last one frees it. */
static void unref(struct resolver *rs) {
  int last = --rs->refs == 0;
  pthread_mutex_unlock(&rs->mu);
  if (!last) return;
  pthread_mutex_destroy(&rs->mu);
  pthread_cond_destroy(&rs->cv);
  free(rs);
}

static void *resolver_thread(void *arg) {
  struct resolver *rs = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&rs->mu);
  struct slot *me = NULL;
  for (int i = 0; i < rs->nthreads; i++)
    if (pthread_equal(rs->threads[i].id, pthread_self())) me = &rs->threads[i];
  for (;;) {
    rs->idle++;
    while (!rs->stop && rs->head == NULL)
      pthread_cond_wait(&rs->cv, &rs->mu);
    rs->idle--;
    if (rs->stop) break;
    struct resolve_job *j = rs->head;
    rs->head = j->next;
    rs->queued--;
    if (rs->head == NULL) rs->tail = NULL;
    j->next = rs->running;
    rs->running = j;
    if (me) me->busy = 1;
    pthread_mutex_unlock(&rs->mu);
    lookup(j, 0);
    pthread_mutex_lock(&rs->mu);
    if (me) me->busy = 0;
    unlink_job(&rs->running, j);
    if (!rs->stop) deliver(j); /* at the stop, every asker has gone */
    free(j);
  }
  unref(rs);
  return NULL;
}

/* Starts one more thread (rs->mu held): 0, or -1. */
static int add_thread(struct resolver *rs) {
  if (rs->nthreads >= RESOLVER_THREADS_ALL) return -1;
  struct slot *s = &rs->threads[rs->nthreads];
  s->busy = 0;
  if (pthread_create(&s->id, NULL, resolver_thread, rs) != 0) return -1;
  rs->nthreads++;
  rs->refs++;
  return 0;
}

struct resolver *resolver_start(int threads) {
  struct resolver *rs = calloc(1, sizeof *rs);
  if (rs == NULL) return NULL;
  pthread_mutex_init(&rs->mu, NULL);
  pthread_cond_init(&rs->cv, NULL);
  rs->refs = 1;
  if (threads > RESOLVER_THREADS_MAX) threads = RESOLVER_THREADS_MAX;
  pthread_mutex_lock(&rs->mu);
  for (int i = 0; i < threads; i++)
    add_thread(rs);
  int started = rs->nthreads;
  pthread_mutex_unlock(&rs->mu);
  if (started == 0) {
    resolver_stop(rs);
    return NULL;
  }
  return rs;
}

/* Lets go of the job's askers (none is left at the stop; should one be, it is told nothing). */
static void forget(struct resolve_job *j) {
  for (struct resolve_ask *a = j->asks; a; a = a->next)
    atomic_store(&a->state, RESOLVE_IDLE);
  j->asks = NULL;
}

void resolver_stop(struct resolver *rs) {
  if (rs == NULL) return;
  pthread_t join[RESOLVER_THREADS_ALL];
  int njoin = 0;
  pthread_mutex_lock(&rs->mu);
  rs->stop = 1;
  while (rs->head) { /* nobody waits for them: every worker has ended */
    struct resolve_job *j = rs->head;
    rs->head = j->next;
    forget(j);
    free(j);
  }
  rs->tail = NULL;
  rs->queued = 0;
  for (struct resolve_job *j = rs->running; j; j = j->next)
    forget(j);
  for (int i = 0; i < rs->nthreads; i++) {
    if (rs->threads[i].busy)
      pthread_detach(rs->threads[i].id); /* it ends when its lookup does */
    else
      join[njoin++] = rs->threads[i].id;
  }
  pthread_cond_broadcast(&rs->cv);
  pthread_mutex_unlock(&rs->mu);
  for (int i = 0; i < njoin; i++)
    pthread_join(join[i], NULL);
  pthread_mutex_lock(&rs->mu);
  unref(rs);
}

/* Takes the answered asks one at a time (a done call may cancel another ask of the queue). */
static void on_done(struct ev_loop *loop, ev_async *async, int revents) {
  struct resolve_done *q =
      (struct resolve_done *)((char *)async - offsetof(struct resolve_done, async));
  (void)loop;
  (void)revents;
  for (;;) {
    pthread_mutex_lock(&q->mu);
    struct resolve_ask *a = q->head;
    if (a) {
      q->head = a->next;
      a->next = NULL;
      atomic_store(&a->state, RESOLVE_DONE);
    }
    pthread_mutex_unlock(&q->mu);
    if (a == NULL) break;
    a->done(a);
  }
}

void resolve_done_init(struct resolve_done *q, struct ev_loop *loop) {
  pthread_mutex_init(&q->mu, NULL);
  q->head = NULL;
  q->loop = loop;
  ev_async_init(&q->async, on_done);
  ev_async_start(loop, &q->async);
}

/* After the worker's Lua states are closed: every ask of theirs was cancelled, none is queued. */
void resolve_done_fini(struct resolve_done *q) {
  ev_async_stop(q->loop, &q->async);
  pthread_mutex_destroy(&q->mu);
}

/* Answers a numeric host at once: 1, or 0 when host is a name. */
static int numeric(struct resolve_ask *a, const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) return 0;
  struct resolve_job j = {.family = a->family};
  snprintf(j.host, sizeof j.host, "%s", host);
  lookup(&j, AI_NUMERICHOST);
  answer(a, &j);
  atomic_store(&a->state, RESOLVE_DONE);
  return 1;
}

/* The job for host and family that is queued or running, or NULL (rs->mu held). */
static struct resolve_job *find(struct resolver *rs, const char *host, int family) {
  for (int pass = 0; pass < 2; pass++)
    for (struct resolve_job *j = pass ? rs->running : rs->head; j; j = j->next)
      if (j->family == family && strcmp(j->host, host) == 0) return j;
  return NULL;
}

/* Threads in a lookup that nobody waits for any more (rs->mu held). */
static int abandoned(const struct resolver *rs) {
  int n = 0;
  for (const struct resolve_job *j = rs->running; j; j = j->next)
    n += j->asks == NULL;
  return n;
}

int resolver_lookup(struct resolver *rs, struct resolve_ask *a, const char *host) {
  a->job = NULL;
  a->next = NULL;
  a->naddrs = 0;
  a->err = 0;
  if (numeric(a, host)) return 1;
  if (rs == NULL || strlen(host) >= sizeof rs->head->host) return -1;
  pthread_mutex_lock(&rs->mu);
  struct resolve_job *j = find(rs, host, a->family);
  if (j == NULL) {
    if (rs->stop || (j = calloc(1, sizeof *j)) == NULL) {
      pthread_mutex_unlock(&rs->mu);
      return -1;
    }
    strcpy(j->host, host);
    j->family = a->family;
    if (rs->tail)
      rs->tail->next = j;
    else
      rs->head = j;
    rs->tail = j;
    rs->queued++;
    /* every thread busy: one more, unless there are as many already, not counting those in a
       lookup nobody waits for (they do not hold the names asked now) */
    if (rs->queued > rs->idle && rs->nthreads - abandoned(rs) < RESOLVER_THREADS_MAX)
      add_thread(rs);
    pthread_cond_signal(&rs->cv);
  }
  a->rs = rs;
  a->job = j;
  a->next = j->asks;
  j->asks = a;
  atomic_store(&a->state, RESOLVE_WAITING);
  pthread_mutex_unlock(&rs->mu);
  return 0;
}

static void unlink_ask(struct resolve_ask **list, struct resolve_ask *a) {
  for (struct resolve_ask **p = list; *p; p = &(*p)->next)
    if (*p == a) {
      *p = a->next;
      return;
    }
}

/* Takes j out of the queue: 1, or 0 when it is not queued (it runs) (rs->mu held). */
static int dequeue(struct resolver *rs, struct resolve_job *j) {
  struct resolve_job *prev = NULL;
  for (struct resolve_job *q = rs->head; q; prev = q, q = q->next) {
    if (q != j) continue;
    if (prev)
      prev->next = j->next;
    else
      rs->head = j->next;
    if (rs->tail == j) rs->tail = prev;
    rs->queued--;
    return 1;
  }
  return 0;
}

void resolver_cancel(struct resolve_ask *a) {
  int st = atomic_load(&a->state);
  if (st == RESOLVE_WAITING || st == RESOLVE_QUEUED) {
    struct resolver *rs = a->rs;
    pthread_mutex_lock(&rs->mu);
    if (atomic_load(&a->state) == RESOLVE_WAITING) {
      struct resolve_job *j = a->job;
      unlink_ask(&j->asks, a);
      if (j->asks == NULL && dequeue(rs, j)) free(j); /* nobody waits for it any more */
    } else {
      struct resolve_done *q = a->done_q;
      pthread_mutex_lock(&q->mu);
      unlink_ask(&q->head, a);
      pthread_mutex_unlock(&q->mu);
    }
    pthread_mutex_unlock(&rs->mu);
  }
  a->job = NULL;
  a->next = NULL;
  atomic_store(&a->state, RESOLVE_IDLE);
}

int resolver_pending(const struct resolve_ask *a) {
  int st = atomic_load(&a->state);
  return st == RESOLVE_WAITING || st == RESOLVE_QUEUED;
}

const char *resolver_error(int err) {
  return err == EAI_NONAME || err == EAI_NODATA ? "host not found" : gai_strerror(err);
}
