/* addr.c: parsing address strings, creating listening sockets, replacing stale unix sockets. */
#include "addr.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BACKLOG_MAX 65535 /* the kernel takes at most somaxconn */

/* The port of a bound or named TCP address, or -1 for none. */
static long tcp_port(const char *a) {
  const char *colon = strrchr(a, ':');
  char *end;
  if (colon == NULL || strncmp(a, "fd:", 3) == 0 || strncmp(a, "unix:", 5) == 0 || a[0] == '/' ||
      a[0] == '.')
    return -1;
  long port = strtol(colon + 1, &end, 10);
  return end > colon + 1 && *end == '\0' ? port : -1;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a, int e) {
  char msg[256];
  long port = tcp_port(a);
  snprintf(msg, sizeof msg, fmt, a);
  if (e == EACCES && port > 0 && port < 1024) {
    snprintf(err, errlen,
             "%s: %s (port %ld is privileged: only root binds it; start scgi-lua as root, which "
             "binds it before --user drops privileges, or choose a port from 1024 up)",
             msg, strerror(e), port);
  } else if (e == EACCES || e == EPERM) {
    struct passwd *pw = getpwuid(geteuid());
    snprintf(err, errlen,
             "%s: %s (running as user %s, uid %ld: give that user write access to the "
             "directory, or choose another --socket)",
             msg, strerror(e), pw ? pw->pw_name : "?", (long)geteuid());
  } else if (e) {
    snprintf(err, errlen, "%s: %s", msg, strerror(e));
  } else {
    snprintf(err, errlen, "%s", msg);
  }
  return -1;
}

/* Creates the missing parent directories of path, like mkdir -p. */
static int make_parents(const char *path, char *err, size_t errlen) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  snprintf(dir, sizeof dir, "%s", path);
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
      return fail(err, errlen, "cannot create directory %s", dir, errno);
    *p = '/';
  }
  return 0;
}

/* 1 if a server listens on the unix socket at path, 0 if nobody does, -1 on error. The connect
   never blocks: a listener whose queue is full (a stopped server) says EAGAIN, and is live. */
static int unix_is_live(const struct sockaddr_un *sa) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
  int e = errno;
  if (r < 0 && e == EINPROGRESS) { /* not done by unix sockets today: wait a little */
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    socklen_t el = sizeof e;
    if (poll(&p, 1, 200) != 1)
      e = EAGAIN; /* no answer within the time: someone is there */
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
      e = errno;
    else if (e == 0)
      r = 0;
  }
  close(fd);
  if (r == 0 || e == EAGAIN) return 1;
  if (e == ECONNREFUSED || e == ENOENT) return 0;
  errno = e;
  return -1;
}

static int open_unix(struct listener *l, const char *path, int mode, char *err, size_t errlen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct stat st;
  int fd = -1;
  if (strlen(path) >= sizeof sa.sun_path)
    return fail(err, errlen, "socket path is too long: %s", path, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (make_parents(path, err, errlen) < 0) return -1;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return fail(err, errlen, "%s exists and is not a socket; not replacing it", path, 0);
    int live = unix_is_live(&sa);
    if (live == 1) return fail(err, errlen, "address in use: a server is answering on %s", path, 0);
    if (live < 0) return fail(err, errlen, "cannot check the existing socket %s", path, errno);
    if (unlink(path) < 0)
      return fail(err, errlen, "cannot remove the stale socket %s", path, errno);
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(err, errlen, "socket for %s", path, errno);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    fail(err, errlen, e == EADDRINUSE ? "address in use: %s" : "cannot bind %s", path, e);
    goto fail;
  }
  if (mode >= 0 && chmod(path, (mode_t)mode) < 0) {
    fail(err, errlen, "cannot set the mode of %s", path, errno);
    unlink(path);
    goto fail;
  }
  if (listen(fd, l->backlog) < 0) {
    fail(err, errlen, "cannot listen on %s", path, errno);
    unlink(path);
    goto fail;
  }
  l->fd = fd;
  l->is_unix = 1;
  snprintf(l->path, sizeof l->path, "%s", path);
  snprintf(l->name, sizeof l->name, "unix:%s", path);
  return 0;
fail:
  close(fd);
  return -1;
}

static void name_of(int fd, char *out, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
    snprintf(out, len, "?");
    return;
  }
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    port = ntohs(s4->sin_port);
    snprintf(out, len, "%s:%d", host, port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    port = ntohs(s6->sin6_port);
    snprintf(out, len, "[%s]:%d", host, port);
  } else if (ss.ss_family == AF_UNIX) {
    struct sockaddr_un *su = (struct sockaddr_un *)&ss;
    snprintf(out, len, "unix:%s", su->sun_path);
  }
}

static int open_tcp(struct listener *l, const char *host, const char *port, char *err,
                    size_t errlen) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  char what[300];
  int fd = -1, one = 1;
  snprintf(what, sizeof what, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
  int rc = getaddrinfo(*host && strcmp(host, "*") ? host : NULL, port, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve %s: %s", what, gai_strerror(rc));
    return -1;
  }
  fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    fail(err, errlen, "socket for %s", what, errno);
    goto fail;
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (res->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
    int e = errno;
    fail(err, errlen, e == EADDRINUSE ? "address in use: %s" : "cannot bind %s", what, e);
    goto fail;
  }
  if (listen(fd, l->backlog) < 0) {
    fail(err, errlen, "cannot listen on %s", what, errno);
    goto fail;
  }
  freeaddrinfo(res);
  l->fd = fd;
  name_of(fd, l->name, sizeof l->name);
  return 0;
fail:
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return -1;
}

