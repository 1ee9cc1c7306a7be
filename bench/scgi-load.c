/* scgi-load.c: a closed-loop SCGI load generator (epoll, one connection per request). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram in nanoseconds, HDR-like: values below 2^SUB_BITS are exact, above that
   each power of two is split into 2^SUB_BITS buckets (relative error under 0.8%). */
#define SUB_BITS 7
#define SUB_COUNT (1u << SUB_BITS)
#define MAX_EXP 42 /* 2^42 ns is over an hour: anything longer is clamped */
#define NBUCKETS (SUB_COUNT + (MAX_EXP - SUB_BITS + 1) * SUB_COUNT)

#define HEAD_KEEP 16        /* response bytes kept for the status check */
#define RETRY_NS 1000000ull /* back-off after a failed connect: 1 ms */

enum phase { PH_WARMUP, PH_MEASURE, PH_STOP };
enum slot_state { S_IDLE, S_CONNECTING, S_WRITING, S_READING, S_RETRY };
enum err_kind { E_CONNECT, E_WRITE, E_READ, E_TIMEOUT, E_KINDS };
static const char *const err_names[E_KINDS] = {"connect", "write", "read", "timeout"};

struct slot {
  int fd;
  int state;
  int counted; /* started during the measurement phase */
  size_t woff; /* request bytes sent */
  size_t rlen; /* response bytes read */
  uint64_t t0; /* connect start (or retry time in S_RETRY) */
  char head[HEAD_KEEP];
};

struct stats {
  uint64_t hist[NBUCKETS];
  uint64_t count, non2xx, errors[E_KINDS], connects;
  uint64_t sum_ns, min_ns, max_ns, last_ns;
};

struct thread {
  pthread_t tid;
  int ep;
  int nslots;
  int active;   /* slots not idle */
  int retrying; /* slots waiting in S_RETRY */
  struct slot *slots;
  struct stats st;
  char buf[65536]; /* read scratch: the response body is discarded */
};

/* Configuration and shared run state. */
static struct sockaddr_storage peer;
static socklen_t peer_len;
static int peer_family;
static char *request;
static size_t request_len;
static uint64_t timeout_ns = 10ull * 1000000000ull;
static long long total_requests = -1; /* -n; -1 when running for a duration */
static atomic_int phase;
static atomic_llong tickets; /* requests handed out during measurement (-n mode) */
static atomic_int threads_done;
static uint64_t measure_start_ns;
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t v) {
  if (v < SUB_COUNT) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v);
  if (e > MAX_EXP) return NBUCKETS - 1;
  unsigned shift = e - SUB_BITS;
  return SUB_COUNT + shift * SUB_COUNT + (unsigned)((v >> shift) - SUB_COUNT);
}

/* The midpoint of a bucket's range. */
static double bucket_value(unsigned i) {
  if (i < SUB_COUNT) return i;
  unsigned shift = (i - SUB_COUNT) / SUB_COUNT, sub = (i - SUB_COUNT) % SUB_COUNT;
  uint64_t lo = (uint64_t)(SUB_COUNT + sub) << shift;
  return (double)lo + ((double)(1ull << shift) - 1) / 2;
}

static void record(struct stats *st, uint64_t ns) {
  st->hist[bucket_of(ns)]++;
  st->count++;
  st->sum_ns += ns;
  if (ns > st->max_ns) st->max_ns = ns;
  if (!st->min_ns || ns < st->min_ns) st->min_ns = ns;
}

/* Value at quantile q (0..1), in ns; exact min/max clamp the bucket estimate. */
static double quantile(const struct stats *st, double q) {
  if (!st->count) return 0;
  double want = q * (double)st->count;
  uint64_t rank = (uint64_t)want, seen = 0;
  if ((double)rank < want) rank++; /* ceil */
  if (rank < 1) rank = 1;
  for (unsigned i = 0; i < NBUCKETS; i++) {
    seen += st->hist[i];
    if (seen >= rank) {
      double v = bucket_value(i);
      if (v > (double)st->max_ns) v = (double)st->max_ns;
      if (v < (double)st->min_ns) v = (double)st->min_ns;
      return v;
    }
  }
  return (double)st->max_ns;
}

static void slot_reset(struct thread *t, struct slot *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->state = S_IDLE;
  t->active--;
}

/* Parks an idle slot until the next scan at or after time at. */
static void slot_defer(struct thread *t, struct slot *s, uint64_t at) {
  s->state = S_RETRY;
  s->t0 = at;
  t->active++;
  t->retrying++;
}

