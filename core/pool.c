/* pool.c: idle outbound connections kept for reuse, watched while they wait: readable means the
   peer closed (or sent what nobody asked for), so the connection is closed, never handed out. */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sock.h"
#include "tls.h"

struct pooled {
  ev_io io; /* first member */
  ev_timer idle;
  struct sock_pool *pool;
  struct pooled *prev, *next;
  void *ssl;
  unsigned reused;
  char key[]; /* NUL-terminated */
};

static void drop(struct pooled *e, int close_it) {
  struct sock_pool *p = e->pool;
  ev_io_stop(p->loop, &e->io);
  ev_timer_stop(p->loop, &e->idle);
  if (e->prev)
    e->prev->next = e->next;
  else
    p->all = e->next;
  if (e->next) e->next->prev = e->prev;
  p->n--;
  if (close_it) {
    struct sock s = {.fd = e->io.fd, .ssl = e->ssl};
    tls_close(&s);
    close(e->io.fd);
  }
  free(e);
}

static void on_readable(struct ev_loop *loop, ev_io *io, int revents) {
  (void)loop;
  (void)revents;
  drop((struct pooled *)io, 1);
}

static void on_idle(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)revents;
  drop((struct pooled *)((char *)t - offsetof(struct pooled, idle)), 1);
}

void pool_init(struct sock_pool *p, struct ev_loop *loop) {
  memset(p, 0, sizeof *p);
  p->loop = loop;
}

void pool_fini(struct sock_pool *p) {
  while (p->all)
    drop(p->all, 1);
}

int pool_put(struct sock_pool *p, const char *key, int fd, void *ssl, unsigned reused,
             double max_idle, unsigned size) {
  unsigned same = 0;
  if (p->n >= POOL_MAX) return -1;
  for (struct pooled *e = p->all; e; e = e->next)
    if (strcmp(e->key, key) == 0) same++;
  if (same >= size) return -1;
  size_t klen = strlen(key);
  struct pooled *e = calloc(1, sizeof *e + klen + 1);
  if (e == NULL) return -1;
  e->pool = p;
  e->ssl = ssl;
  e->reused = reused;
  memcpy(e->key, key, klen + 1);
  ev_io_init(&e->io, on_readable, fd, EV_READ);
  ev_io_start(p->loop, &e->io);
  ev_init(&e->idle, on_idle);
  if (max_idle > 0) {
    ev_timer_set(&e->idle, max_idle, 0.);
    ev_timer_start(p->loop, &e->idle);
  }
  e->next = p->all;
  if (p->all) p->all->prev = e;
  p->all = e;
  p->n++;
  return 0;
}

/* The newest idle connection under key that fits (the likeliest to be alive); one that turned
   readable without the loop noticing yet is closed and the next tried. */
int pool_get(struct sock_pool *p, const char *key, int (*fits)(void *ssl, const void *arg),
             const void *arg, int *fd, void **ssl, unsigned *reused) {
  struct pooled *e = p->all;
  while (e) {
    struct pooled *next = e->next;
    if (strcmp(e->key, key) == 0 && (fits == NULL || (e->ssl && fits(e->ssl, arg)))) {
      char c;
      ssize_t n = recv(e->io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        *fd = e->io.fd;
        *ssl = e->ssl;
        *reused = e->reused;
        drop(e, 0);
        p->hits++;
        return 1;
      }
      drop(e, 1); /* closed by the peer, or unexpected bytes */
    }
    e = next;
  }
  p->misses++;
  return 0;
}
