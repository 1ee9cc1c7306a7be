/* fuzz_parse.c: libFuzzer target for the SCGI request parser (core/scgi_parse.c).

   Build and run:
     clang -g -O1 -fsanitize=fuzzer,address,undefined fuzz/fuzz_parse.c core/scgi_parse.c \
           -o /tmp/fuzz_parse
     /tmp/fuzz_parse -max_total_time=300 fuzz/corpus/parse

   The input is copied into an exact-size heap buffer (ASan catches any read past it) and
   parsed with a small and a large max_header_size. A complete parse is checked against the
   netstring and SCGI rules byte by byte; some of its proper prefixes must be INCOMPLETE (each
   in its own exact-size buffer); the two limits must agree where they overlap. A broken
   invariant calls abort(). */
#include "../core/scgi_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAP 64
#define SMALL_MAX 64
#ifndef LARGE_MAX
#define LARGE_MAX (1u << 20) /* override with -DLARGE_MAX=SIZE_MAX to probe huge limits */
#endif

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) abort();                                                                          \
  } while (0)

struct result {
  int ret;
  size_t nh;
  uint64_t cl;
  int repeated;
  const char *reason;
  struct scgi_header h[CAP];
};

static void parse(const char *buf, size_t len, size_t max, size_t cap, struct result *r) {
  CHECK(cap <= CAP);
  r->nh = cap;
  r->cl = 0;
  r->repeated = -1;
  r->reason = NULL;
  r->ret = scgi_parse_request(buf, len, max, r->h, &r->nh, &r->cl, &r->repeated, &r->reason);
  CHECK(r->ret > 0 || r->ret == SCGI_PARSE_INCOMPLETE || r->ret == SCGI_PARSE_INVALID ||
        r->ret == SCGI_PARSE_TOO_LARGE);
  if (r->ret == SCGI_PARSE_INVALID || r->ret == SCGI_PARSE_TOO_LARGE)
    CHECK(r->reason != NULL && r->reason[0] != '\0');
}

/* Parses data[0..len) from its own exact-size heap copy. */
static int parse_copy(const uint8_t *data, size_t len, size_t max) {
  struct result r;
  char *p = malloc(len > 0 ? len : 1);
  CHECK(p != NULL);
  if (len > 0) memcpy(p, data, len);
  parse(p, len, max, CAP, &r);
  free(p);
  return r.ret;
}

static int same_headers(const struct scgi_header *a, const struct scgi_header *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i].name != b[i].name || a[i].name_len != b[i].name_len || a[i].value != b[i].value ||
        a[i].value_len != b[i].value_len)
      return 0;
  return 1;
}

static int within(const char *p, size_t n, const char *lo, const char *hi) {
  uintptr_t a = (uintptr_t)p, l = (uintptr_t)lo, h = (uintptr_t)hi;
  return a >= l && a <= h && n <= h - a;
}

