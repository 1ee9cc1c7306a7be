/* resolver.c: getaddrinfo on a few threads of its own, so that a slow or failing DNS never holds
   a worker: a worker queues a job, goes on serving, and gets the addresses back through an
   ev_async on its loop. */
#include "resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESOLVER_THREADS_MAX 16 /* lookups that may wait on a slow DNS at once */

struct resolver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct resolve_job *head, *tail;
  int stop, nthreads, idle, queued;
  pthread_t threads[RESOLVER_THREADS_MAX];
};

static void fill(struct resolve_job *j, struct addrinfo *res) {
  j->naddrs = 0;
  for (struct addrinfo *a = res; a && j->naddrs < RESOLVE_MAX; a = a->ai_next) {
    if (a->ai_addrlen > sizeof j->addrs[0]) continue;
    memcpy(&j->addrs[j->naddrs], a->ai_addr, a->ai_addrlen);
    j->lens[j->naddrs++] = a->ai_addrlen;
  }
}

static int lookup(struct resolve_job *j, int flags) {
  struct addrinfo hints = {.ai_family = j->family,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV | flags},
                  *res = NULL;
  char port[16];
  snprintf(port, sizeof port, "%d", j->port);
  int rc = getaddrinfo(j->host, port, &hints, &res);
  if (rc == 0) fill(j, res);
  if (res) freeaddrinfo(res);
  j->err = rc == 0 && j->naddrs == 0 ? EAI_NONAME : rc;
  return rc;
}

static void deliver(struct resolve_job *j) {
  struct resolve_done *q = j->done_q;
  pthread_mutex_lock(&q->mu);
  j->next = q->head;
  q->head = j;
  pthread_mutex_unlock(&q->mu);
  ev_async_send(q->loop, &q->async);
}

static void *resolver_thread(void *arg) {
  struct resolver *rs = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&rs->mu);
  for (;;) {
    rs->idle++;
    while (!rs->stop && rs->head == NULL)
      pthread_cond_wait(&rs->cv, &rs->mu);
    rs->idle--;
    if (rs->head == NULL) break;
    struct resolve_job *j = rs->head;
    rs->head = j->next;
    rs->queued--;
    if (rs->head == NULL) rs->tail = NULL;
    pthread_mutex_unlock(&rs->mu);
    lookup(j, 0);
    deliver(j);
    pthread_mutex_lock(&rs->mu);
  }
  pthread_mutex_unlock(&rs->mu);
  return NULL;
}

struct resolver *resolver_start(int threads) {
  struct resolver *rs = calloc(1, sizeof *rs);
  if (rs == NULL) return NULL;
  pthread_mutex_init(&rs->mu, NULL);
  pthread_cond_init(&rs->cv, NULL);
  if (threads > RESOLVER_THREADS_MAX) threads = RESOLVER_THREADS_MAX;
  pthread_mutex_lock(&rs->mu);
  for (int i = 0; i < threads; i++)
    if (pthread_create(&rs->threads[rs->nthreads], NULL, resolver_thread, rs) == 0) rs->nthreads++;
  pthread_mutex_unlock(&rs->mu);
  if (rs->nthreads == 0) {
    free(rs);
    return NULL;
  }
  return rs;
}

/* Stops the threads once the queued lookups are done (their answers are delivered). */
void resolver_stop(struct resolver *rs) {
  if (rs == NULL) return;
  pthread_mutex_lock(&rs->mu);
  rs->stop = 1;
  pthread_cond_broadcast(&rs->cv);
  pthread_mutex_unlock(&rs->mu);
  for (int i = 0; i < rs->nthreads; i++)
    pthread_join(rs->threads[i], NULL);
  pthread_mutex_destroy(&rs->mu);
  pthread_cond_destroy(&rs->cv);
  free(rs);
}

static void on_done(struct ev_loop *loop, ev_async *a, int revents) {
  struct resolve_done *q =
      (struct resolve_done *)((char *)a - offsetof(struct resolve_done, async));
  (void)loop;
  (void)revents;
  pthread_mutex_lock(&q->mu);
  struct resolve_job *j = q->head;
  q->head = NULL;
  pthread_mutex_unlock(&q->mu);
  while (j) {
    struct resolve_job *next = j->next;
    if (j->cancelled)
      free(j);
    else
      j->done(j);
    j = next;
  }
}

void resolve_done_init(struct resolve_done *q, struct ev_loop *loop) {
  pthread_mutex_init(&q->mu, NULL);
  q->head = NULL;
  q->loop = loop;
  ev_async_init(&q->async, on_done);
  ev_async_start(loop, &q->async);
}

/* After the resolver stopped: answers still queued are dropped. */
void resolve_done_fini(struct resolve_done *q) {
  ev_async_stop(q->loop, &q->async);
  while (q->head) {
    struct resolve_job *j = q->head;
    q->head = j->next;
    free(j);
  }
  pthread_mutex_destroy(&q->mu);
}

int resolver_numeric(const char *host, int port, int family, struct resolve_job *j) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) return 0;
  if (host != j->host) snprintf(j->host, sizeof j->host, "%s", host);
  j->port = port;
  j->family = family;
  lookup(j, AI_NUMERICHOST);
  return 1;
}

int resolver_lookup(struct resolver *rs, struct resolve_job *j) {
  if (resolver_numeric(j->host, j->port, j->family, j)) return 1;
  if (rs == NULL) return -1;
  pthread_mutex_lock(&rs->mu);
  j->next = NULL;
  if (rs->tail)
    rs->tail->next = j;
  else
    rs->head = j;
  rs->tail = j;
  rs->queued++;
  if (rs->queued > rs->idle && rs->nthreads < RESOLVER_THREADS_MAX && /* all busy: one more */
      pthread_create(&rs->threads[rs->nthreads], NULL, resolver_thread, rs) == 0)
    rs->nthreads++;
  pthread_cond_signal(&rs->cv);
  pthread_mutex_unlock(&rs->mu);
  return 0;
}

const char *resolver_error(int err) {
  return err == EAI_NONAME || err == EAI_NODATA ? "host not found" : gai_strerror(err);
}
