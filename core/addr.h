/* addr.h: socket address strings, binding and listening, the stale-socket check. */
#ifndef SCGI_ADDR_H
#define SCGI_ADDR_H

#include <stddef.h>

struct listener {
  int fd;
  int is_unix;
  int backlog;
  char path[108]; /* the unix socket path we created, removed on exit; "" otherwise */
  char name[200]; /* the real address, for the log line: unix:/path, 127.0.0.1:4000, [::1]:4000 */
};

/* Opens a listening socket for ADDR (/path, unix:/path, HOST:PORT, [V6]:PORT, fd:N) with
   close-on-exec and non-blocking set. MODE >= 0 sets a unix socket's permissions; BACKLOG is the
   listen queue's length (0: the kernel's maximum). Returns 0, or -1 with a one-line message. */
int listener_open(struct listener *l, const char *addr, int mode, int backlog, char *err,
                  size_t errlen);

/* Checks ADDR's syntax as listener_open takes it (a port from 0 to 65535, fd:N a number, a unix
   path that fits); 0, or -1 with the reason in why. */
int addr_check(const char *addr, char *why, size_t len);

/* Closes the socket and removes the unix socket file if it is still ours. */
void listener_close(struct listener *l);

/* Removes the unix socket file now (new clients are refused), keeping the descriptor open. */
void listener_unlink(struct listener *l);

/* A blocking TCP connection to HOST:PORT or [V6]:PORT; -1 with errno set on failure. */
int addr_connect_tcp(const char *addr);

#endif
