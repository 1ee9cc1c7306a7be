/* shdict.c: the shared dictionaries (see shdict.h): a chained hash table and an LRU list. */
#include "shdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shentry {
  struct shentry *hnext;         /* hash chain */
  struct shentry *newer, *older; /* LRU list */
  uint32_t hash;
  enum shtype type;
  double expires; /* 0: never */
  int64_t i;
  double d;
  size_t klen, vlen;
  char data[]; /* key, then a string value */
};

static size_t entry_size(size_t klen, size_t vlen) { return sizeof(struct shentry) + klen + vlen; }

static uint32_t hash_of(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h;
}

int shdict_parse(const char *spec, char *name, size_t namelen, size_t *size) {
  const char *colon = strchr(spec, ':');
  char *end;
  if (colon == NULL || colon == spec || (size_t)(colon - spec) >= namelen) return -1;
  for (const char *p = spec; p < colon; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_'))
      return -1;
  double v = strtod(colon + 1, &end);
  if (end == colon + 1 || v <= 0) return -1;
  if (*end == 'k' || *end == 'K')
    v *= 1024, end++;
  else if (*end == 'm' || *end == 'M')
    v *= 1048576, end++;
  else if (*end == 'g' || *end == 'G')
    v *= 1073741824.0, end++;
  if (*end == 'b' || *end == 'B') end++;
  if (*end || v < 4096 || v > 1e12) return -1;
  snprintf(name, namelen, "%.*s", (int)(colon - spec), spec);
  *size = (size_t)v;
  return 0;
}

struct shdict *shdict_new(const char *name, size_t cap) {
  struct shdict *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->nbuckets = 64;
  d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
  if (d->buckets == NULL) {
    free(d);
    return NULL;
  }
  snprintf(d->name, sizeof d->name, "%s", name);
  d->cap = cap;
  pthread_mutex_init(&d->mu, NULL);
  return d;
}

void shdict_flush(struct shdict *d) {
  pthread_mutex_lock(&d->mu);
  for (struct shentry *e = d->newest, *next; e; e = next) {
    next = e->older;
    free(e);
  }
  memset(d->buckets, 0, d->nbuckets * sizeof *d->buckets);
  d->newest = d->oldest = NULL;
  d->used = d->count = 0;
  pthread_mutex_unlock(&d->mu);
}

void shdict_free(struct shdict *d) {
  if (d == NULL) return;
  shdict_flush(d);
  pthread_mutex_destroy(&d->mu);
  free(d->buckets);
  free(d);
}

static void lru_unlink(struct shdict *d, struct shentry *e) {
  if (e->newer)
    e->newer->older = e->older;
  else
    d->newest = e->older;
  if (e->older)
    e->older->newer = e->newer;
  else
    d->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void lru_push(struct shdict *d, struct shentry *e) {
  e->newer = NULL;
  e->older = d->newest;
  if (d->newest) d->newest->newer = e;
  d->newest = e;
  if (d->oldest == NULL) d->oldest = e;
}

static struct shentry **slot_of(struct shdict *d, const char *k, size_t n, uint32_t h) {
  struct shentry **p = &d->buckets[h & (d->nbuckets - 1)];
  while (*p && !((*p)->hash == h && (*p)->klen == n && memcmp((*p)->data, k, n) == 0))
    p = &(*p)->hnext;
  return p;
}

static void remove_entry(struct shdict *d, struct shentry *e) {
  struct shentry **p = slot_of(d, e->data, e->klen, e->hash);
  *p = e->hnext;
  lru_unlink(d, e);
  d->used -= entry_size(e->klen, e->vlen);
  d->count--;
  free(e);
}

/* The live entry for key, or NULL; an expired one is removed on the way. */
static struct shentry *find(struct shdict *d, const char *k, size_t n, double now) {
  uint32_t h = hash_of(k, n);
  struct shentry *e = *slot_of(d, k, n, h);
  if (e && e->expires > 0 && e->expires <= now) {
    remove_entry(d, e);
    return NULL;
  }
  return e;
}

static void grow(struct shdict *d) {
  size_t n = d->nbuckets * 2;
  struct shentry **b = calloc(n, sizeof *b);
  if (b == NULL) return; /* longer chains, still correct */
  for (size_t i = 0; i < d->nbuckets; i++)
    for (struct shentry *e = d->buckets[i], *next; e; e = next) {
      next = e->hnext;
      e->hnext = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  free(d->buckets);
  d->buckets = b;
  d->nbuckets = n;
}

static void copy_out(const struct shentry *e, struct shvalue *out) {
  out->type = e->type;
  out->i = e->i;
  out->d = e->d;
  out->len = e->vlen;
  out->s = NULL;
  if (e->type == SH_STRING) {
    char *p = malloc(e->vlen + 1);
    if (p) memcpy(p, e->data + e->klen, e->vlen);
    out->s = p;
  }
}

int shdict_get(struct shdict *d, const char *key, size_t klen, double now, struct shvalue *out) {
  int rc = SH_NOT_FOUND;
  pthread_mutex_lock(&d->mu);
  struct shentry *e = find(d, key, klen, now);
  if (e) {
    lru_unlink(d, e);
    lru_push(d, e);
    copy_out(e, out);
    rc = e->type == SH_STRING && out->s == NULL ? SH_NO_MEMORY : SH_OK;
  }
  pthread_mutex_unlock(&d->mu);
  return rc;
}

/* Stores a new entry (the old one, if any, already removed), evicting the oldest to fit;
 *evicted counts the live entries that went. */
static int store(struct shdict *d, const char *key, size_t klen, const struct shvalue *v,
                 double expires, double now, int *evicted) {
  size_t vlen = v->type == SH_STRING ? v->len : 0, size = entry_size(klen, vlen);
  if (size > d->cap) return SH_TOO_LARGE;
  while (d->used + size > d->cap && d->oldest) {
    if (evicted && (d->oldest->expires == 0 || d->oldest->expires > now)) (*evicted)++;
    remove_entry(d, d->oldest);
  }
  struct shentry *e = malloc(size);
  if (e == NULL) return SH_NO_MEMORY;
  e->hash = hash_of(key, klen);
  e->type = v->type;
  e->expires = expires;
  e->i = v->i;
  e->d = v->d;
  e->klen = klen;
  e->vlen = vlen;
  memcpy(e->data, key, klen);
  if (vlen) memcpy(e->data + klen, v->s, vlen);
  if (d->count >= d->nbuckets) grow(d);
  struct shentry **slot = &d->buckets[e->hash & (d->nbuckets - 1)];
  e->hnext = *slot;
  *slot = e;
  lru_push(d, e);
  d->used += size;
  d->count++;
  return SH_OK;
}

int shdict_set(struct shdict *d, const char *key, size_t klen, const struct shvalue *v, double ttl,
               double now, int mode, int *evicted) {
  int rc = SH_OK;
  pthread_mutex_lock(&d->mu);
  struct shentry *e = find(d, key, klen, now);
  if (mode == 1 && e)
    rc = SH_EXISTS;
  else if (mode == 2 && !e)
    rc = SH_NOT_FOUND;
  else if (v->type == SH_NONE) {
    if (e) remove_entry(d, e);
  } else {
    size_t need = entry_size(klen, v->type == SH_STRING ? v->len : 0);
    if (need > d->cap) {
      rc = SH_TOO_LARGE; /* the old value stays */
    } else {
      if (e) remove_entry(d, e);
      rc = store(d, key, klen, v, ttl > 0 ? now + ttl : 0, now, evicted);
    }
  }
  pthread_mutex_unlock(&d->mu);
  return rc;
}

int shdict_incr(struct shdict *d, const char *key, size_t klen, const struct shvalue *by,
                const struct shvalue *init, double now, struct shvalue *out) {
  int rc = SH_OK;
  pthread_mutex_lock(&d->mu);
  struct shentry *e = find(d, key, klen, now);
  if (e == NULL && init == NULL) {
    rc = SH_NOT_FOUND;
  } else if (e && e->type != SH_INTEGER && e->type != SH_NUMBER) {
    rc = SH_NOT_NUMBER;
  } else {
    const struct shvalue base = e ? (struct shvalue){.type = e->type, .i = e->i, .d = e->d} : *init;
    struct shvalue r = {.type = SH_INTEGER};
    if (base.type == SH_INTEGER && by->type == SH_INTEGER)
      r.i = (int64_t)((uint64_t)base.i + (uint64_t)by->i); /* wraps like Lua integers */
    else
      r.type = SH_NUMBER, r.d = (base.type == SH_INTEGER ? (double)base.i : base.d) +
                                (by->type == SH_INTEGER ? (double)by->i : by->d);
    if (e) { /* same size: update in place */
      e->type = r.type;
      e->i = r.i;
      e->d = r.d;
      lru_unlink(d, e);
      lru_push(d, e);
    } else {
      rc = store(d, key, klen, &r, 0, now, NULL);
    }
    *out = r;
  }
  pthread_mutex_unlock(&d->mu);
  return rc;
}

int shdict_delete(struct shdict *d, const char *key, size_t klen) {
  pthread_mutex_lock(&d->mu);
  struct shentry *e = *slot_of(d, key, klen, hash_of(key, klen));
  if (e) remove_entry(d, e);
  pthread_mutex_unlock(&d->mu);
  return SH_OK;
}

char *shdict_keys(struct shdict *d, double now, size_t max, size_t *n) {
  char *block = NULL;
  size_t size = 0, off = 0;
  *n = 0;
  pthread_mutex_lock(&d->mu);
  for (struct shentry *e = d->newest; e; e = e->older)
    size += sizeof(size_t) + e->klen;
  block = size ? malloc(size) : NULL;
  for (struct shentry *e = d->newest; block && e && (max == 0 || *n < max); e = e->older) {
    if (e->expires > 0 && e->expires <= now) continue;
    memcpy(block + off, &e->klen, sizeof(size_t));
    memcpy(block + off + sizeof(size_t), e->data, e->klen);
    off += sizeof(size_t) + e->klen;
    (*n)++;
  }
  pthread_mutex_unlock(&d->mu);
  return block;
}

void shdict_usage(struct shdict *d, size_t *used, size_t *cap, size_t *count) {
  pthread_mutex_lock(&d->mu);
  *used = d->used;
  *cap = d->cap;
  *count = d->count;
  pthread_mutex_unlock(&d->mu);
}
