/* floor.c: the least work an SCGI server can do (benchmark floor): accept, read, fixed reply. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char RESPONSE[] =
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "\r\nHello world\n";

#define HEAD_MAX 64          /* enough for "LEN:CONTENT_LENGTH\0<digits>\0" */
#define MAX_BLOCK 999999999u /* 9-digit netstring length at most */
#define MAX_BODY (1ull << 40)

enum { ST_READ, ST_WRITE };

struct conn {
  int fd;
  int state;
  int registered; /* added to this thread's epoll */
  unsigned head_len;
  unsigned woff;
  uint64_t got;
  uint64_t need; /* 0 until the prefix and CONTENT_LENGTH have been parsed */
  struct conn *prev, *next;
  char head[HEAD_MAX];
};

struct worker {
  pthread_t tid;
  int ep;
  struct conn live;       /* sentinel of the live list (freed on shutdown) */
  struct conn *free_list; /* recycled connection structs */
  char buf[16384];        /* scratch for reads; the body is discarded */
};

static int listen_fd = -1;
static int stop_fd = -1;
static char marker_listen, marker_stop;

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Returns the total request size, 0 if more bytes are needed, or -1 if malformed. */
static int64_t parse_head(const char *h, unsigned len) {
  unsigned i = 0;
  uint64_t block = 0, body = 0;
  for (; i < len && h[i] != ':'; i++) {
    if (h[i] < '0' || h[i] > '9' || i >= 9) return -1;
    block = block * 10 + (uint64_t)(h[i] - '0');
  }
  if (i == len) return len < HEAD_MAX ? 0 : -1;
  if (i == 0) return -1;
  unsigned prefix = i + 1;
  static const char name[] = "CONTENT_LENGTH"; /* with its NUL: 15 bytes */
  for (unsigned k = 0; k < sizeof name; k++) {
    if (prefix + k >= len) return len < HEAD_MAX ? 0 : -1;
    if (h[prefix + k] != name[k]) return -1;
  }
  unsigned v = prefix + (unsigned)sizeof name, j = v;
  for (; j < len && h[j] != '\0'; j++) {
    if (h[j] < '0' || h[j] > '9') return -1;
    body = body * 10 + (uint64_t)(h[j] - '0');
    if (body > MAX_BODY) return -1;
  }
  if (j == len) return len < HEAD_MAX ? 0 : -1;
  if (j == v || j - prefix >= block) return -1; /* empty value, or not inside the block */
  return (int64_t)(prefix + block + 1 + body);
}

static struct conn *conn_new(struct worker *w, int fd) {
  struct conn *c = w->free_list;
  if (c)
    w->free_list = c->next;
  else if (!(c = malloc(sizeof *c)))
    return NULL;
  c->fd = fd;
  c->state = ST_READ;
  c->registered = 0;
  c->head_len = 0;
  c->woff = 0;
  c->got = 0;
  c->need = 0;
  c->next = w->live.next;
  c->prev = &w->live;
  w->live.next->prev = c;
  w->live.next = c;
  return c;
}

static void conn_close(struct worker *w, struct conn *c) {
  close(c->fd); /* also removes it from the epoll set */
  c->prev->next = c->next;
  c->next->prev = c->prev;
  c->next = w->free_list;
  w->free_list = c;
}

static int conn_watch(struct worker *w, struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = c};
  int op = c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(w->ep, op, c->fd, &ev) < 0) return -1;
  c->registered = 1;
  return 0;
}

static void conn_write(struct worker *w, struct conn *c) {
  while (c->woff < sizeof RESPONSE - 1) {
    ssize_t n = send(c->fd, RESPONSE + c->woff, sizeof RESPONSE - 1 - c->woff, MSG_NOSIGNAL);
    if (n > 0) {
      c->woff += (unsigned)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c->state != ST_WRITE) {
        c->state = ST_WRITE;
        if (conn_watch(w, c, EPOLLOUT) < 0) break;
      }
      return;
    } else {
      break;
    }
  }
  conn_close(w, c);
}

static void conn_read(struct worker *w, struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, w->buf, sizeof w->buf, 0);
    if (n > 0) {
      c->got += (uint64_t)n;
      if (!c->need) {
        unsigned take = HEAD_MAX - c->head_len;
        if ((size_t)n < take) take = (unsigned)n;
        memcpy(c->head + c->head_len, w->buf, take);
        c->head_len += take;
        int64_t need = parse_head(c->head, c->head_len);
        if (need < 0) break;
        c->need = (uint64_t)need;
      }
      if (c->need && c->got >= c->need) {
        conn_write(w, c);
        return;
      }
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->registered && conn_watch(w, c, EPOLLIN) < 0) break;
      return;
    } else {
      break; /* EOF before the request was complete, or an error */
    }
  }
  conn_close(w, c);
}