static void slot_fail(struct thread *t, struct slot *s, int kind, uint64_t now) {
  if (s->counted && atomic_load_explicit(&phase, memory_order_relaxed) == PH_MEASURE)
    t->st.errors[kind]++;
  slot_reset(t, s);
  if (kind == E_CONNECT) slot_defer(t, s, now + RETRY_NS); /* do not spin on a refusing server */
}

static void slot_write(struct thread *t, struct slot *s) {
  while (s->woff < request_len) {
    ssize_t n = send(s->fd, request + s->woff, request_len - s->woff, MSG_NOSIGNAL);
    if (n > 0) {
      s->woff += (size_t)n;
      if (s->state == S_CONNECTING) { /* connected, since something was sent */
        s->state = S_WRITING;
        t->st.connects++;
      }
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      slot_fail(t, s, s->state == S_CONNECTING ? E_CONNECT : E_WRITE, now_ns());
      return;
    }
  }
  s->state = S_READING;
}

/* Starts the slot's next request, unless the run is over or out of tickets. */
static void slot_start(struct thread *t, struct slot *s) {
  int ph = atomic_load_explicit(&phase, memory_order_acquire);
  if (ph == PH_STOP) return;
  s->counted = ph == PH_MEASURE;
  if (s->counted && total_requests >= 0 &&
      atomic_fetch_add_explicit(&tickets, 1, memory_order_relaxed) >= total_requests)
    return;
  t->active++;
  s->t0 = now_ns();
  s->woff = 0;
  s->rlen = 0;
  s->state = S_CONNECTING;
  s->fd = socket(peer_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    slot_fail(t, s, E_CONNECT, s->t0);
    return;
  }
  uint32_t events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  if (connect(s->fd, (struct sockaddr *)&peer, peer_len) == 0) {
    s->state = S_WRITING;
    t->st.connects++;
    slot_write(t, s); /* unix sockets connect at once: send before registering */
    if (s->state == S_IDLE) slot_defer(t, s, s->t0); /* write error: restart from the loop */
    if (s->state == S_RETRY) return;
    if (s->state == S_READING) events &= ~(uint32_t)EPOLLOUT;
  } else if (errno != EINPROGRESS) {
    slot_fail(t, s, E_CONNECT, s->t0);
    return;
  }
  struct epoll_event ev = {.events = events, .data.ptr = s};
  if (epoll_ctl(t->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
    perror("scgi-load: epoll_ctl");
    slot_fail(t, s, E_CONNECT, s->t0);
  }
}

static void slot_done(struct thread *t, struct slot *s) {
  uint64_t end = now_ns();
  if (s->counted && atomic_load_explicit(&phase, memory_order_relaxed) == PH_MEASURE) {
    if (s->rlen == 0) {
      t->st.errors[E_READ]++; /* closed without a response */
    } else {
      record(&t->st, end - s->t0);
      t->st.last_ns = end;
      size_t k = s->rlen < HEAD_KEEP ? s->rlen : HEAD_KEEP;
      if (k < 9 || memcmp(s->head, "Status: 2", 9) != 0) t->st.non2xx++;
    }
  }
  slot_reset(t, s);
  slot_start(t, s);
}

/* Reads until EOF. When the event already reported the peer's shutdown (EPOLLRDHUP), all the
   response is queued, so a short read is the end: that saves the recv that would return 0. */
static void slot_read(struct thread *t, struct slot *s, uint32_t events) {
  int eof_known = (events & (EPOLLRDHUP | EPOLLERR)) == EPOLLRDHUP;
  for (;;) {
    ssize_t n = recv(s->fd, t->buf, sizeof t->buf, 0);
    if (n > 0) {
      if (s->rlen < HEAD_KEEP) {
        size_t k = HEAD_KEEP - s->rlen;
        if ((size_t)n < k) k = (size_t)n;
        memcpy(s->head + s->rlen, t->buf, k);
      }
      s->rlen += (size_t)n;
      if (eof_known && (size_t)n < sizeof t->buf) {
        slot_done(t, s);
        return;
      }
    } else if (n == 0) {
      slot_done(t, s);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      slot_fail(t, s, E_READ, now_ns());
      slot_start(t, s);
      return;
    }
  }
}

static void *thread_main(void *arg) {
  struct thread *t = arg;
  struct epoll_event evs[512];
  for (int i = 0; i < t->nslots; i++)
    slot_start(t, &t->slots[i]);
  uint64_t next_scan = now_ns() + 50000000ull;
  for (;;) {
    int ph = atomic_load_explicit(&phase, memory_order_acquire);
    if (ph == PH_STOP || (ph == PH_MEASURE && t->active == 0)) break;
    int n = epoll_wait(t->ep, evs, 512, t->retrying ? 1 : 10);
    if (n < 0 && errno != EINTR) {
      perror("scgi-load: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      struct slot *s = evs[i].data.ptr;
      uint32_t e = evs[i].events;
      if (s->state == S_CONNECTING || s->state == S_WRITING) {
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) slot_write(t, s);
        if (s->state == S_IDLE || s->state == S_RETRY) {
          if (s->state == S_IDLE) slot_start(t, s);
          continue;
        }
      }
      if (s->state == S_READING && (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
        slot_read(t, s, e);
    }
    uint64_t now = now_ns();
    if (now >= next_scan) { /* retries and timeouts; cheap enough at this rate */
      next_scan = now + 1000000ull;
      for (int i = 0; i < t->nslots; i++) {
        struct slot *s = &t->slots[i];
        if (s->state == S_RETRY && now >= s->t0) {
          s->state = S_IDLE;
          t->active--;
          t->retrying--;
          slot_start(t, s);
        } else if (s->state != S_IDLE && s->state != S_RETRY && now - s->t0 > timeout_ns) {
          slot_fail(t, s, E_TIMEOUT, now);
          slot_start(t, s);
        }
      }
    }
  }
  for (int i = 0; i < t->nslots; i++)
    if (t->slots[i].fd >= 0) close(t->slots[i].fd);
  atomic_fetch_add(&threads_done, 1);
  return NULL;
}

static void add_header(char *hdr, size_t *len, const char *name, const char *value) {
  size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
  memcpy(hdr + *len, name, nl);
  memcpy(hdr + *len + nl, value, vl);
  *len += nl + vl;
}

static const char *request_uri = "/"; /* -u */

/* Builds the request once: an nginx-like header set, then the body. */
static void build_request(long long body) {
  char hdr[2048], cl[32];
  size_t hl = 0;
  snprintf(cl, sizeof cl, "%lld", body);
  add_header(hdr, &hl, "CONTENT_LENGTH", cl);
  add_header(hdr, &hl, "SCGI", "1");
  add_header(hdr, &hl, "REQUEST_METHOD", body ? "POST" : "GET");
  add_header(hdr, &hl, "REQUEST_URI", request_uri);
  add_header(hdr, &hl, "QUERY_STRING", "");
  add_header(hdr, &hl, "CONTENT_TYPE", body ? "application/octet-stream" : "");
  add_header(hdr, &hl, "DOCUMENT_URI", request_uri);
  add_header(hdr, &hl, "SERVER_PROTOCOL", "HTTP/1.1");
  add_header(hdr, &hl, "REMOTE_ADDR", "127.0.0.1");
  add_header(hdr, &hl, "REMOTE_PORT", "54321");
  add_header(hdr, &hl, "SERVER_PORT", "80");
  add_header(hdr, &hl, "SERVER_NAME", "localhost");
  add_header(hdr, &hl, "HTTP_HOST", "localhost");
  add_header(hdr, &hl, "HTTP_USER_AGENT", "scgi-load/1.0");
  add_header(hdr, &hl, "HTTP_ACCEPT", "*/*");
  char prefix[24];
  int pl = snprintf(prefix, sizeof prefix, "%zu:", hl);
  request_len = (size_t)pl + hl + 1 + (size_t)body;
  request = malloc(request_len);
  if (!request) {
    perror("scgi-load: malloc");
    exit(2);
  }
  memcpy(request, prefix, (size_t)pl);
  memcpy(request + pl, hdr, hl);
  request[(size_t)pl + hl] = ',';
  memset(request + pl + hl + 1, 'x', (size_t)body);
}

/* Fills peer from a unix path, host:port or [v6]:port. */
static void parse_addr(const char *addr) {
  const char *colon = strrchr(addr, ':');
  int is_tcp = addr[0] == '[';
  if (!is_tcp && !strchr(addr, '/') && colon && colon[1]) {
    is_tcp = 1;
    for (const char *p = colon + 1; *p; p++)
      if (*p < '0' || *p > '9') is_tcp = 0;
  }
  if (!is_tcp) {
    struct sockaddr_un *sun = (struct sockaddr_un *)&peer;
    if (strlen(addr) >= sizeof sun->sun_path) {
      fprintf(stderr, "scgi-load: socket path too long: %s\n", addr);
      exit(2);
    }
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, addr);
    peer_len = sizeof *sun;
    peer_family = AF_UNIX;
    return;
  }
  char host[256];
  const char *h = addr, *port = colon + 1;
  size_t hl = (size_t)(colon - addr);
  if (addr[0] == '[') {
    const char *end = strchr(addr, ']');
    if (!end || end[1] != ':') {
      fprintf(stderr, "scgi-load: bad address %s (want [v6]:port)\n", addr);
      exit(2);
    }
    h = addr + 1;
    hl = (size_t)(end - h);
    port = end + 2;
  }
  if (hl >= sizeof host) {
    fprintf(stderr, "scgi-load: host name too long\n");
    exit(2);
  }
  memcpy(host, h, hl);
  host[hl] = '\0';
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV},
                  *res;
  int rc = getaddrinfo(hl ? host : "127.0.0.1", port, &hints, &res);
  if (rc) {
    fprintf(stderr, "scgi-load: %s: %s\n", addr, gai_strerror(rc));
    exit(2);
  }
  memcpy(&peer, res->ai_addr, res->ai_addrlen);
  peer_len = res->ai_addrlen;
  peer_family = res->ai_family;
  freeaddrinfo(res);
}

/* One blocking request before the run: fails fast when nothing listens. Returns 0 on success,
   1 when the response is not 2xx, -1 when it could not connect. */
static int probe(void) {
  int fd = socket(peer_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&peer, peer_len) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  size_t off = 0;
  while (off < request_len) {
    ssize_t n = send(fd, request + off, request_len - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += (size_t)n;
  }
  char buf[4096], head[HEAD_KEEP];
  size_t got = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (got < HEAD_KEEP)
      memcpy(head + got, buf, (size_t)n < HEAD_KEEP - got ? (size_t)n : HEAD_KEEP - got);
    got += (size_t)n;
  }
  close(fd);
  return got >= 9 && memcmp(head, "Status: 2", 9) == 0 ? 0 : 1;
}

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: scgi-load -a ADDR [-c CONNS] [-t THREADS] [-d SECONDS | -n REQUESTS]\n"
          "                 [-w WARMUP_SECONDS] [-b BODY_BYTES] [-T TIMEOUT_SECONDS] [-u URI]\n"
          "  ADDR: a unix socket path, host:port or [v6]:port\n"
          "  defaults: -c 1 -t 1 -d 5 -w 1 -b 0 -T 10 -u /\n");
  exit(2);
}

