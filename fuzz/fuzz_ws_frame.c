/* fuzz_ws_frame.c: libFuzzer target for the WebSocket frame layer (core/ws_frame.c).

   Build and run:
     clang -g -O1 -fsanitize=fuzzer,address,undefined fuzz/fuzz_ws_frame.c core/ws_frame.c \
           -o /tmp/fuzz_ws_frame
     /tmp/fuzz_ws_frame -max_total_time=300 fuzz/corpus/ws_frame

   Input: byte 0 picks the frame size limit, byte 1 a split point; the rest is a stream of client
   frames, read as a connection would: each header parsed from an exact-size heap copy (ASan
   catches a read past it), then the message rules, the payload unmasked whole, in two pieces
   and by a byte-wise reference, text checked as UTF-8 whole and in pieces, close payloads
   checked and re-encoded. Checked: consumed <= len, fields match the bytes, limits hold, every
   prefix of a header is incomplete (or, for a refused one, the same error), the server encoder
   gives back the same header. The UTF-8 check and the close check also run on the raw input
   against a reference decoder. A broken invariant calls abort(). */
#include "../core/ws_frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) abort();                                                                          \
  } while (0)

static const uint64_t limits[] = {0, 1, 125, 126, 1000, 65535, 65536, INT64_MAX, UINT64_MAX};

static void *copy(const uint8_t *p, size_t n) {
  uint8_t *c = malloc(n > 0 ? n : 1);
  CHECK(c != NULL);
  if (n > 0) memcpy(c, p, n);
  return c;
}

/* ws_frame_parse on an exact-size copy of p[0..n). */
static int parse_copy(const uint8_t *p, size_t n, uint64_t max, struct ws_frame *f) {
  uint8_t *c = copy(p, n);
  int rc = ws_frame_parse(c, n, max, f);
  free(c);
  return rc;
}

static int parse_error(int rc) {
  return rc == WS_ERR_RSV || rc == WS_ERR_OPCODE || rc == WS_ERR_UNMASKED ||
         rc == WS_ERR_CONTROL_FRAGMENTED || rc == WS_ERR_CONTROL_TOO_LONG ||
         rc == WS_ERR_LENGTH_NOT_MINIMAL || rc == WS_ERR_LENGTH_TOP_BIT || rc == WS_ERR_TOO_BIG;
}

/* Checks one header result for p[0..n) against the bytes. */
static void check_header(const uint8_t *p, size_t n, uint64_t max, int rc,
                         const struct ws_frame *f) {
  struct ws_frame g;
  CHECK(rc > 0 || rc == WS_INCOMPLETE || parse_error(rc));
  /* a header is at most 14 bytes: nothing after them changes the answer */
  if (n > 14) CHECK(parse_copy(p, 14, max, &g) == rc);
  if (rc < 0) {
    if (rc != WS_INCOMPLETE) {
      unsigned code = ws_error_close_code(rc);
      CHECK(code == (rc == WS_ERR_TOO_BIG ? 1009u : 1002u));
      for (size_t k = 0; k < n && k < 14; k++) {
        int pr = parse_copy(p, k, max, &g);
        CHECK(pr == WS_INCOMPLETE || pr == rc);
      }
    }
    return;
  }
  size_t hl = (size_t)rc, len7 = p[1] & 0x7F;
  CHECK(hl == f->header_len && hl <= n && hl >= 6 && hl <= 14);
  CHECK(hl == (len7 == 127 ? 14u : len7 == 126 ? 8u : 6u));
  CHECK(f->fin == p[0] >> 7 && f->rsv == 0 && f->opcode == (p[0] & 0x0F) && f->masked == 1);
  CHECK(memcmp(f->mask, p + hl - 4, 4) == 0);
  CHECK((f->payload_len >> 63) == 0);
  if (f->opcode & 8)
    CHECK(f->payload_len <= WS_CONTROL_MAX && f->fin);
  else
    CHECK(f->payload_len <= max && f->opcode <= WS_OP_BINARY);
  uint8_t enc[WS_SERVER_HEADER_MAX];
  size_t el = ws_frame_header(enc, f->fin, f->opcode, f->payload_len);
  CHECK(el == hl - 4 && enc[0] == p[0] && enc[1] == (p[1] & 0x7F));
  CHECK(memcmp(enc + 2, p + 2, el - 2) == 0);
  for (size_t k = 0; k < hl; k++)
    CHECK(parse_copy(p, k, max, &g) == WS_INCOMPLETE);
}