static void accept_all(struct worker *w) {
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        static atomic_int warned;
        if (!atomic_exchange(&warned, 1)) {
          fprintf(stderr, "floor: accept: %s\n", strerror(errno));
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* do not spin at the fd limit */
      }
      return; /* EAGAIN: another worker may have taken it */
    }
    struct conn *c = conn_new(w, fd);
    if (!c) {
      close(fd);
      continue;
    }
    conn_read(w, c); /* the request is often there already */
  }
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(w->ep, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("floor: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &marker_stop) goto out;
      if (p == &marker_listen) {
        accept_all(w);
        continue;
      }
      struct conn *c = p;
      if (c->state == ST_WRITE)
        conn_write(w, c);
      else
        conn_read(w, c);
    }
  }
out:
  while (w->live.next != &w->live)
    conn_close(w, w->live.next);
  while (w->free_list) {
    struct conn *c = w->free_list;
    w->free_list = c->next;
    free(c);
  }
  return NULL;
}

/* Opens the listening socket; sets *unix_path when it made a file to unlink at exit. */
static int open_listener(const char *addr, const char **unix_path) {
  const char *colon = strrchr(addr, ':');
  int is_tcp = addr[0] == '[';
  if (!is_tcp && !strchr(addr, '/') && colon && colon[1]) {
    is_tcp = 1;
    for (const char *p = colon + 1; *p; p++)
      if (*p < '0' || *p > '9') is_tcp = 0;
  }
  if (!is_tcp) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(addr) >= sizeof sun.sun_path) {
      fprintf(stderr, "floor: socket path too long: %s\n", addr);
      exit(2);
    }
    strcpy(sun.sun_path, addr);
    struct stat st;
    if (lstat(addr, &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "floor: %s exists and is not a socket\n", addr);
        exit(1);
      }
      unlink(addr); /* stale socket from an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) die("bind");
    *unix_path = addr;
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
  }

  char host[256];
  const char *h = addr, *port = colon ? colon + 1 : "";
  size_t hl = (size_t)(colon ? colon - addr : 0);
  if (addr[0] == '[') {
    const char *end = strchr(addr, ']');
    if (!end || end[1] != ':') {
      fprintf(stderr, "floor: bad address %s (want [v6]:port)\n", addr);
      exit(2);
    }
    h = addr + 1;
    hl = (size_t)(end - h);
    port = end + 2;
  }
  if (hl >= sizeof host) {
    fprintf(stderr, "floor: host name too long\n");
    exit(2);
  }
  memcpy(host, h, hl);
  host[hl] = '\0';
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                  *res;
  int rc = getaddrinfo(hl ? host : NULL, port, &hints, &res);
  if (rc) {
    fprintf(stderr, "floor: %s: %s\n", addr, gai_strerror(rc));
    exit(1);
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) die("bind");
  freeaddrinfo(res);
  if (listen(fd, 4096) < 0) die("listen");
  return fd;
}

static void usage(void) {
  fprintf(stderr, "usage: floor -a ADDR [-w WORKERS]\n"
                  "  ADDR: a unix socket path, host:port or [v6]:port\n"
                  "  WORKERS: threads, each with its own epoll loop (default: online CPUs)\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *addr = NULL, *unix_path = NULL;
  long workers = sysconf(_SC_NPROCESSORS_ONLN);
  int opt;
  while ((opt = getopt(argc, argv, "a:w:h")) != -1) {
    if (opt == 'a') {
      addr = optarg;
    } else if (opt == 'w') {
      char *end;
      workers = strtol(optarg, &end, 10);
      if (*end || workers < 1 || workers > 1024) usage();
    } else {
      usage();
    }
  }
  if (!addr || optind != argc) usage();
  if (workers < 1) workers = 1;

  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by the workers; main waits for them */

  listen_fd = open_listener(addr, &unix_path);
  stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd < 0) die("eventfd");

  struct worker **ws = calloc((size_t)workers, sizeof *ws);
  if (!ws) die("calloc");
  for (long i = 0; i < workers; i++) {
    struct worker *w = calloc(1, sizeof *w);
    if (!w) die("calloc");
    w->live.next = w->live.prev = &w->live;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &marker_listen};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) die("epoll_ctl listener");
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &marker_stop};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, stop_fd, &ev) < 0) die("epoll_ctl eventfd");
    errno = pthread_create(&w->tid, NULL, worker_main, w);
    if (errno) die("pthread_create");
    ws[i] = w;
  }
  fprintf(stderr, "floor: listening on %s (%ld workers)\n", addr, workers);

  int sig = 0;
  sigwait(&sigs, &sig);
  uint64_t one = 1;
  if (write(stop_fd, &one, sizeof one) < 0) perror("floor: eventfd write");
  for (long i = 0; i < workers; i++) {
    pthread_join(ws[i]->tid, NULL);
    close(ws[i]->ep);
    free(ws[i]);
  }
  free(ws);
  close(stop_fd);
  close(listen_fd);
  if (unix_path) unlink(unix_path);
  fprintf(stderr, "floor: %s, exiting\n", strsignal(sig));
  return 0;
}
