/* log.c: the error log and the access log. Workers append lines to a buffer under a mutex and a
   log thread writes them out, so a slow disk never holds a request; when the buffer is full,
   lines are dropped and counted rather than waited for. SIGUSR1 reopens the files. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF (1024 * 1024)

struct stream {
  const char *path; /* NULL: stderr (or stdout for "-" access logs) */
  int fd, std;
  char *buf;
  size_t len;
  unsigned long dropped;
};

struct logger {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int level, stop, reopen, timestamps;
  struct stream err, access;
  _Atomic uint64_t *reopen_failures; /* a figure, or NULL */
};

/* The logger of the server running on this thread (set by each of its threads). */
static __thread struct logger *tls_logger;
static __thread int tls_level = LOG_INFO;

static const char *level_names[] = {"error", "warn", "info", "debug"};

int log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

int log_open_file(const char *path, int flags, int *created) {
  int base = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | flags;
  int fd = open(path, base | O_CREAT | O_EXCL, 0644);
  *created = fd >= 0;
  if (fd < 0 && errno == EEXIST) fd = open(path, base);
  return fd;
}

void log_open_error(char *err, size_t errlen, const char *verb, const char *path, int e) {
  if (e == ELOOP)
    snprintf(err, errlen,
             "%s %s: it is a symbolic link (not followed, as root could be led to write "
             "anywhere: name the file itself)",
             verb, path);
  else
    snprintf(err, errlen, "%s %s: %s", verb, path, strerror(e));
}

/* Opens the stream's file (or takes the standard descriptor); -1 with errno set. */
static int open_stream(struct stream *s, int std_fd) {
  int created;
  if (s->path == NULL || strcmp(s->path, "-") == 0) {
    s->fd = std_fd;
    s->std = 1;
    return 0;
  }
  int fd = log_open_file(s->path, O_APPEND, &created);
  if (fd < 0) return -1;
  s->fd = fd;
  s->std = 0;
  return 0;
}

