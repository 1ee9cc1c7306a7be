/* listen.c: the server's listening socket: its address (the default /tmp/<uid>/scgi, systemd's
   socket, an inherited descriptor), binding it, its owner, and the pid file beside it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

/* The default socket lives in /tmp/<uid>, which anyone could have made first: it must be a real
   directory of ours that nobody else can write, or another user could replace the socket. */
static int check_default_dir(const char *path, char *err, size_t errlen) {
  char dir[256];
  struct stat st;
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  if (lstat(dir, &st) < 0) {
    if (errno != ENOENT) goto bad;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) goto bad;
    if (lstat(dir, &st) < 0) goto bad;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
    snprintf(err, errlen,
             "%s is not a directory of uid %ld that only it can write (owner uid %ld, mode %o); "
             "refusing to put the socket there: remove it, or choose a --socket",
             dir, (long)geteuid(), (long)st.st_uid, (unsigned)(st.st_mode & 07777));
    return -1;
  }
  return 0;
bad:
  snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
  return -1;
}

/* systemd socket activation: the socket is fd 3 when LISTEN_PID names this process. Taken
   for --socket systemd, and when no --socket is given. */
static const char *socket_address(struct server *s, char *buf, size_t len, char *err,
                                  size_t errlen) {
  const char *addr = s->cfg.socket, *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  int passed = pid && fds && atol(pid) == (long)getpid() && atoi(fds) >= 1;
  int want = addr && strcmp(addr, "systemd") == 0;
  if (want && !passed) {
    snprintf(err, errlen,
             "--socket systemd: no socket was passed (LISTEN_PID and LISTEN_FDS do "
             "not name this process; start it from a systemd .socket unit)");
    return NULL;
  }
  if (passed && (want || addr == NULL)) {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return "fd:3";
  }
  if (addr) return addr;
  addr = config_default_socket(buf, len);
  return check_default_dir(addr, err, errlen) < 0 ? NULL : addr;
}

enum { PID_NONE, PID_OPEN, PID_CREATED, PID_WRITTEN };

/* Opens the pid file as root may: never through a symbolic link, a regular file only, created
   0644 whatever the umask. Returns the descriptor, or -1 with a message in err. */
static int open_pid_file(const char *path, int *created, char *err, size_t errlen) {
  struct stat st;
  int fd = log_open_file(path, 0, created);
  if (fd < 0) {
    log_open_error(err, errlen, "cannot write the pid file", path, errno);
    return -1;
  }
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "cannot write the pid file %s: not a regular file", path);
    close(fd);
    return -1;
  }
  if (*created) fchmod(fd, 0644);
  return fd;
}

int listen_write_pid(struct server *s, char *err, size_t errlen) {
  char line[32];
  int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
  if (s->pid_state != PID_OPEN && s->pid_state != PID_CREATED) return 0;
  if (ftruncate(s->pid_fd, 0) < 0 || pwrite(s->pid_fd, line, (size_t)n, 0) != n) {
    snprintf(err, errlen, "cannot write the pid file %s: %s", s->cfg.pid_file, strerror(errno));
    return -1;
  }
  close(s->pid_fd);
  s->pid_state = PID_WRITTEN;
  return 0;
}

/* Whether the pid file holds this process's pid (another instance may have written it since). */
static int pid_file_is_ours(const char *path) {
  char buf[32], want[32];
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  snprintf(want, sizeof want, "%ld\n", (long)getpid());
  return strcmp(buf, want) == 0;
}

/* Removes the pid file if it is ours: written by us and still holding our pid, or made by us and
   never written. */
static void remove_pid_file(struct server *s) {
  int state = s->pid_state;
  if (state == PID_OPEN || state == PID_CREATED) close(s->pid_fd);
  s->pid_state = PID_NONE;
  if (state == PID_NONE || state == PID_OPEN) return;
  if (state == PID_WRITTEN && !pid_file_is_ours(s->cfg.pid_file)) return;
  if (unlink(s->cfg.pid_file) < 0 && errno != ENOENT)
    slog_at(LOG_WARN, "cannot remove %s: %s (uid %ld cannot write its directory)", s->cfg.pid_file,
            strerror(errno), (long)geteuid());
}

int listen_check_files(const struct scgi_config *cfg, char *err, size_t errlen) {
  int created;
  if (log_check(cfg->log_file, cfg->access_log, err, errlen) < 0) return -1;
  if (cfg->pid_file) {
    int fd = open_pid_file(cfg->pid_file, &created, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    if (created) unlink(cfg->pid_file);
  }
  return 0;
}

/* Binds the listener (or takes the one the supervisor passed), gives the socket its owner,
   opens the pid file (listen_write_pid writes it). */
int listen_open(struct server *s, char *err, size_t errlen) {
  char where[512];
  const char *addr = socket_address(s, where, sizeof where, err, errlen);
  if (addr == NULL ||
      listener_open(&s->lst, addr, s->cfg.socket_mode, s->cfg.backlog, err, errlen) < 0)
    return -1;
  if (s->cfg.socket_owner && !s->serving &&
      priv_chown_socket(&s->lst, s->cfg.socket_owner, err, errlen) < 0)
    return -1;
  if (s->cfg.pid_file && !s->serving) { /* opened as root now, written once all is bound */
    int created;
    if ((s->pid_fd = open_pid_file(s->cfg.pid_file, &created, err, errlen)) < 0) return -1;
    s->pid_state = created ? PID_CREATED : PID_OPEN;
  }
  atomic_store(&s->listen_fd, s->lst.fd);
  return 0;
}

/* Closes the listener (its socket file removed if still ours) and removes the pid file. */
void listen_close(struct server *s) {
  if (atomic_load(&s->listen_fd) < 0) s->lst.fd = -1; /* a worker or the acceptor closed it */
  listener_close(&s->lst);
  remove_pid_file(s);
}