/* Checks a complete parse of buf[0..len) with limit max. */
static void check_complete(const char *buf, size_t len, size_t max, const struct result *r) {
  size_t consumed = (size_t)r->ret;
  CHECK(consumed >= 3 && consumed <= len);
  CHECK(buf[consumed - 1] == ',');

  /* netstring length: decimal digits, no leading zero, equal to the block size, <= max */
  size_t colon = 0;
  while (colon < consumed && buf[colon] >= '0' && buf[colon] <= '9')
    colon++;
  CHECK(colon > 0 && colon < consumed && buf[colon] == ':');
  CHECK(colon == 1 || buf[0] != '0');
  CHECK(colon <= 20);
  uint64_t declared = 0;
  for (size_t i = 0; i < colon; i++) {
    CHECK(declared <= (UINT64_MAX - 9) / 10);
    declared = declared * 10 + (uint64_t)(buf[i] - '0');
  }
  size_t block = consumed - colon - 2;
  CHECK(declared == block && block <= max);

  /* headers: contiguous NUL-terminated pairs covering the whole block */
  const char *start = buf + colon + 1, *end = buf + consumed - 1;
  CHECK(r->nh >= 2 && r->nh <= CAP);
  const char *expect = start;
  int scgi = 0, repeats = 0;
  for (size_t i = 0; i < r->nh; i++) {
    const struct scgi_header *h = &r->h[i];
    CHECK(h->name == expect && h->name_len > 0);
    CHECK(within(h->name, h->name_len + 1, start, end));
    CHECK(memchr(h->name, '\0', h->name_len) == NULL && h->name[h->name_len] == '\0');
    CHECK(h->value == h->name + h->name_len + 1);
    CHECK(within(h->value, h->value_len + 1, start, end));
    CHECK(memchr(h->value, '\0', h->value_len) == NULL && h->value[h->value_len] == '\0');
    expect = h->value + h->value_len + 1;
    for (size_t j = 0; j < i; j++)
      if (r->h[j].name_len == h->name_len && memcmp(r->h[j].name, h->name, h->name_len) == 0)
        repeats = 1;
    if (h->name_len == 4 && memcmp(h->name, "SCGI", 4) == 0) {
      CHECK(h->value_len == 1 && h->value[0] == '1' && !scgi);
      scgi = 1;
    }
    if (i > 0) CHECK(h->name_len != 14 || memcmp(h->name, "CONTENT_LENGTH", 14) != 0);
  }
  CHECK(expect == end && scgi);
  CHECK(r->repeated == repeats); /* only names other than CONTENT_LENGTH and SCGI can repeat */

  /* CONTENT_LENGTH first, 1..19 digits, matching *content_length */
  const struct scgi_header *cl = &r->h[0];
  CHECK(cl->name_len == 14 && memcmp(cl->name, "CONTENT_LENGTH", 14) == 0);
  CHECK(cl->value_len >= 1 && cl->value_len <= 19);
  uint64_t v = 0;
  for (size_t i = 0; i < cl->value_len; i++) {
    CHECK(cl->value[i] >= '0' && cl->value[i] <= '9');
    v = v * 10 + (uint64_t)(cl->value[i] - '0');
  }
  CHECK(v == r->cl);

  /* proper prefixes are INCOMPLETE, each in its own exact-size buffer */
  const size_t prefixes[] = {0, colon, colon + 1, consumed / 2, consumed - 1};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
    CHECK(parse_copy((const uint8_t *)buf, prefixes[i], max) == SCGI_PARSE_INCOMPLETE);

  /* same result with the exact capacity; TOO_LARGE with one header less capacity,
     and with a limit one below the block size */
  struct result again;
  parse(buf, len, max, r->nh, &again);
  CHECK(again.ret == r->ret && again.nh == r->nh && again.cl == r->cl &&
        again.repeated == r->repeated);
  CHECK(same_headers(again.h, r->h, r->nh));
  parse(buf, len, max, r->nh - 1, &again);
  CHECK(again.ret == SCGI_PARSE_TOO_LARGE);
  if (block > 0) {
    parse(buf, len, block - 1, CAP, &again);
    CHECK(again.ret == SCGI_PARSE_TOO_LARGE);
  }
}

static struct result small, large;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size > 0 ? size : 1);
  CHECK(buf != NULL);
  if (size > 0) memcpy(buf, data, size);

  parse(buf, size, SMALL_MAX, CAP, &small);
  parse(buf, size, LARGE_MAX, CAP, &large);
  if (small.ret > 0) check_complete(buf, size, SMALL_MAX, &small);
  if (large.ret > 0) check_complete(buf, size, LARGE_MAX, &large);

  /* A larger limit changes nothing unless the small one was exceeded. */
  if (small.ret != SCGI_PARSE_TOO_LARGE) {
    CHECK(large.ret == small.ret);
    if (small.ret > 0) {
      CHECK(large.nh == small.nh && large.cl == small.cl && large.repeated == small.repeated);
      CHECK(same_headers(large.h, small.h, small.nh));
    }
  }
  /* A request complete under the large limit that fits the small one completes under it too. */
  if (large.ret > 0 && (size_t)large.ret <= SMALL_MAX) CHECK(small.ret == large.ret);

  /* The result for the whole input is a function of the bytes: parsing the exact-size copy
     again gives the same code. */
  CHECK(parse_copy(data, size, LARGE_MAX) == large.ret);

  free(buf);
  return 0;
}