int log_check(const char *error_path, const char *access_path, char *err, size_t errlen) {
  const char *paths[2] = {error_path, access_path};
  const char *verbs[2] = {"cannot open the log file", "cannot open the access log"};
  for (int i = 0; i < 2; i++) {
    int created, fd;
    if (paths[i] == NULL || strcmp(paths[i], "-") == 0) continue;
    if ((fd = log_open_file(paths[i], O_APPEND, &created)) < 0) {
      log_open_error(err, errlen, verbs[i], paths[i], errno);
      return -1;
    }
    close(fd);
    if (created) unlink(paths[i]); /* a check leaves nothing behind */
  }
  return 0;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* SIGUSR1: the log thread opens the stream's path anew; when it cannot (the directory or the new
   file is not the dropped user's, a link), it says so in the old file and on stderr, counts it
   and writes on into the old file. */
static void reopen_stream(struct logger *lg, struct stream *s) {
  int old = s->fd;
  if (s->std || s->path == NULL) return;
  if (open_stream(s, old) == 0) {
    close(old);
    return;
  }
  char msg[700], why[512];
  size_t n = lg->timestamps ? log_time(msg, 40) : 0;
  if (n) msg[n++] = ' ';
  log_open_error(why, sizeof why,
                 s == &lg->err ? "cannot reopen the log file" : "cannot reopen the access log",
                 s->path, errno);
  n += (size_t)snprintf(msg + n, sizeof msg - n,
                        "scgi-lua: %s (running as uid %ld: the directory must let this user "
                        "create the file, or the new file must exist and be writable by it); "
                        "still writing to the old file\n",
                        why, (long)geteuid());
  if (n >= sizeof msg) n = sizeof msg - 1;
  s->fd = old;
  write_all(lg->err.fd, msg, n);
  if (!lg->err.std) write_all(2, msg, n);
  pthread_mutex_lock(&lg->mu); /* the figures' table is not freed while we hold it */
  if (lg->reopen_failures) atomic_fetch_add_explicit(lg->reopen_failures, 1, memory_order_relaxed);
  pthread_mutex_unlock(&lg->mu);
}

/* Takes the stream's buffered bytes (called with the mutex held); the caller writes them. */
static char *take(struct stream *s, size_t *n, char *spare) {
  char *full = s->buf;
  *n = s->len;
  s->buf = spare;
  s->len = 0;
  return full;
}

static void *log_thread(void *arg) {
  struct logger *lg = arg;
  char *spare_e = malloc(LOG_BUF), *spare_a = malloc(LOG_BUF);
  pthread_mutex_lock(&lg->mu);
  for (;;) {
    while (!lg->stop && !lg->reopen && lg->err.len == 0 && lg->access.len == 0)
      pthread_cond_wait(&lg->cv, &lg->mu);
    int stop = lg->stop, reopen = lg->reopen;
    unsigned long dropped = lg->err.dropped + lg->access.dropped;
    size_t ne, na;
    lg->err.dropped = lg->access.dropped = 0;
    lg->reopen = 0;
    char *e = take(&lg->err, &ne, spare_e), *a = take(&lg->access, &na, spare_a);
    pthread_mutex_unlock(&lg->mu);
    write_all(lg->err.fd, e, ne);
    write_all(lg->access.fd, a, na);
    if (dropped) {
      char msg[128];
      int n = snprintf(msg, sizeof msg, "scgi-lua: %lu log lines dropped: the log is too slow\n",
                       dropped);
      write_all(lg->err.fd, msg, (size_t)n);
    }
    if (reopen) {
      reopen_stream(lg, &lg->err);
      reopen_stream(lg, &lg->access);
    }
    spare_e = e;
    spare_a = a;
    pthread_mutex_lock(&lg->mu);
    if (stop && lg->err.len == 0 && lg->access.len == 0) break;
  }
  pthread_mutex_unlock(&lg->mu);
  free(spare_e);
  free(spare_a);
  return NULL;
}

struct logger *log_start(const char *error_path, const char *access_path, int level, char *err,
                         size_t errlen) {
  struct logger *lg = calloc(1, sizeof *lg);
  if (lg == NULL) goto nomem;
  lg->level = level;
  lg->err.path = error_path;
  lg->access.path = access_path;
  lg->access.fd = -1;
  lg->timestamps = error_path != NULL;
  lg->err.buf = malloc(LOG_BUF);
  lg->access.buf = malloc(LOG_BUF);
  if (lg->err.buf == NULL || lg->access.buf == NULL) goto nomem;
  if (open_stream(&lg->err, 2) < 0) {
    log_open_error(err, errlen, "cannot open the log file", error_path, errno);
    goto fail;
  }
  if (access_path && open_stream(&lg->access, 1) < 0) {
    log_open_error(err, errlen, "cannot open the access log", access_path, errno);
    goto fail;
  }
  pthread_mutex_init(&lg->mu, NULL);
  pthread_cond_init(&lg->cv, NULL);
  if (pthread_create(&lg->thread, NULL, log_thread, lg) != 0) goto nomem;
  log_attach(lg);
  return lg;
nomem:
  snprintf(err, errlen, "cannot start the log: out of memory");
fail:
  if (lg) {
    if (lg->err.fd > 2) close(lg->err.fd);
    free(lg->err.buf);
    free(lg->access.buf);
    free(lg);
  }
  return NULL;
}

void log_attach(struct logger *lg) {
  tls_logger = lg;
  tls_level = lg ? lg->level : LOG_INFO;
}

void log_count_reopen_failures(struct logger *lg, _Atomic uint64_t *counter) {
  if (lg == NULL) return;
  pthread_mutex_lock(&lg->mu);
  lg->reopen_failures = counter;
  pthread_mutex_unlock(&lg->mu);
}

void log_reopen(struct logger *lg) {
  pthread_mutex_lock(&lg->mu);
  lg->reopen = 1;
  pthread_cond_signal(&lg->cv);
  pthread_mutex_unlock(&lg->mu);
}

void log_stop(struct logger *lg) {
  if (lg == NULL) return;
  pthread_mutex_lock(&lg->mu);
  lg->stop = 1;
  pthread_cond_signal(&lg->cv);
  pthread_mutex_unlock(&lg->mu);
  pthread_join(lg->thread, NULL);
  if (!lg->err.std) close(lg->err.fd);
  if (lg->access.fd >= 0 && !lg->access.std) close(lg->access.fd);
  pthread_mutex_destroy(&lg->mu);
  pthread_cond_destroy(&lg->cv);
  free(lg->err.buf);
  free(lg->access.buf);
  if (tls_logger == lg) tls_logger = NULL;
  free(lg);
}

static void append(struct logger *lg, struct stream *s, const char *line, size_t n) {
  pthread_mutex_lock(&lg->mu);
  if (s->len + n <= LOG_BUF) {
    memcpy(s->buf + s->len, line, n);
    s->len += n;
    pthread_cond_signal(&lg->cv);
  } else {
    s->dropped++;
  }
  pthread_mutex_unlock(&lg->mu);
}

int log_enabled(int level) { return level <= tls_level; }

int log_access_enabled(void) { return tls_logger && tls_logger->access.fd >= 0; }

void log_access(const char *line, size_t n) {
  if (log_access_enabled()) append(tls_logger, &tls_logger->access, line, n);
}

/* Formats the current time as 2026-11-26T05:30:00.123Z into buf (at least 32 bytes). */
size_t log_time(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return n;
}

void slog_at(int level, const char *fmt, ...) {
  char line[8192];
  va_list ap;
  size_t n = 0;
  if (level > tls_level) return;
  if (tls_logger && tls_logger->timestamps) {
    n = log_time(line, 40);
    line[n++] = ' ';
  }
  n += (size_t)snprintf(line + n, sizeof line - n, "scgi-lua: ");
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  n += m < 0 ? 0 : (size_t)m;
  if (n > sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  if (tls_logger)
    append(tls_logger, &tls_logger->err, line, n);
  else
    write_all(2, line, n);
}
