/* log.c: one line per event on stderr, written with a single write so threads do not interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

void slog(const char *fmt, ...) {
  char line[8192];
  va_list ap;
  int n = snprintf(line, sizeof line, "scgi-lua: ");
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  for (size_t off = 0; off < len;) {
    ssize_t w = write(2, line + off, len - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
}