static double parse_num(const char *s, double lo, double hi) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) usage();
  return v;
}

int main(int argc, char **argv) {
  const char *addr = NULL;
  int conns = 1, nthreads = 1;
  double duration = -1, warmup = 1;
  long long body = 0;
  int opt;
  while ((opt = getopt(argc, argv, "a:c:t:d:n:w:b:T:u:h")) != -1) {
    switch (opt) {
    case 'a': addr = optarg; break;
    case 'c': conns = (int)parse_num(optarg, 1, 1000000); break;
    case 't': nthreads = (int)parse_num(optarg, 1, 4096); break;
    case 'd': duration = parse_num(optarg, 0.001, 1e7); break;
    case 'n': total_requests = (long long)parse_num(optarg, 1, 1e15); break;
    case 'w': warmup = parse_num(optarg, 0, 1e7); break;
    case 'b': body = (long long)parse_num(optarg, 0, 1ull << 32); break;
    case 'T': timeout_ns = (uint64_t)(parse_num(optarg, 0.001, 1e6) * 1e9); break;
    case 'u':
      if (optarg[0] != '/' || strlen(optarg) > 1000) usage();
      request_uri = optarg;
      break;
    default: usage();
    }
  }
  if (!addr || optind != argc) usage();
  if (duration < 0 && total_requests < 0) duration = 5;
  if (nthreads > conns) nthreads = conns;

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  parse_addr(addr);
  build_request(body);
  int pr = probe();
  if (pr < 0) {
    fprintf(stderr, "scgi-load: cannot connect to %s: %s\n", addr, strerror(errno));
    free(request);
    return 1;
  }
  if (pr > 0) fprintf(stderr, "scgi-load: warning: probe request got a non-2xx response\n");

  printf("scgi-load: %s, %d connection%s, %d thread%s, ", addr, conns, conns == 1 ? "" : "s",
         nthreads, nthreads == 1 ? "" : "s");
  if (total_requests >= 0)
    printf("%lld requests", total_requests);
  else
    printf("%.3g s", duration);
  printf(" after %.3g s warm-up, body %lld bytes\n", warmup, body);
  fflush(stdout);

  atomic_store(&phase, warmup > 0 ? PH_WARMUP : PH_MEASURE);
  uint64_t start = now_ns();
  measure_start_ns = start;
  struct thread *ts = calloc((size_t)nthreads, sizeof *ts);
  struct slot *slots = calloc((size_t)conns, sizeof *slots);
  if (!ts || !slots) {
    perror("scgi-load: calloc");
    return 2;
  }
  for (int i = 0; i < conns; i++)
    slots[i].fd = -1;
  for (int i = 0, used = 0; i < nthreads; i++) {
    struct thread *t = &ts[i];
    t->nslots = conns / nthreads + (i < conns % nthreads);
    t->slots = slots + used;
    used += t->nslots;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep < 0) {
      perror("scgi-load: epoll_create1");
      return 2;
    }
    errno = pthread_create(&t->tid, NULL, thread_main, t);
    if (errno) {
      perror("scgi-load: pthread_create");
      return 2;
    }
  }

  /* The main thread keeps the clock: warm-up, then the measurement window. */
  uint64_t warm_end = start + (uint64_t)(warmup * 1e9);
  uint64_t stop_at = duration > 0 ? warm_end + (uint64_t)(duration * 1e9) : UINT64_MAX;
  struct timespec tick = {0, 1000000};
  while (atomic_load(&phase) == PH_WARMUP && !interrupted && now_ns() < warm_end)
    nanosleep(&tick, NULL);
  if (atomic_load(&phase) == PH_WARMUP) {
    measure_start_ns = now_ns();
    atomic_store(&phase, PH_MEASURE);
  }
  uint64_t end;
  for (;;) {
    end = now_ns();
    if (interrupted || end >= stop_at || atomic_load(&threads_done) == nthreads) break;
    nanosleep(&tick, NULL);
  }
  atomic_store(&phase, PH_STOP);

  struct stats *all = calloc(1, sizeof *all);
  if (!all) return 2;
  uint64_t last = 0;
  for (int i = 0; i < nthreads; i++) {
    struct thread *t = &ts[i];
    pthread_join(t->tid, NULL);
    close(t->ep);
    for (unsigned b = 0; b < NBUCKETS; b++)
      all->hist[b] += t->st.hist[b];
    all->count += t->st.count;
    all->non2xx += t->st.non2xx;
    all->connects += t->st.connects;
    all->sum_ns += t->st.sum_ns;
    for (int k = 0; k < E_KINDS; k++)
      all->errors[k] += t->st.errors[k];
    if (t->st.max_ns > all->max_ns) all->max_ns = t->st.max_ns;
    if (t->st.min_ns && (!all->min_ns || t->st.min_ns < all->min_ns)) all->min_ns = t->st.min_ns;
    if (t->st.last_ns > last) last = t->st.last_ns;
  }
  /* With -n the run ends at the last response; with -d at the end of the window. */
  if (total_requests >= 0 && end < stop_at && !interrupted && last > measure_start_ns) end = last;
  double secs = (double)(end - measure_start_ns) / 1e9;
  uint64_t errors = 0;
  for (int k = 0; k < E_KINDS; k++)
    errors += all->errors[k];
  double rps = secs > 0 ? (double)all->count / secs : 0;
  double ms = 1e-6;

  printf("  requests  %llu in %.3f s, %.1f req/s%s\n", (unsigned long long)all->count, secs, rps,
         interrupted ? " (interrupted)" : "");
  printf("  latency   min %.3f  mean %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n",
         (double)all->min_ns * ms, all->count ? (double)all->sum_ns / (double)all->count * ms : 0,
         quantile(all, 0.5) * ms, quantile(all, 0.9) * ms, quantile(all, 0.99) * ms,
         quantile(all, 0.999) * ms, (double)all->max_ns * ms);
  printf("  errors    %llu (", (unsigned long long)errors);
  for (int k = 0; k < E_KINDS; k++)
    printf("%s%s %llu", k ? ", " : "", err_names[k], (unsigned long long)all->errors[k]);
  printf("), non-2xx responses %llu\n", (unsigned long long)all->non2xx);
  printf("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%llu "
         "errors=%llu non2xx=%llu\n",
         rps, quantile(all, 0.5) * ms, quantile(all, 0.9) * ms, quantile(all, 0.99) * ms,
         (double)all->max_ns * ms, (unsigned long long)all->count, (unsigned long long)errors,
         (unsigned long long)all->non2xx);

  int connected = all->connects > 0 || all->count > 0;
  free(all);
  free(slots);
  free(ts);
  free(request);
  if (!connected) {
    fprintf(stderr, "scgi-load: no connection succeeded\n");
    return 1;
  }
  return 0;
}
