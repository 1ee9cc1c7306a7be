/* clock.h: the monotonic clock, in seconds and in nanoseconds. */
#ifndef SCGI_CLOCK_H
#define SCGI_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline double clock_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
