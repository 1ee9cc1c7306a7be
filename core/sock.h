/* sock.h: outbound stream sockets (TCP and unix): connecting, sending, receiving into a buffer,
   and waiting with a timeout. No Lua here. Calls answer SOCK_DONE, SOCK_WAIT (wait with
   sock_wait, then call again) or SOCK_GONE (err tells why; 0 is an orderly close). */
#ifndef SCGI_SOCK_H
#define SCGI_SOCK_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>

enum sock_io { SOCK_DONE = 0, SOCK_WAIT = 1, SOCK_GONE = -1 };

struct sock {
  ev_io io; /* first member */
  ev_timer timer;
  struct ev_loop *loop;
  void (*ready)(struct sock *s); /* the wait ended (timed_out tells how) */
  void *owner;
  int fd;
  int err;
  int timed_out;
  double timeout; /* seconds per wait; < 0: none */
  char *buf;      /* received bytes not taken yet: buf[off..len) */
  size_t cap, len, off;
  void *ssl; /* TLS (tls.c), or NULL */
  int want;  /* what a TLS call waits for: EV_READ or EV_WRITE */
  unsigned long long bytes_in, bytes_out;
  char tls_error[160];
};

void sock_init(struct sock *s, void (*ready)(struct sock *s), void *owner);
/* Starts connecting to sa; SOCK_WAIT while it is in progress (then sock_connected). */
int sock_connect(struct sock *s, const struct sockaddr *sa, socklen_t len);
int sock_connected(struct sock *s);
int sock_send(struct sock *s, const char *p, size_t n, size_t *sent);
/* Reads what the socket has into the buffer: SOCK_DONE when something came. */
int sock_fill(struct sock *s);
void sock_take(struct sock *s, size_t n);
void sock_wait(struct sock *s, struct ev_loop *loop, int events);
/* Waits for nothing on the socket but the timeout (something else wakes the owner first). */
void sock_wait_timer(struct sock *s, struct ev_loop *loop, double timeout);
void sock_unwait(struct sock *s);
void sock_close(struct sock *s);
int sock_set_option(struct sock *s, const char *name, int on);
int sock_shutdown(struct sock *s, const char *how);
/* The peer's address (to connect to it anew): 0, or -1. */
int sock_peer(const struct sock *s, struct sockaddr_storage *ss, socklen_t *len);
/* A unix socket address; -1 when the path is too long. */
int sock_unix_addr(const char *path, struct sockaddr_storage *ss, socklen_t *len);
/* The message for a failure: the TLS reason when there is one, else err's. */
const char *sock_error(const struct sock *s);
/* Whether bytes wait to be taken (buffered here or by TLS). */
int sock_dirty(const struct sock *s);
/* Takes over fd (and TLS state ssl): a connection from the pool. */
void sock_adopt(struct sock *s, int fd, void *ssl);
/* Gives up fd and TLS state (to the pool): the sock is closed, the connection is not. */
void sock_release(struct sock *s, int *fd, void **ssl);

#endif
