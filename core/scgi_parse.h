/* scgi_parse.h: the SCGI request parser; no I/O, no allocation, no Lua. */
#ifndef SCGI_PARSE_H
#define SCGI_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* One header pair; both point into the caller's buffer and are NUL-terminated there. */
struct scgi_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
};

enum {
  SCGI_PARSE_INCOMPLETE = -1, /* a prefix of a valid request: read more */
  SCGI_PARSE_INVALID = -2,    /* malformed: answer 400 */
  SCGI_PARSE_TOO_LARGE = -3   /* header block over the caller's limit: answer 431 */
};

/* Parses the netstring header block at the start of buf.
   Returns the bytes consumed (the body starts there) when complete, else a SCGI_PARSE_* code.
   *num_headers holds the capacity of headers on entry and the count on return; *repeated is set
   to 1 when a name other than CONTENT_LENGTH and SCGI occurs more than once (nginx 1.22 sends one
   pair per repeated HTTP header line; the caller merges them), else 0. A repeated CONTENT_LENGTH
   or SCGI is invalid. On error *reason names the fault in a short static phrase. */
int scgi_parse_request(const char *buf, size_t len, size_t max_header_size,
                       struct scgi_header *headers, size_t *num_headers, uint64_t *content_length,
                       int *repeated, const char **reason);

#endif
