/* scgi_parse.c: the SCGI netstring and header parser (see scgi_parse.h). */
#include "scgi_parse.h"

#include <string.h>

#define SCGI_MAX_BLOCK (1u << 30) /* keeps the byte count returned within an int */

#define FAIL(code, why)                                                                            \
  do {                                                                                             \
    *reason = (why);                                                                               \
    return (code);                                                                                 \
  } while (0)

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads the netstring length "LEN:"; returns the prefix size, or a SCGI_PARSE_* code. */
static int parse_length(const char *buf, size_t len, size_t max, size_t *block,
                        const char **reason) {
  size_t n = 0, i = 0;
  if (max > SCGI_MAX_BLOCK) max = SCGI_MAX_BLOCK;
  for (; i < len && buf[i] != ':'; i++) {
    if (!is_digit(buf[i])) FAIL(SCGI_PARSE_INVALID, "netstring length is not a decimal number");
    if (i == 1 && buf[0] == '0') FAIL(SCGI_PARSE_INVALID, "netstring length has a leading zero");
    size_t d = (size_t)(buf[i] - '0');
    if (d > max || n > (max - d) / 10)
      FAIL(SCGI_PARSE_TOO_LARGE, "header block is larger than the limit");
    n = n * 10 + d;
  }
  if (i == len) return SCGI_PARSE_INCOMPLETE;
  if (i == 0) FAIL(SCGI_PARSE_INVALID, "netstring length is empty");
  *block = n;
  return (int)i + 1;
}

static int parse_content_length(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0 || n > 19) return -1;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i])) return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return 0;
}

/* Length, first and last byte first: names such as SERVER_NAME and SERVER_PORT differ there. */
static int same_name(const struct scgi_header *a, const struct scgi_header *b) {
  size_t n = a->name_len;
  return n == b->name_len && a->name[0] == b->name[0] && a->name[n - 1] == b->name[n - 1] &&
         memcmp(a->name, b->name, n) == 0;
}

static unsigned name_tag(const struct scgi_header *h) {
  size_t n = h->name_len;
  return (unsigned)(n * 31 + (uint8_t)h->name[0] * 7 + (uint8_t)h->name[n - 1] * 13) & 63;
}

static int name_is(const struct scgi_header *h, const char *lit, size_t n) {
  return h->name_len == n && memcmp(h->name, lit, n) == 0;
}

int scgi_parse_request(const char *buf, size_t len, size_t max_header_size,
                       struct scgi_header *headers, size_t *num_headers, uint64_t *content_length,
                       int *repeated, const char **reason) {
  size_t block = 0, cap = *num_headers, count = 0;
  uint64_t seen = 0;
  int have_scgi = 0, repeats = 0;
  int prefix = parse_length(buf, len, max_header_size, &block, reason);
  if (prefix < 0) return prefix;
  size_t start = (size_t)prefix, end = start + block;
  if (len <= end) return SCGI_PARSE_INCOMPLETE;
  if (buf[end] != ',') FAIL(SCGI_PARSE_INVALID, "netstring does not end with ','");

  for (const char *p = buf + start, *e = buf + end; p < e; count++) {
    const char *nul = memchr(p, '\0', (size_t)(e - p));
    if (nul == NULL) FAIL(SCGI_PARSE_INVALID, "header name is not NUL-terminated");
    if (nul == p) FAIL(SCGI_PARSE_INVALID, "header name is empty");
    const char *v = nul + 1;
    const char *vnul = memchr(v, '\0', (size_t)(e - v));
    if (vnul == NULL) FAIL(SCGI_PARSE_INVALID, "header value is not NUL-terminated");
    if (count == cap) FAIL(SCGI_PARSE_TOO_LARGE, "too many headers");
    struct scgi_header *h = &headers[count];
    h->name = p;
    h->name_len = (size_t)(nul - p);
    h->value = v;
    h->value_len = (size_t)(vnul - v);
    p = vnul + 1;
    if (count == 0) {
      if (!name_is(h, "CONTENT_LENGTH", 14))
        FAIL(SCGI_PARSE_INVALID, "first header is not CONTENT_LENGTH");
      if (parse_content_length(h->value, h->value_len, content_length) < 0)
        FAIL(SCGI_PARSE_INVALID, "CONTENT_LENGTH is not a decimal number");
      seen = (uint64_t)1 << name_tag(h);
      continue;
    }
    if (name_is(h, "CONTENT_LENGTH", 14)) FAIL(SCGI_PARSE_INVALID, "repeated CONTENT_LENGTH");
    if (name_is(h, "SCGI", 4)) {
      if (have_scgi) FAIL(SCGI_PARSE_INVALID, "repeated SCGI header");
      if (h->value_len != 1 || h->value[0] != '1') FAIL(SCGI_PARSE_INVALID, "SCGI header is not 1");
      have_scgi = 1;
      continue;
    }
    /* a 64-bit filter of the names seen: the pairwise check runs only on a possible repeat */
    uint64_t bit = (uint64_t)1 << name_tag(h);
    if ((seen & bit) && !repeats)
      for (size_t j = 1; j < count; j++)
        if (same_name(&headers[j], h)) {
          repeats = 1;
          break;
        }
    seen |= bit;
  }
  if (count == 0) FAIL(SCGI_PARSE_INVALID, "first header is not CONTENT_LENGTH");
  if (!have_scgi) FAIL(SCGI_PARSE_INVALID, "SCGI header is missing");
  *num_headers = count;
  *repeated = repeats;
  return (int)(end + 1);
}