static int open_fd(struct listener *l, const char *num, char *err, size_t errlen) {
  char *end;
  int accepting = 0;
  socklen_t sl = sizeof accepting;
  long fd = strtol(num, &end, 10);
  if (end == num || *end || fd < 0 || fd > 1 << 20)
    return fail(err, errlen, "fd:%s is not a descriptor number", num, 0);
  if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &sl) < 0)
    return fail(err, errlen, "fd:%s is not a socket", num, errno);
  if (!accepting) return fail(err, errlen, "fd:%s is not a listening socket", num, 0);
  int fl = fcntl((int)fd, F_GETFL);
  fcntl((int)fd, F_SETFL, fl | O_NONBLOCK);
  fcntl((int)fd, F_SETFD, FD_CLOEXEC);
  l->fd = (int)fd;
  char real[150];
  name_of(l->fd, real, sizeof real);
  snprintf(l->name, sizeof l->name, "fd:%ld (%s)", fd, real);
  l->is_unix = strncmp(real, "unix:", 5) == 0;
  return 0;
}

/* Whether port is a decimal number from 0 to 65535 (getaddrinfo would take 70000 as 4464). */
static int good_port(const char *port) {
  size_t n = strspn(port, "0123456789");
  return n > 0 && n <= 5 && port[n] == '\0' && strtol(port, NULL, 10) <= 65535;
}

int addr_check(const char *addr, char *why, size_t len) {
  const char *port;
  if (strncmp(addr, "unix:", 5) == 0 || addr[0] == '/' || addr[0] == '.') {
    const char *path = addr[0] == 'u' ? addr + 5 : addr;
    if (*path && strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path)) return 0;
    snprintf(why, len, *path ? "a unix socket path is at most %zu bytes" : "an empty path",
             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return -1;
  }
  if (strncmp(addr, "fd:", 3) == 0) {
    size_t n = strspn(addr + 3, "0123456789");
    if (n > 0 && n <= 7 && addr[3 + n] == '\0' && strtol(addr + 3, NULL, 10) <= 1 << 20) return 0;
    snprintf(why, len, "fd: takes a descriptor number");
    return -1;
  }
  if (addr[0] == '[') {
    const char *close = strchr(addr, ']');
    if (close == NULL || close[1] != ':' || (size_t)(close - addr) > 250) goto bad;
    port = close + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) > 250 || memchr(addr, ':', (size_t)(colon - addr)))
      goto bad;
    port = colon + 1;
  }
  if (good_port(port)) return 0;
  snprintf(why, len, "the port must be a number from 0 to 65535");
  return -1;
bad:
  snprintf(why, len, "expected /path, unix:/path, HOST:PORT, [V6]:PORT or fd:N");
  return -1;
}

int listener_open(struct listener *l, const char *addr, int mode, int backlog, char *err,
                  size_t errlen) {
  char why[128];
  if (addr_check(addr, why, sizeof why) < 0) {
    snprintf(err, errlen, "cannot use the address '%s' (%s)", addr, why);
    return -1;
  }
  char host[256];
  memset(l, 0, sizeof *l);
  l->fd = -1;
  l->backlog = backlog > 0 ? backlog : BACKLOG_MAX;
  if (strncmp(addr, "unix:", 5) == 0) return open_unix(l, addr + 5, mode, err, errlen);
  if (strncmp(addr, "fd:", 3) == 0) return open_fd(l, addr + 3, err, errlen);
  if (addr[0] == '/' || addr[0] == '.') return open_unix(l, addr, mode, err, errlen);
  if (addr[0] == '[') {
    const char *close = strchr(addr, ']');
    if (close == NULL || close[1] != ':' || close[2] == '\0' || (size_t)(close - addr) > 250)
      goto bad;
    snprintf(host, sizeof host, "%.*s", (int)(close - addr - 1), addr + 1);
    return open_tcp(l, host, close + 2, err, errlen);
  }
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon[1] == '\0' || (size_t)(colon - addr) > 250 ||
      memchr(addr, ':', (size_t)(colon - addr)))
    goto bad;
  snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
  return open_tcp(l, host, colon + 1, err, errlen);
bad:
  return fail(
      err, errlen,
      "cannot parse address '%s' (expected /path, unix:/path, HOST:PORT, [V6]:PORT or fd:N)", addr,
      0);
}

void listener_unlink(struct listener *l) {
  if (l->path[0] && unlink(l->path) < 0 && errno != ENOENT)
    slog_at(LOG_WARN,
            "cannot remove %s: %s (uid %ld cannot write its directory; a stale socket "
            "is replaced at the next start)",
            l->path, strerror(errno), (long)geteuid());
  l->path[0] = '\0';
}

void listener_close(struct listener *l) {
  listener_unlink(l);
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
}

int addr_connect_tcp(const char *addr) {
  char host[256], why[128];
  const char *port;
  if (addr_check(addr, why, sizeof why) < 0) goto bad;
  if (addr[0] == '[') {
    const char *close_br = strchr(addr, ']');
    if (close_br == NULL || close_br[1] != ':' || (size_t)(close_br - addr) > 250) goto bad;
    snprintf(host, sizeof host, "%.*s", (int)(close_br - addr - 1), addr + 1);
    port = close_br + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) > 250) goto bad;
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    port = colon + 1;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(host, port, &hints, &res) != 0) goto bad;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
    int e = errno;
    close(fd);
    fd = -1;
    errno = e;
  }
  freeaddrinfo(res);
  return fd;
bad:
  errno = EINVAL;
  return -1;
}
