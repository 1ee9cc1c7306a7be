/* hammer.c: N connections, each sending one SCGI GET to a unix socket as soon as the last was
   answered, for S seconds; counts the answers and the connections that failed (refused, reset,
   closed unanswered). For spec/upgrade_load_spec.lua: every connection the kernel accepted must be
   answered across an upgrade. Usage: hammer PATH URI CONNECTIONS SECONDS */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un addr = {.sun_family = AF_UNIX};
static char req[512];
static size_t req_len;
static double until;
static atomic_ulong answered, refused, reset, unanswered, bad;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One request on a new connection. */
static void one(void) {
  char buf[4096];
  size_t len = 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("socket");
    exit(2);
  }
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    atomic_fetch_add(&refused, 1); /* not accepted by the kernel: not a loss */
    close(fd);
    usleep(1000);
    return;
  }
  if (send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len) {
    if (getenv("HAMMER_VERBOSE")) fprintf(stderr, "%.6f send: %s\n", now(), strerror(errno));
    atomic_fetch_add(&reset, 1);
    close(fd);
    return;
  }
  for (;;) {
    ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (getenv("HAMMER_VERBOSE"))
        fprintf(stderr, "%.6f recv after %zu bytes: %s\n", now(), len, strerror(errno));
      atomic_fetch_add(&reset, 1);
      close(fd);
      return;
    }
    if (n == 0 || len + (size_t)n == sizeof buf - 1) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  if (len == 0)
    atomic_fetch_add(&unanswered, 1);
  else if (strncmp(buf, "Status: 200", 11) != 0)
    atomic_fetch_add(&bad, 1);
  else
    atomic_fetch_add(&answered, 1);
}

static void *loop(void *arg) {
  (void)arg;
  while (now() < until)
    one();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: hammer PATH URI CONNECTIONS SECONDS\n");
    return 2;
  }
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[1]);
  char head[400];
  int hl = snprintf(head, sizeof head,
                    "CONTENT_LENGTH%c0%cSCGI%c1%cREQUEST_METHOD%cGET%cREQUEST_URI%c%s%c", 0, 0, 0,
                    0, 0, 0, 0, argv[2], 0);
  req_len = (size_t)snprintf(req, sizeof req, "%d:", hl);
  memcpy(req + req_len, head, (size_t)hl);
  req_len += (size_t)hl;
  req[req_len++] = ',';
  int n = atoi(argv[3]);
  until = now() + atof(argv[4]);
  pthread_t th[64];
  for (int i = 0; i < n && i < 64; i++)
    pthread_create(&th[i], NULL, loop, NULL);
  for (int i = 0; i < n && i < 64; i++)
    pthread_join(th[i], NULL);
  printf("answered %lu refused %lu reset %lu unanswered %lu bad %lu\n", atomic_load(&answered),
         atomic_load(&refused), atomic_load(&reset), atomic_load(&unanswered), atomic_load(&bad));
  return 0;
}