/* Reference UTF-8 decoder: are p[0..n) complete, valid UTF-8? */
static int ref_full(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t b = p[i];
    size_t L = b < 0x80             ? 1
               : (b & 0xE0) == 0xC0 ? 2
               : (b & 0xF0) == 0xE0 ? 3
               : (b & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (L == 0 || i + L > n) return 0;
    uint32_t cp = L == 1 ? b : L == 2 ? b & 0x1Fu : L == 3 ? b & 0x0Fu : b & 0x07u;
    for (size_t j = 1; j < L; j++) {
      if ((p[i + j] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (p[i + j] & 0x3Fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[L] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += L;
  }
  return 1;
}

/* The UTF-8 check on p[0..n): whole, by bytes and split at `at` agree, and with the reference. */
static void check_utf8(const uint8_t *p, size_t n, size_t at) {
  struct ws_utf8 a, b, c;
  ws_utf8_init(&a);
  ws_utf8_init(&b);
  ws_utf8_init(&c);
  uint8_t *cp = copy(p, n);
  int whole = ws_utf8_feed(&a, cp, n) == 0 && ws_utf8_finish(&a) == 0;
  int bytes = 1;
  for (size_t i = 0; i < n && bytes; i++)
    bytes = ws_utf8_feed(&b, cp + i, 1) == 0;
  bytes = bytes && ws_utf8_finish(&b) == 0;
  if (at > n) at = n;
  int split = ws_utf8_feed(&c, cp, at) == 0 && ws_utf8_feed(&c, cp + at, n - at) == 0 &&
              ws_utf8_finish(&c) == 0;
  CHECK(whole == bytes && whole == split && whole == ref_full(p, n));
  free(cp);
}

/* The close check on p[0..n), and the encoder's round trip of what it accepts. */
static void check_close(const uint8_t *p, size_t n) {
  unsigned code = 0;
  const uint8_t *r = NULL;
  size_t rl = 0;
  uint8_t *cp = copy(p, n);
  int rc = ws_close_parse(cp, n, &code, &r, &rl);
  if (n == 1) CHECK(rc == WS_ERR_CLOSE_LENGTH);
  if (n > WS_CONTROL_MAX) CHECK(rc == WS_ERR_CONTROL_TOO_LONG);
  if (rc == 0 && n == 0) CHECK(code == WS_CLOSE_NO_STATUS && rl == 0);
  if (rc == 0 && n >= 2) {
    CHECK(ws_close_code_valid(code) && r == cp + 2 && rl == n - 2 && ref_full(r, rl));
    uint8_t out[WS_CONTROL_MAX];
    CHECK(ws_close_payload(out, sizeof out, code, r, rl) == (int)n && memcmp(out, cp, n) == 0);
  }
  if (rc == WS_ERR_CLOSE_CODE) CHECK(n >= 2 && !ws_close_code_valid((unsigned)cp[0] << 8 | cp[1]));
  if (rc == WS_ERR_CLOSE_REASON) CHECK(n >= 2 && !ref_full(cp + 2, n - 2));
  CHECK(rc == 0 || rc == WS_ERR_CLOSE_LENGTH || rc == WS_ERR_CLOSE_CODE ||
        rc == WS_ERR_CLOSE_REASON || rc == WS_ERR_CONTROL_TOO_LONG);
  free(cp);
}

/* Unmasks p[0..n) from payload offset off: whole, in two pieces and byte-wise agree; twice is
   the identity. Leaves the unmasked bytes in out. */
static void check_unmask(const uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off, size_t at,
                         uint8_t *out) {
  uint8_t *a = copy(p, n), *b = copy(p, n);
  CHECK(ws_unmask(a, n, mask, off) == off + n);
  if (at > n) at = n;
  uint64_t mid = ws_unmask(b, at, mask, off);
  CHECK(mid == off + at && ws_unmask(b + at, n - at, mask, mid) == off + n);
  for (size_t i = 0; i < n; i++)
    CHECK(a[i] == (uint8_t)(p[i] ^ mask[(off + i) & 3]) && b[i] == a[i]);
  memcpy(out, a, n);
  ws_unmask(a, n, mask, off);
  CHECK(n == 0 || memcmp(a, p, n) == 0);
  free(a);
  free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint64_t max = limits[data[0] % (sizeof limits / sizeof limits[0])];
  size_t at = data[1];
  const uint8_t *s = data + 2;
  size_t n = size - 2, pos = 0;

  check_utf8(s, n, at);
  check_close(s, n < 200 ? n : 200);

  struct ws_msg m;
  memset(&m, 0, sizeof m);
  uint8_t *payload = malloc(n > 0 ? n : 1);
  CHECK(payload != NULL);
  while (pos < n) {
    struct ws_frame f;
    memset(&f, 0, sizeof f);
    int rc = parse_copy(s + pos, n - pos, max, &f);
    check_header(s + pos, n - pos, max, rc, &f);
    if (rc < 0) break;
    uint64_t before = m.len;
    int was_open = m.in_fragment;
    rc = ws_msg_frame(&m, &f, max);
    CHECK(rc == 0 || rc == WS_ERR_CONT_WITHOUT_START || rc == WS_ERR_DATA_IN_FRAGMENTED ||
          rc == WS_ERR_TOO_BIG);
    if (rc == WS_ERR_CONT_WITHOUT_START) CHECK(!was_open && f.opcode == WS_OP_CONT);
    if (rc == WS_ERR_DATA_IN_FRAGMENTED) CHECK(was_open && f.opcode != WS_OP_CONT);
    if (rc < 0) break;
    int ctl = (f.opcode & 8) != 0;
    if (!ctl) {
      CHECK(m.len <= max && m.in_fragment == !f.fin);
      CHECK(m.len == (f.opcode == WS_OP_CONT ? before : 0) + f.payload_len);
    }
    size_t hl = f.header_len, avail = n - pos - hl;
    size_t got = f.payload_len < avail ? (size_t)f.payload_len : avail;
    check_unmask(s + pos + hl, got, f.mask, 0, at, payload);
    if (!ctl && m.opcode == WS_OP_TEXT) {
      struct ws_utf8 whole = m.utf8;
      int ok = ws_utf8_feed(&whole, payload, got) == 0;
      int bytes = 1;
      for (size_t i = 0; i < got && bytes; i++)
        bytes = ws_utf8_feed(&m.utf8, payload + i, 1) == 0;
      CHECK(ok == bytes);
      if (!ok) break;
      CHECK(memcmp(&whole, &m.utf8, sizeof whole) == 0);
      if (f.fin && got == f.payload_len) (void)ws_utf8_finish(&m.utf8);
    }
    if (got < f.payload_len) break;
    if (f.opcode == WS_OP_CLOSE) check_close(payload, got);
    pos += hl + got;
    CHECK(pos <= n);
  }
  free(payload);
  return 0;
}
