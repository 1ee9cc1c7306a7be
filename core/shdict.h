/* shdict.h: dictionaries shared by every worker: C memory outside all Lua states, one mutex
   each, a byte cap with least-recently-used eviction, expiry times. No Lua here. */
#ifndef SCGI_SHDICT_H
#define SCGI_SHDICT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum shtype { SH_NONE, SH_STRING, SH_INTEGER, SH_NUMBER, SH_BOOLEAN };

struct shvalue {
  enum shtype type;
  const char *s; /* SH_STRING: points into the caller's memory (set) or a copy (get) */
  size_t len;
  int64_t i; /* SH_INTEGER, SH_BOOLEAN */
  double d;  /* SH_NUMBER */
};

struct shentry;

struct shdict {
  char name[64];
  pthread_mutex_t mu;
  size_t cap, used, count, nbuckets;
  struct shentry **buckets;
  struct shentry *newest, *oldest; /* the LRU list */
};

enum {
  SH_OK = 0,
  SH_NOT_FOUND = -1,
  SH_EXISTS = -2,
  SH_TOO_LARGE = -3,
  SH_NOT_NUMBER = -4,
  SH_NO_MEMORY = -5
};

/* Parses "NAME:SIZE" (SIZE with an optional K, M or G suffix). */
int shdict_parse(const char *spec, char *name, size_t namelen, size_t *size);

struct shdict *shdict_new(const char *name, size_t cap);
void shdict_free(struct shdict *d);

/* The calls below take the dictionary's mutex. now is monotonic seconds; ttl <= 0: no expiry.
   get copies a string value into a malloc'd buffer the caller frees (*out->s). */
int shdict_get(struct shdict *d, const char *key, size_t klen, double now, struct shvalue *out);
/* mode: 0 set, 1 add (fails with SH_EXISTS), 2 replace (fails with SH_NOT_FOUND).
 *evicted tells how many entries were evicted to make room. */
int shdict_set(struct shdict *d, const char *key, size_t klen, const struct shvalue *v, double ttl,
               double now, int mode, int *evicted);
int shdict_incr(struct shdict *d, const char *key, size_t klen, const struct shvalue *by,
                const struct shvalue *init, double now, struct shvalue *out);
int shdict_delete(struct shdict *d, const char *key, size_t klen);
/* Copies up to max live keys (0: all), newest first, into one malloc'd block: for each, a
   size_t length then the bytes. Returns the block (NULL when empty or out of memory). */
char *shdict_keys(struct shdict *d, double now, size_t max, size_t *n);
void shdict_flush(struct shdict *d);
void shdict_usage(struct shdict *d, size_t *used, size_t *cap, size_t *count);

#endif
