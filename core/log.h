/* log.h: the error log (levels, stderr or a file) and the access log, written by a log thread. */
#ifndef SCGI_LOG_H
#define SCGI_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct logger;

/* Opens the logs (NULL error_path: stderr; access_path "-": stdout, NULL: none) and starts the
   log thread; attaches the calling thread. Returns NULL with a message in err. */
struct logger *log_start(const char *error_path, const char *access_path, int level, char *err,
                         size_t errlen);
/* Makes the calling thread log through lg. */
void log_attach(struct logger *lg);
/* Reopens the files (after logrotate moved them); a file that cannot be reopened is said on the
   old one and on stderr, counted in *counter (log_count_reopen_failures), and written on. */
void log_reopen(struct logger *lg);
void log_count_reopen_failures(struct logger *lg, _Atomic uint64_t *counter);
/* Opens the log files as log_start would, with its messages, and closes them (a file made only
   for the check is removed): --check. 0, or -1 with a message in err. */
int log_check(const char *error_path, const char *access_path, char *err, size_t errlen);
/* Opens path for writing as root may: never through a symbolic link (errno ELOOP), created with
   mode 0644 (less the umask) when missing (*created set), with extra flags (O_APPEND) added;
   close-on-exec. -1 with errno set. */
int log_open_file(const char *path, int flags, int *created);
/* "VERB PATH: why" into err, for a failed log_open_file (a link is named as such). */
void log_open_error(char *err, size_t errlen, const char *verb, const char *path, int e);
/* Writes what is buffered and stops the log thread. */
void log_stop(struct logger *lg);

int log_parse_level(const char *name);
int log_enabled(int level);
int log_access_enabled(void);
void log_access(const char *line, size_t n);
size_t log_time(char *buf, size_t len);

/* One line on the error log, prefixed "scgi-lua: ", if level is enabled. */
void slog_at(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define slog(...) slog_at(LOG_INFO, __VA_ARGS__)

#endif
