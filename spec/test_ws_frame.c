/* test_ws_frame.c: unit tests for the WebSocket frame layer (core/ws_frame.c), case by case after
   the families of Autobahn|Testsuite's fuzzing client: 1.x framing, 2.x ping/pong, 3.x reserved
   bits, 4.x opcodes, 5.x fragmentation, 6.x UTF-8, 7.x close handling, 9.x limits.

   Every header is parsed from a copy whose last byte sits just before a PROT_NONE guard page (the
   data pages read-only), so a read past the end or a write faults; every proper prefix of a header
   must give WS_INCOMPLETE (or, for a refused one, the same error: faults are found as soon as the
   bytes show them). A stream of frames is driven as a connection would see it: the whole at
   once, one byte at a time and in 7-byte pieces, unmasking and checking UTF-8 piece by piece; all
   three must give the same events. UTF-8 checks are compared with an independent reference
   decoder, whole, byte by byte and split at every point.

   Output: one TAP-like line per case, then "# N passed, N failed"; exit status 0 only if no case
   failed. Built by `make build/test_ws_frame` under ASan and UBSan. */
#include "ws_frame.h"

#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FAULT INT_MIN /* the code under test touched the guard page (or the read-only input) */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)
#define MIB (UINT64_C(1) << 20)

static size_t page_size;
static int n_pass, n_fail, case_no;

/* ---- guard-page placement and fault trap ------------------------------------------------- */

struct guarded {
  uint8_t *map, *buf;
  size_t map_len;
};

/* Copies src[0..n) to end just before a PROT_NONE page; read-only unless writable. */
static void guard_place(struct guarded *g, const uint8_t *src, size_t n, int writable) {
  size_t data_pages = (n + page_size - 1) / page_size;
  g->map_len = (data_pages + 1) * page_size;
  void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  g->map = m;
  uint8_t *guard = g->map + data_pages * page_size;
  if (mprotect(guard, page_size, PROT_NONE) != 0) {
    perror("mprotect");
    exit(2);
  }
  g->buf = guard - n;
  if (n > 0 && src != NULL) memcpy(g->buf, src, n);
  if (!writable && data_pages > 0 && mprotect(g->map, data_pages * page_size, PROT_READ) != 0) {
    perror("mprotect");
    exit(2);
  }
}

static void guard_release(struct guarded *g) {
  if (munmap(g->map, g->map_len) != 0) {
    perror("munmap");
    exit(2);
  }
}

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t in_code;

static void on_fault(int sig) {
  if (!in_code) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  in_code = 0;
  siglongjmp(fault_jmp, 1);
}

static void trap_faults(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fault;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_NODEFER;
  if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0) {
    perror("sigaction");
    exit(2);
  }
}

static uint8_t *small_page; /* one data page before a PROT_NONE page, for short inputs */

/* ws_frame_parse on a guarded read-only copy of in[0..n). */
static int parse_guarded(const uint8_t *in, size_t n, uint64_t max, struct ws_frame *f) {
  struct guarded g = {NULL, NULL, 0};
  volatile int rc = FAULT;
  uint8_t *buf;
  if (n <= page_size) { /* the common case, without a mapping of its own */
    if (mprotect(small_page, page_size, PROT_READ | PROT_WRITE) != 0) exit(2);
    buf = small_page + page_size - n;
    if (n > 0) memcpy(buf, in, n);
    if (mprotect(small_page, page_size, PROT_READ) != 0) exit(2);
  } else {
    guard_place(&g, in, n, 0);
    buf = g.buf;
  }
  if (sigsetjmp(fault_jmp, 1) == 0) {
    in_code = 1;
    rc = ws_frame_parse(buf, n, max, f);
    in_code = 0;
  }
  if (g.map != NULL) guard_release(&g);
  return rc;
}

/* ---- reporting ------------------------------------------------------------------------------ */

static char detail[512];

__attribute__((format(printf, 1, 2))) static void why(const char *fmt, ...) {
  if (detail[0] != '\0') return; /* the first fault found is the one reported */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
}

static void report(const char *desc) {
  case_no++;
  if (detail[0] == '\0') {
    printf("ok %d - %s\n", case_no, desc);
    n_pass++;
  } else {
    printf("not ok %d - %s (%s)\n", case_no, desc, detail);
    n_fail++;
  }
  detail[0] = '\0';
}

/* ---- headers --------------------------------------------------------------------------------- */

/* One header case: the result, the fields, every prefix, and the encoder's round trip. */
static void hdr(const char *desc, const uint8_t *in, size_t n, uint64_t max, int expect, int fin,
                unsigned op, uint64_t plen) {
  struct ws_frame f;
  memset(&f, 0xAA, sizeof f);
  int rc = parse_guarded(in, n, max, &f);
  if (rc != expect) why("returned %d (%s), expected %d", rc, ws_error_reason(rc), expect);
  if (rc > 0 && expect > 0) {
    if (f.header_len != (size_t)rc || f.fin != fin || f.opcode != op || f.payload_len != plen ||
        f.rsv != 0 || !f.masked || memcmp(f.mask, in + rc - 4, 4) != 0)
      why("fields fin %u op %u len %llu hlen %zu", f.fin, f.opcode,
          (unsigned long long)f.payload_len, f.header_len);
    uint8_t enc[WS_SERVER_HEADER_MAX];
    size_t el = ws_frame_header(enc, fin, op, plen);
    if (el != (size_t)rc - 4 || enc[0] != in[0] || enc[1] != (in[1] & 0x7F) ||
        memcmp(enc + 2, in + 2, el - 2) != 0)
      why("the encoder does not give back the same header (%zu bytes)", el);
  }
  size_t upto = rc > 0 ? (size_t)rc : n;
  for (size_t k = 0; k < upto && k < n; k++) {
    int pr = parse_guarded(in, k, max, &f);
    if (pr != WS_INCOMPLETE && !(expect < 0 && pr == expect))
      why("prefix of %zu bytes returned %d", k, pr);
  }
  if (expect < 0 && expect != WS_INCOMPLETE && ws_error_close_code(expect) == 0)
    why("no close code for %d", expect);
  report(desc);
}

#define HDR_OK(d, in, fin, op, plen) hdr(d, LIT(in), 16 * MIB, (int)sizeof(in) - 1, fin, op, plen)
#define HDR_ERR(d, in, err) hdr(d, LIT(in), 16 * MIB, err, 0, 0, 0)
#define HDR_MAX(d, in, max, exp, plen) hdr(d, LIT(in), max, exp, 1, WS_OP_BINARY, plen)

/* ---- streams of frames ----------------------------------------------------------------------- */

static uint8_t sb[(16 << 20) + 4096]; /* the stream being built */
static size_t sn;
static const uint8_t key[4] = {0x37, 0xFA, 0x21, 0x3D};

/* Appends a frame: raw first byte b0 (FIN, RSV, opcode), masked or not, payload p[0..n). */
static void frame_raw(uint8_t b0, int masked, const void *p, size_t n) {
  sb[sn++] = b0;
  uint8_t m = masked ? 0x80 : 0;
  if (n < 126) {
    sb[sn++] = (uint8_t)(m | n);
  } else if (n <= 0xFFFF) {
    sb[sn++] = m | 126;
    sb[sn++] = (uint8_t)(n >> 8);
    sb[sn++] = (uint8_t)n;
  } else {
    sb[sn++] = m | 127;
    for (int i = 0; i < 8; i++)
      sb[sn++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
  }
  if (masked) {
    memcpy(sb + sn, key, 4);
    sn += 4;
  }
  const uint8_t *src = p;
  for (size_t i = 0; i < n; i++)
    sb[sn + i] = (uint8_t)((src ? src[i] : 'x') ^ (masked ? key[i & 3] : 0));
  sn += n;
}

static void frame(int fin, unsigned op, const void *p, size_t n) {
  frame_raw((uint8_t)((fin ? 0x80 : 0) | op), 1, p, n);
}

#define F(fin, op, s) frame(fin, op, s, sizeof(s) - 1)

struct drive {
  char ev[1024];
  size_t evn;
  size_t err_at; /* stream bytes seen when the error was found */
};

__attribute__((format(printf, 2, 3))) static void event(struct drive *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (d->evn > 0 && d->evn < sizeof d->ev - 1) d->ev[d->evn++] = ' ';
  int k = vsnprintf(d->ev + d->evn, sizeof d->ev - d->evn, fmt, ap);
  va_end(ap);
  if (k > 0) d->evn += (size_t)k;
  if (d->evn >= sizeof d->ev) d->evn = sizeof d->ev - 1;
}

static uint8_t msgbuf[64], ctlbuf[WS_CONTROL_MAX];

/* Feeds in[0..n) in pieces of `chunk` bytes as a connection would: headers parsed (each from a
   guarded copy of the bytes present) when complete, payloads unmasked and checked as they arrive.
   Events: T:text (T<len> when long), B<len>, P:ping, Q:pong, C<code>:reason, E<close code> on an
   error, I when the stream ends inside a frame. */
static void drive(const uint8_t *in, size_t n, size_t chunk, uint64_t max, struct drive *d) {
  struct guarded g;
  guard_place(&g, in, n, 1);
  uint8_t *buf = g.buf;
  struct ws_msg m;
  memset(&m, 0, sizeof m);
  struct ws_frame f;
  size_t pos = 0, ph = 0, avail = 0;
  uint64_t got = 0;
  int have = 0, rc = 0;
  d->evn = 0;
  d->ev[0] = '\0';
  d->err_at = 0;
  while (avail < n) {
    avail = n - avail < chunk ? n : avail + chunk;
    for (;;) {
      if (!have) {
        /* a header is at most 14 bytes: a page of what follows is plenty (hdr() checks the
           parser reads no further with whole inputs flush against the guard) */
        size_t look = avail - pos < page_size ? avail - pos : page_size;
        rc = parse_guarded(buf + pos, look, max, &f);
        if (rc == WS_INCOMPLETE) break;
        if (rc < 0 || (rc = ws_msg_frame(&m, &f, max)) < 0) goto fail;
        have = 1;
        ph = pos + f.header_len;
        got = 0;
      }
      int ctl = (f.opcode & 8) != 0;
      size_t can = avail - ph - (size_t)got;
      if (can > f.payload_len - got) can = (size_t)(f.payload_len - got);
      if (can > 0) {
        uint8_t *p = buf + ph + got;
        if (ws_unmask(p, can, f.mask, got) != got + can) why("unmask returned a wrong offset");
        if (!ctl && m.opcode == WS_OP_TEXT && (rc = ws_utf8_feed(&m.utf8, p, can)) < 0) goto fail;
        uint8_t *dst = ctl ? ctlbuf : msgbuf;
        size_t cap = ctl ? sizeof ctlbuf : sizeof msgbuf;
        size_t at = (size_t)(ctl ? got : m.len - f.payload_len + got);
        for (size_t i = 0; i < can && at + i < cap; i++)
          dst[at + i] = p[i];
        got += can;
      }
      if (got < f.payload_len) break;
      have = 0;
      pos = ph + (size_t)f.payload_len;
      if (f.opcode == WS_OP_CLOSE) {
        unsigned code = 0;
        const uint8_t *r;
        size_t rl;
        if ((rc = ws_close_parse(ctlbuf, (size_t)f.payload_len, &code, &r, &rl)) < 0) goto fail;
        event(d, "C%u:%.*s", code, (int)rl, (const char *)r);
        goto done; /* nothing is read after a close frame */
      } else if (ctl) {
        event(d, "%c:%.*s", f.opcode == WS_OP_PING ? 'P' : 'Q', (int)f.payload_len,
              (const char *)ctlbuf);
      } else if (f.fin) {
        if (m.opcode == WS_OP_TEXT && (rc = ws_utf8_finish(&m.utf8)) < 0) goto fail;
        if (m.opcode == WS_OP_TEXT && m.len <= sizeof msgbuf)
          event(d, "T:%.*s", (int)m.len, (const char *)msgbuf);
        else
          event(d, "%c%llu", m.opcode == WS_OP_TEXT ? 'T' : 'B', (unsigned long long)m.len);
      }
    }
  }
  if (have || pos < n) event(d, "I");
  goto done;
fail:
  event(d, "E%u", ws_error_close_code(rc));
  d->err_at = avail;
done:
  guard_release(&g);
}

static struct drive d1, d2;

/* Drives the stream built in sb whole, byte by byte and in 7-byte pieces (big streams: whole, in
   64 KiB and in 4093-byte pieces); each must give `expect`. fail_by: the error must be found with
   at most that many bytes seen (fail fast), 0 for no bound. */
static void stream(const char *desc, uint64_t max, const char *expect, size_t fail_by) {
  size_t chunks[3] = {sn, 1, 7};
  if (sn > 65536) chunks[1] = 65536, chunks[2] = 4093;
  for (int i = 0; i < 3; i++) {
    drive(sb, sn, chunks[i] ? chunks[i] : 1, max, &d1);
    if (strcmp(d1.ev, expect) != 0)
      why("in pieces of %zu: \"%s\", expected \"%s\"", chunks[i], d1.ev, expect);
    if (i == 1 && fail_by > 0 && d1.err_at > fail_by)
      why("error found after %zu bytes, not by %zu", d1.err_at, fail_by);
  }
  sn = 0;
  report(desc);
}

#define DEF_MAX (16 * MIB)

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

/* Reference: are p[0..n) complete, valid UTF-8 (decoded code point by code point)? */
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

/* Reference: can p[0..n) be continued into valid UTF-8? (The completions of a cut sequence are an
   interval of code points: it holds a valid one iff its lowest or highest end is valid.) */
static int ref_prefix(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i];
    size_t L = b < 0x80             ? 1
               : (b & 0xE0) == 0xC0 ? 2
               : (b & 0xF0) == 0xE0 ? 3
               : (b & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (L == 0) return 0;
    if (i + L > n) break;
    if (!ref_full(p + i, L)) return 0;
    i += L;
  }
  if (i == n) return 1;
  uint8_t lo[4], hi[4];
  size_t L = n - i, need = p[i] >= 0xF0 ? 4 : p[i] >= 0xE0 ? 3 : 2;
  memcpy(lo, p + i, L);
  memcpy(hi, p + i, L);
  for (size_t j = L; j < need; j++)
    lo[j] = 0x80, hi[j] = 0xBF;
  return ref_full(lo, need) || ref_full(hi, need);
}

/* The index of the first byte no valid text continues with, or n when there is none. */
static size_t ref_fail_at(const uint8_t *p, size_t n) {
  for (size_t k = 1; k <= n; k++)
    if (!ref_prefix(p, k)) return k - 1;
  return n;
}

/* Our check, byte by byte: the index of the byte it refuses, or n; *done: finish's answer. */
static size_t our_fail_at(const uint8_t *p, size_t n, int *done) {
  struct ws_utf8 u;
  ws_utf8_init(&u);
  for (size_t k = 0; k < n; k++)
    if (ws_utf8_feed(&u, p + k, 1) < 0) {
      *done = WS_ERR_UTF8;
      return k;
    }
  *done = ws_utf8_finish(&u);
  return n;
}

/* Whole-text validity by our check, fed in two pieces split at `at`. */
static int our_valid_split(const uint8_t *p, size_t n, size_t at) {
  struct ws_utf8 u;
  ws_utf8_init(&u);
  return ws_utf8_feed(&u, p, at) == 0 && ws_utf8_feed(&u, p + at, n - at) == 0 &&
         ws_utf8_finish(&u) == 0;
}

/* Compares our check with the reference for p[0..n); 0 when they agree. */
static int utf8_agrees(const uint8_t *p, size_t n) {
  int done;
  size_t at = our_fail_at(p, n, &done), ref = ref_fail_at(p, n);
  return at == ref && (done == 0) == ref_full(p, n);
}

/* One UTF-8 case: the verdict, agreement with the reference byte by byte and split at every
   point, and the same verdict as a text frame and as one continuation frame per byte. */
static void utf8(const char *desc, const uint8_t *p, size_t n, int valid) {
  struct guarded g;
  guard_place(&g, p, n, 0);
  int done;
  size_t at = our_fail_at(g.buf, n, &done);
  if ((done == 0) != valid) why("judged %s", done == 0 ? "valid" : "invalid");
  if ((done == 0) != ref_full(p, n)) why("the reference disagrees: check the case");
  if (at != ref_fail_at(p, n))
    why("refused at byte %zu, the reference at %zu", at, ref_fail_at(p, n));
  for (size_t k = 0; k <= n; k++)
    if (our_valid_split(g.buf, n, k) != valid) why("split at %zu judged otherwise", k);
  guard_release(&g);
  char exp_ev[1100];
  if (!valid)
    snprintf(exp_ev, sizeof exp_ev, "E1007");
  else if (n <= sizeof msgbuf)
    snprintf(exp_ev, sizeof exp_ev, "T:%.*s", (int)n, (const char *)p);
  else
    snprintf(exp_ev, sizeof exp_ev, "T%zu", n);
  frame(1, WS_OP_TEXT, p, n);
  drive(sb, sn, 1, DEF_MAX, &d1);
  sn = 0;
  for (size_t k = 0; k < n; k++)
    frame(k + 1 == n, k == 0 ? WS_OP_TEXT : WS_OP_CONT, p + k, 1);
  if (n == 0) frame(1, WS_OP_TEXT, "", 0);
  drive(sb, sn, 7, DEF_MAX, &d2);
  sn = 0;
  if (strcmp(d1.ev, exp_ev) != 0) why("as one frame: \"%s\"", d1.ev);
  if (strcmp(d2.ev, exp_ev) != 0) why("one frame per byte: \"%s\"", d2.ev);
  report(desc);
}

#define U8(d, s, valid) utf8(d, LIT(s), valid)

/* ---- close payloads -------------------------------------------------------------------------- */

static void close_case(const char *desc, const uint8_t *p, size_t n, int expect, unsigned code) {
  struct guarded g;
  guard_place(&g, p, n, 0);
  unsigned c = 0;
  const uint8_t *r = NULL;
  size_t rl = 99;
  volatile int rc = FAULT;
  if (sigsetjmp(fault_jmp, 1) == 0) {
    in_code = 1;
    rc = ws_close_parse(g.buf, n, &c, &r, &rl);
    in_code = 0;
  }
  if (rc != expect) why("returned %d (%s)", rc, ws_error_reason(rc));
  if (rc == 0 && (c != code || rl != (n > 2 ? n - 2 : 0) || (n > 2 && r != g.buf + 2)))
    why("code %u reason %zu bytes", c, rl);
  guard_release(&g);
  char exp_ev[200];
  if (expect == 0)
    snprintf(exp_ev, sizeof exp_ev, "C%u:%.*s", code, (int)(n > 2 ? n - 2 : 0), p + 2);
  else
    snprintf(exp_ev, sizeof exp_ev, "E%u", ws_error_close_code(expect));
  frame(1, WS_OP_CLOSE, p, n);
  frame(1, WS_OP_TEXT, "after", 5); /* never read: a close frame ends the reading */
  stream(desc, DEF_MAX, exp_ev, 0);
}

#define CLOSE(d, s, exp, code) close_case(d, LIT(s), exp, code)

/* A close frame with code `code` and reason "ok". */
static void close_code(unsigned code, int valid) {
  char desc[100];
  uint8_t p[4] = {(uint8_t)(code >> 8), (uint8_t)code, 'o', 'k'};
  snprintf(desc, sizeof desc, "7.%s close code %u %s",
           valid         ? "7"
           : code > 4999 ? "13"
                         : "9",
           code, valid ? "accepted" : "refused with 1002");
  close_case(desc, p, 4, valid ? 0 : WS_ERR_CLOSE_CODE, code);
}

/* ---- encoder, unmasking, error table -----------------------------------------------------------
 */

static void enc(const char *desc, int fin, unsigned op, uint64_t len, const uint8_t *want,
                size_t wn) {
  struct guarded g;
  guard_place(&g, NULL, WS_SERVER_HEADER_MAX, 1);
  volatile size_t n = 99;
  if (sigsetjmp(fault_jmp, 1) == 0) {
    in_code = 1;
    n = ws_frame_header(g.buf, fin, op, len);
    in_code = 0;
  } else {
    why("fault");
  }
  if (n != wn || (wn > 0 && memcmp(g.buf, want, wn) != 0)) why("wrote %zu bytes", (size_t)n);
  if (n > 0) { /* a client would send it masked: the parser reads it back */
    uint8_t m[WS_SERVER_HEADER_MAX + 4] = {0};
    memcpy(m, g.buf, n);
    m[1] |= 0x80;
    struct ws_frame f;
    if (parse_guarded(m, n + 4, UINT64_MAX >> 1, &f) != (int)n + 4 || f.payload_len != len ||
        f.opcode != op || f.fin != (fin != 0))
      why("the parser does not read it back");
  }
  guard_release(&g);
  report(desc);
}

#define ENC(d, fin, op, len, want) enc(d, fin, op, len, LIT(want))

static uint8_t big[1 << 20], ref_big[1 << 20];

/* Unmasks 1 MiB in pieces of `piece` bytes starting `skew` bytes into the payload (the first
   piece shorter), from a buffer at an odd address; compares with a byte-wise reference. */
static void unmask_case(const char *desc, size_t piece, size_t skew) {
  static const uint8_t k[4] = {0x01, 0x80, 0xFE, 0x5A};
  size_t n = sizeof big - 8;
  uint8_t *p = big + 3;
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = ref_big[i] = (uint8_t)(i * 131 + (i >> 9));
  for (size_t i = 0; i < n; i++)
    ref_big[3 + i] ^= k[(i + skew) & 3];
  uint64_t off = skew;
  size_t done = 0, first = piece > 1 ? piece / 2 + 1 : 1;
  while (done < n) {
    size_t take = done == 0 ? first : piece;
    if (take > n - done) take = n - done;
    uint64_t next = ws_unmask(p + done, take, k, off);
    if (next != off + take) why("returned offset %llu", (unsigned long long)next);
    off = next;
    done += take;
  }
  if (memcmp(big, ref_big, sizeof big) != 0) why("bytes differ from the reference");
  ws_unmask(p, n, k, skew);
  for (size_t i = 0; i < n; i++)
    if (p[i] != (uint8_t)((i + 3) * 131 + ((i + 3) >> 9))) {
      why("unmasking twice is not the identity at %zu", i);
      break;
    }
  report(desc);
}

static void error_table(void) {
  static const int errs[] = {WS_ERR_RSV,
                             WS_ERR_OPCODE,
                             WS_ERR_UNMASKED,
                             WS_ERR_CONTROL_FRAGMENTED,
                             WS_ERR_CONTROL_TOO_LONG,
                             WS_ERR_LENGTH_NOT_MINIMAL,
                             WS_ERR_LENGTH_TOP_BIT,
                             WS_ERR_TOO_BIG,
                             WS_ERR_CONT_WITHOUT_START,
                             WS_ERR_DATA_IN_FRAGMENTED,
                             WS_ERR_UTF8,
                             WS_ERR_CLOSE_LENGTH,
                             WS_ERR_CLOSE_CODE,
                             WS_ERR_CLOSE_REASON};
  static const unsigned codes[] = {1002, 1002, 1002, 1002, 1002, 1002, 1002,
                                   1009, 1002, 1002, 1007, 1002, 1002, 1007};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    if (ws_error_close_code(errs[i]) != codes[i]) why("%d gives %u", errs[i], codes[i]);
    const char *r = ws_error_reason(errs[i]);
    for (size_t j = 0; j < i; j++)
      if (strcmp(r, ws_error_reason(errs[j])) == 0)
        why("%d and %d share a reason", errs[i], errs[j]);
    if (strcmp(r, ws_error_reason(0)) == 0) why("%d has no reason", errs[i]);
  }
  if (ws_error_close_code(0) != 0 || ws_error_close_code(WS_INCOMPLETE) != 0 ||
      ws_error_close_code(5) != 0)
    why("a close code for a non-error");
  report("every error has its close code (1002, 1007, 1009) and its own reason");
}

/* ---- generated families ---------------------------------------------------------------------- */

/* A data message of n bytes of 'x' in one frame. */
static void data_len(const char *family, unsigned op, size_t n) {
  char desc[100], exp[100];
  snprintf(desc, sizeof desc, "%s %s message of %zu bytes", family,
           op == WS_OP_TEXT ? "text" : "binary", n);
  if (op == WS_OP_TEXT && n <= sizeof msgbuf)
    snprintf(exp, sizeof exp, "T:%.*s", (int)n,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  else
    snprintf(exp, sizeof exp, "%c%zu", op == WS_OP_TEXT ? 'T' : 'B', n);
  frame(1, op, NULL, n);
  stream(desc, DEF_MAX, exp, 0);
}

/* A text message of n bytes in fragments of `frag` bytes. */
static void data_frags(const char *family, size_t n, size_t frag) {
  char desc[100], exp[40];
  snprintf(desc, sizeof desc, "%s text message of %zu bytes in fragments of %zu", family, n, frag);
  snprintf(exp, sizeof exp, "T%zu", n);
  for (size_t at = 0; at < n; at += frag)
    frame(at + frag >= n, at == 0 ? WS_OP_TEXT : WS_OP_CONT, NULL, at + frag > n ? n - at : frag);
  stream(desc, DEF_MAX, exp, 0);
}

/* First byte b0 (a refused RSV or opcode) after a good text, then a ping: refused on its byte. */
static void bad_b0(const char *desc, uint8_t b0, int err) {
  uint8_t one[1] = {b0};
  struct ws_frame f;
  F(1, WS_OP_TEXT, "Hello");
  size_t at = sn + 1;
  frame_raw(b0, 1, "bad", 3);
  F(1, WS_OP_PING, "");
  if (parse_guarded(one, 1, DEF_MAX, &f) != err) why("not refused on its first byte alone");
  stream(desc, DEF_MAX, "T:Hello E1002", at);
}

static void utf8_exhaustive(void) {
  uint8_t b[4];
  size_t bad = 0;
  for (unsigned x = 0; x < 256; x++) {
    b[0] = (uint8_t)x;
    bad += !utf8_agrees(b, 1);
    for (unsigned y = 0; y < 256; y++) {
      b[1] = (uint8_t)y;
      bad += !utf8_agrees(b, 2);
    }
  }
  if (bad) why("%zu disagreements", bad);
  report("6.x every 1- and 2-byte string judged as the reference decoder does");
  for (unsigned x = 0xC0; x < 256; x++)
    for (unsigned y = 0; y < 256; y++)
      for (unsigned z = 0; z < 256; z++) {
        b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = (uint8_t)z;
        bad += !utf8_agrees(b, 3);
      }
  if (bad) why("%zu disagreements", bad);
  report("6.x every 3-byte string with a lead byte C0-FF judged as the reference does");
  static const uint8_t edge[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
  for (unsigned x = 0xF0; x < 0x100; x++)
    for (unsigned y = 0; y < 256; y++)
      for (size_t z = 0; z < sizeof edge; z++)
        for (size_t w = 0; w < sizeof edge; w++) {
          b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = edge[z], b[3] = edge[w];
          bad += !utf8_agrees(b, 4);
        }
  if (bad) why("%zu disagreements", bad);
  report(
      "6.x 4-byte strings F0-FF, any second byte, edge third and fourth bytes, as the reference");
  size_t refused = 0, overlong_taken = 0;
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    static const uint8_t lead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
    uint32_t v = cp;
    for (size_t i = n; i-- > 1; v >>= 6)
      b[i] = (uint8_t)(0x80 | (v & 0x3F));
    b[0] = (uint8_t)(n == 1 ? v : lead[n] | v);
    struct ws_utf8 u;
    ws_utf8_init(&u);
    int ok = ws_utf8_feed(&u, b, n) == 0 && ws_utf8_finish(&u) == 0;
    int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    if (ok == surrogate) refused++;
    if (n < 4) { /* the same code point one byte longer: overlong */
      uint8_t o[4];
      v = cp;
      for (size_t i = n + 1; i-- > 1; v >>= 6)
        o[i] = (uint8_t)(0x80 | (v & 0x3F));
      o[0] = (uint8_t)(lead[n + 1] | v);
      ws_utf8_init(&u);
      if (ws_utf8_feed(&u, o, n + 1) == 0) overlong_taken++;
    }
  }
  if (refused) why("%zu code points judged wrongly", refused);
  report("6.x all 1,112,064 scalar values accepted, all 2,048 surrogates refused");
  if (overlong_taken) why("%zu overlong forms accepted", overlong_taken);
  report("6.x every code point's overlong form one byte longer refused");
  bad = 0;
  for (unsigned c = 0; c < 65536; c++)
    if (ws_close_code_valid(c) !=
        ((c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)))
      bad++;
  if (bad) why("%zu codes judged wrongly", bad);
  report("7.x every close code 0-65535 judged by the rule 1000-1003, 1007-1014, 3000-4999");
}

#define M4 "\x37\xfa\x21\x3d" /* a mask key */

int main(void) {
  long ps = sysconf(_SC_PAGESIZE);
  page_size = ps > 0 ? (size_t)ps : 4096;
  setvbuf(stdout, NULL, _IOLBF, 0);
  trap_faults();
  struct guarded small;
  guard_place(&small, NULL, page_size, 1);
  small_page = small.buf;

  /* ---- 1.x framing: headers ---- */
  HDR_OK("1.x header: final text, 7-bit length 5", "\x81\x85" M4, 1, WS_OP_TEXT, 5);
  HDR_OK("1.x header: empty binary", "\x82\x80" M4, 1, WS_OP_BINARY, 0);
  HDR_OK("1.x header: 7-bit length 125", "\x81\xfd" M4, 1, WS_OP_TEXT, 125);
  HDR_OK("1.x header: 16-bit length 126", "\x82\xfe\x00\x7e" M4, 1, WS_OP_BINARY, 126);
  HDR_OK("1.x header: 16-bit length 65535", "\x82\xfe\xff\xff" M4, 1, WS_OP_BINARY, 65535);
  HDR_OK("1.x header: 64-bit length 65536", "\x82\xff\0\0\0\0\0\x01\0\0" M4, 1, WS_OP_BINARY,
         65536);
  hdr("1.x header: 64-bit length 2^63-1 (limit permitting)",
      LIT("\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff" M4), UINT64_MAX, 14, 1, WS_OP_BINARY,
      INT64_MAX);
  HDR_OK("1.x header: text with FIN clear", "\x01\x83" M4, 0, WS_OP_TEXT, 3);
  HDR_OK("1.x header: continuation, FIN set", "\x80\x81" M4, 1, WS_OP_CONT, 1);
  HDR_ERR("1.x header: unmasked client frame refused (1002)", "\x81\x05Hello", WS_ERR_UNMASKED);
  HDR_ERR("1.x header: unmasked empty ping refused (1002)", "\x89\x00", WS_ERR_UNMASKED);
  HDR_ERR("1.x header: 16-bit form for length 125 refused (1002)", "\x82\xfe\x00\x7d" M4,
          WS_ERR_LENGTH_NOT_MINIMAL);
  HDR_ERR("1.x header: 16-bit form for length 0 refused (1002)", "\x82\xfe\x00\x00" M4,
          WS_ERR_LENGTH_NOT_MINIMAL);
  HDR_ERR("1.x header: 64-bit form for length 65535 refused (1002)",
          "\x82\xff\0\0\0\0\0\0\xff\xff" M4, WS_ERR_LENGTH_NOT_MINIMAL);
  HDR_ERR("1.x header: 64-bit length with the top bit set refused (1002)",
          "\x82\xff\x80\0\0\0\0\0\0\x01" M4, WS_ERR_LENGTH_TOP_BIT);
  HDR_ERR("1.x header: 64-bit length 2^64-1 refused (1002)",
          "\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff" M4, WS_ERR_LENGTH_TOP_BIT);
  HDR_ERR("1.x header: empty input is incomplete", "", WS_INCOMPLETE);
  HDR_ERR("1.x header: header without its mask key is incomplete", "\x81\x85\x37\xfa",
          WS_INCOMPLETE);
  for (size_t i = 0; i < 2; i++) {
    static const size_t lens[] = {0, 125, 126, 127, 128, 65535, 65536};
    for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++)
      data_len("1.x", i == 0 ? WS_OP_TEXT : WS_OP_BINARY, lens[j]);
  }
  F(1, WS_OP_TEXT, "Hello");
  F(1, WS_OP_BINARY, "\x01\x02");
  F(1, WS_OP_TEXT, "");
  stream("1.x text, binary and empty text back to back", DEF_MAX, "T:Hello B2 T:", 0);
  frame_raw(0x81, 0, "Hello", 5);
  stream("1.x unmasked text refused with 1002 on its second byte", DEF_MAX, "E1002", 2);
  F(1, WS_OP_TEXT, "Hel");
  sn -= 1;
  stream("1.x stream ending inside a frame's payload is reported incomplete", DEF_MAX, "I", 0);

  /* ---- 2.x ping and pong ---- */
  F(1, WS_OP_PING, "");
  stream("2.1 ping without payload", DEF_MAX, "P:", 0);
  F(1, WS_OP_PING, "Hello, world!");
  stream("2.2 ping with a small text payload", DEF_MAX, "P:Hello, world!", 0);
  F(1, WS_OP_PING, "\xfe\xff\x01\xfe\xff\x80");
  stream("2.3 ping with a small binary payload", DEF_MAX, "P:\xfe\xff\x01\xfe\xff\x80", 0);
  frame(1, WS_OP_PING, NULL, 125);
  {
    char exp[140] = "P:";
    memset(exp + 2, 'x', 125);
    stream("2.4 ping with a payload of 125 bytes (whole, by bytes, by 7)", DEF_MAX, exp, 0);
  }
  frame(1, WS_OP_PING, NULL, 126);
  stream("2.5 ping with a payload of 126 bytes refused with 1002 on its length", DEF_MAX, "E1002",
         2);
  HDR_ERR("2.5 header: ping of 126 bytes (16-bit form)", "\x89\xfe\x00\x7e" M4,
          WS_ERR_CONTROL_TOO_LONG);
  HDR_ERR("2.5 header: pong of 127 bytes (64-bit form)", "\x8a\xff\0\0\0\0\0\0\0\x7f" M4,
          WS_ERR_CONTROL_TOO_LONG);
  HDR_ERR("2.5 header: close of 126 bytes", "\x88\xfe\x00\x7e" M4, WS_ERR_CONTROL_TOO_LONG);
  hdr("2.x ping is not held to the data limit (limit 0)", LIT("\x89\x85" M4), 0, 6, 1, WS_OP_PING,
      5);
  F(1, WS_OP_PONG, "");
  stream("2.7 unsolicited pong without payload", DEF_MAX, "Q:", 0);
  F(1, WS_OP_PONG, "unsolicited pong payload");
  stream("2.8 unsolicited pong with payload", DEF_MAX, "Q:unsolicited pong payload", 0);
  F(1, WS_OP_PONG, "unsolicited pong payload");
  F(1, WS_OP_PING, "ping payload");
  stream("2.9 pong then ping", DEF_MAX, "Q:unsolicited pong payload P:ping payload", 0);
  for (int i = 0; i < 10; i++)
    F(1, WS_OP_PING, "payload");
  stream("2.10 ten pings in a row (2.11: in pieces)", DEF_MAX,
         "P:payload P:payload P:payload P:payload P:payload P:payload P:payload P:payload "
         "P:payload P:payload",
         0);

  /* ---- 3.x reserved bits ---- */
  bad_b0("3.1 text with RSV1 refused with 1002", 0xC1, WS_ERR_RSV);
  bad_b0("3.2 text with RSV2 after a good text refused", 0xA1, WS_ERR_RSV);
  bad_b0("3.3 text with RSV1+RSV2 refused", 0xE1, WS_ERR_RSV);
  bad_b0("3.4 text with RSV3 refused", 0x91, WS_ERR_RSV);
  bad_b0("3.5 binary with RSV1+RSV3 refused", 0xD2, WS_ERR_RSV);
  bad_b0("3.6 ping with RSV2+RSV3 refused", 0xB9, WS_ERR_RSV);
  bad_b0("3.7 close with RSV1+RSV2+RSV3 refused", 0xF8, WS_ERR_RSV);
  bad_b0("3.x continuation with RSV1 refused", 0xC0, WS_ERR_RSV);
  bad_b0("3.x pong with RSV1 refused (no extension negotiated)", 0xCA, WS_ERR_RSV);

  /* ---- 4.x opcodes ---- */
  for (unsigned op = 3; op <= 0xF; op++) {
    if (op >= 8 && op <= 0xA) continue;
    char desc[100];
    snprintf(desc, sizeof desc, "4.%d reserved %s opcode %u refused with 1002", op < 8 ? 1 : 2,
             op < 8 ? "non-control" : "control", op);
    bad_b0(desc, (uint8_t)(0x80 | op), WS_ERR_OPCODE);
  }
  HDR_ERR("4.x opcode 0xB with FIN clear: the opcode is named, not the fragmenting", "\x0b\x80" M4,
          WS_ERR_OPCODE);

  /* ---- 5.x fragmentation ---- */
  F(0, WS_OP_PING, "fragment1");
  F(1, WS_OP_CONT, "fragment2");
  stream("5.1 ping in two fragments refused with 1002 on its second byte", DEF_MAX, "E1002", 2);
  F(0, WS_OP_PONG, "fragment1");
  F(1, WS_OP_CONT, "fragment2");
  stream("5.2 pong in two fragments refused with 1002", DEF_MAX, "E1002", 2);
  F(0, WS_OP_CLOSE, "\x03\xe8");
  stream("5.x close with FIN clear refused with 1002", DEF_MAX, "E1002", 2);
  F(0, WS_OP_TEXT, "fragment1");
  F(1, WS_OP_CONT, "fragment2");
  stream("5.3 text in two fragments (5.4, 5.5: in pieces)", DEF_MAX, "T:fragment1fragment2", 0);
  F(0, WS_OP_TEXT, "fragment1");
  F(1, WS_OP_PING, "");
  F(1, WS_OP_CONT, "fragment2");
  stream("5.6 text in two fragments with a ping between (5.7, 5.8: in pieces)", DEF_MAX,
         "P: T:fragment1fragment2", 0);
  F(1, WS_OP_CONT, "non-continuation payload");
  F(1, WS_OP_TEXT, "Hello, world!");
  stream("5.9 final continuation without a message refused (5.10, 5.11: in pieces)", DEF_MAX,
         "E1002", 6);
  F(0, WS_OP_CONT, "non-continuation payload");
  F(1, WS_OP_TEXT, "Hello, world!");
  stream("5.12 non-final continuation without a message refused (5.13, 5.14)", DEF_MAX, "E1002", 6);
  F(0, WS_OP_TEXT, "fragment1");
  F(1, WS_OP_CONT, "fragment2");
  F(0, WS_OP_CONT, "fragment3");
  F(1, WS_OP_TEXT, "fragment4");
  stream("5.15 continuation after a finished message refused", DEF_MAX,
         "T:fragment1fragment2 E1002", 0);
  for (int i = 0; i < 2; i++) {
    F(0, WS_OP_CONT, "fragment1");
    F(1, WS_OP_TEXT, "fragment2");
    F(1, WS_OP_CONT, "fragment3");
  }
  stream("5.16 continuation-text-continuation sequences refused (5.17)", DEF_MAX, "E1002", 6);
  F(0, WS_OP_TEXT, "fragment1");
  F(1, WS_OP_TEXT, "fragment2");
  stream("5.18 text inside a fragmented text refused", DEF_MAX, "E1002", 15 + 6);
  F(0, WS_OP_TEXT, "fragment1");
  F(1, WS_OP_BINARY, "fragment2");
  stream("5.x binary inside a fragmented text refused", DEF_MAX, "E1002", 0);
  F(0, WS_OP_TEXT, "fragment1");
  F(0, WS_OP_CONT, "fragment2");
  F(1, WS_OP_PING, "pongme 1!");
  F(0, WS_OP_CONT, "fragment3");
  F(1, WS_OP_PING, "pongme 2!");
  F(0, WS_OP_CONT, "fragment4");
  F(1, WS_OP_PONG, "");
  F(1, WS_OP_CONT, "fragment5");
  stream("5.19 five fragments with pings and a pong between (5.20)", DEF_MAX,
         "P:pongme 1! P:pongme 2! Q: T:fragment1fragment2fragment3fragment4fragment5", 0);
  F(0, WS_OP_BINARY, "\x01\x02");
  F(0, WS_OP_CONT, "");
  F(1, WS_OP_CONT, "\x03");
  stream("5.x binary in three fragments, one empty", DEF_MAX, "B3", 0);
  F(0, WS_OP_TEXT, "frag");
  F(1, WS_OP_CLOSE, "\x03\xe8");
  stream("5.x close inside a fragmented message is read", DEF_MAX, "C1000:", 0);
  F(1, WS_OP_TEXT, "one");
  F(0, WS_OP_TEXT, "tw");
  F(1, WS_OP_CONT, "o");
  F(1, WS_OP_BINARY, "3");
  stream("5.x messages after a fragmented one start afresh", DEF_MAX, "T:one T:two B1", 0);

  /* ---- 6.x UTF-8 ---- */
  F(1, WS_OP_TEXT, "");
  stream("6.1.1 empty text frame", DEF_MAX, "T:", 0);
  F(0, WS_OP_TEXT, "");
  F(0, WS_OP_CONT, "");
  F(1, WS_OP_CONT, "");
  stream("6.1.2 text of three empty fragments", DEF_MAX, "T:", 0);
  F(0, WS_OP_TEXT, "");
  F(0, WS_OP_CONT, "middle frame payload");
  F(1, WS_OP_CONT, "");
  stream("6.1.3 empty, non-empty, empty fragments", DEF_MAX, "T:middle frame payload", 0);
  U8("6.2.1 Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!! (6.2.2-6.2.4: "
     "split everywhere)",
     "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", 1);
  U8("6.3.1 kosme with a surrogate ED A0 80 then 'edited' (6.3.2: by bytes)",
     "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", 0);
  F(0, WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
  F(0, WS_OP_CONT, "\xf4\x90\x80\x80");
  F(1, WS_OP_CONT, "edited");
  stream("6.4.1 fail fast: refused on F4 90, before the last fragment arrives", DEF_MAX, "E1007",
         17 + 6 + 2);
  F(0, WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
  F(0, WS_OP_CONT, "\xf4");
  F(0, WS_OP_CONT, "\x90");
  F(1, WS_OP_CONT, "\x80\x80");
  stream("6.4.2 fail fast across fragments: refused on the 0x90 fragment's byte", DEF_MAX, "E1007",
         17 + 7 + 7);
  F(1, WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74");
  stream("6.4.3 fail fast inside one frame: refused on its 13th payload byte (6.4.4)", DEF_MAX,
         "E1007", 6 + 13);
  U8("6.5.1 kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1);
  {
    static const uint8_t kosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    static const int whole[] = {0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1};
    for (size_t k = 1; k <= 11; k++) {
      char desc[80];
      snprintf(desc, sizeof desc, "6.6.%zu kosme cut to %zu bytes %s", k, k,
               whole[k - 1] ? "valid" : "refused (sequence cut)");
      utf8(desc, kosme, k, whole[k - 1]);
    }
  }
  U8("6.7.1 first 1-byte sequence U+0000", "\x00", 1);
  U8("6.7.2 first 2-byte sequence U+0080", "\xc2\x80", 1);
  U8("6.7.3 first 3-byte sequence U+0800", "\xe0\xa0\x80", 1);
  U8("6.7.4 first 4-byte sequence U+10000", "\xf0\x90\x80\x80", 1);
  U8("6.8.1 5-byte sequence refused", "\xf8\x88\x80\x80\x80", 0);
  U8("6.8.2 6-byte sequence refused", "\xfc\x84\x80\x80\x80\x80", 0);
  U8("6.9.1 last 1-byte sequence U+007F", "\x7f", 1);
  U8("6.9.2 last 2-byte sequence U+07FF", "\xdf\xbf", 1);
  U8("6.9.3 last 3-byte sequence U+FFFF", "\xef\xbf\xbf", 1);
  U8("6.9.4 last scalar value U+10FFFF", "\xf4\x8f\xbf\xbf", 1);
  U8("6.10.1 4-byte form of U+1FFFFF refused", "\xf7\xbf\xbf\xbf", 0);
  U8("6.10.2 5-byte form refused", "\xfb\xbf\xbf\xbf\xbf", 0);
  U8("6.10.3 6-byte form refused", "\xfd\xbf\xbf\xbf\xbf\xbf", 0);
  U8("6.11.1 U+D7FF", "\xed\x9f\xbf", 1);
  U8("6.11.2 U+E000", "\xee\x80\x80", 1);
  U8("6.11.3 U+FFFD", "\xef\xbf\xbd", 1);
  U8("6.11.4 U+10FFFF", "\xf4\x8f\xbf\xbf", 1);
  U8("6.11.5 U+110000 refused", "\xf4\x90\x80\x80", 0);
  U8("6.12.1 lone continuation 0x80", "\x80", 0);
  U8("6.12.2 lone continuation 0xBF", "\xbf", 0);
  U8("6.12.3 two continuations", "\x80\xbf", 0);
  U8("6.12.4 three continuations", "\x80\xbf\x80", 0);
  U8("6.12.5 four continuations", "\x80\xbf\x80\xbf", 0);
  U8("6.12.8 all 64 continuation bytes",
     "\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95"
     "\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab"
     "\xac\xad\xae\xaf\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe\xbf",
     0);
  U8("6.13.1 2-byte leads each followed by a space", "\xc0 \xc1 \xc2 \xdf ", 0);
  U8("6.13.2 3-byte leads each followed by a space", "\xe0 \xe1 \xef ", 0);
  U8("6.13.3 4-byte leads each followed by a space", "\xf0 \xf4 \xf7 ", 0);
  U8("6.13.4 5-byte leads each followed by a space", "\xf8 \xfb ", 0);
  U8("6.13.5 6-byte leads each followed by a space", "\xfc \xfd ", 0);
  U8("6.14.1 C0 at the end (last byte missing)", "\xc0", 0);
  U8("6.14.2 E0 80 (last byte missing)", "\xe0\x80", 0);
  U8("6.14.3 F0 80 80 (last byte missing)", "\xf0\x80\x80", 0);
  U8("6.14.6 DF at the end of the message", "\xdf", 0);
  U8("6.14.7 EF BF at the end of the message", "\xef\xbf", 0);
  U8("6.14.8 F4 8F BF at the end of the message", "\xf4\x8f\xbf", 0);
  U8("6.14.x 'a' then E2 82 at the end (valid prefix, cut)", "a\xe2\x82", 0);
  U8("6.15.1 concatenated cut sequences",
     "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf", 0);
  U8("6.16.1 byte FE", "\xfe", 0);
  U8("6.16.2 byte FF", "\xff", 0);
  U8("6.16.3 FE FE FF FF", "\xfe\xfe\xff\xff", 0);
  U8("6.17.1 overlong '/' in 2 bytes", "\xc0\xaf", 0);
  U8("6.17.2 overlong '/' in 3 bytes", "\xe0\x80\xaf", 0);
  U8("6.17.3 overlong '/' in 4 bytes", "\xf0\x80\x80\xaf", 0);
  U8("6.17.4 overlong '/' in 5 bytes", "\xf8\x80\x80\x80\xaf", 0);
  U8("6.17.5 overlong '/' in 6 bytes", "\xfc\x80\x80\x80\x80\xaf", 0);
  U8("6.18.1 largest overlong 2-byte C1 BF", "\xc1\xbf", 0);
  U8("6.18.2 largest overlong 3-byte E0 9F BF", "\xe0\x9f\xbf", 0);
  U8("6.18.3 largest overlong 4-byte F0 8F BF BF", "\xf0\x8f\xbf\xbf", 0);
  U8("6.19.1 overlong NUL in 2 bytes", "\xc0\x80", 0);
  U8("6.19.2 overlong NUL in 3 bytes", "\xe0\x80\x80", 0);
  U8("6.19.3 overlong NUL in 4 bytes", "\xf0\x80\x80\x80", 0);
  {
    static const char *sur[] = {"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf",
                                "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"};
    for (size_t i = 0; i < 7; i++) {
      char desc[80];
      snprintf(desc, sizeof desc, "6.20.%zu single surrogate %02X %02X %02X refused", i + 1,
               (uint8_t)sur[i][0], (uint8_t)sur[i][1], (uint8_t)sur[i][2]);
      utf8(desc, (const uint8_t *)sur[i], 3, 0);
    }
  }
  U8("6.21.1 paired surrogates U+D800 U+DC00", "\xed\xa0\x80\xed\xb0\x80", 0);
  U8("6.21.2 paired surrogates U+D800 U+DFFF", "\xed\xa0\x80\xed\xbf\xbf", 0);
  U8("6.21.8 paired surrogates U+DBFF U+DFFF", "\xed\xaf\xbf\xed\xbf\xbf", 0);
  U8("6.22.1 noncharacter U+FFFE is valid", "\xef\xbf\xbe", 1);
  U8("6.22.2 noncharacter U+FFFF is valid", "\xef\xbf\xbf", 1);
  U8("6.22.3 noncharacter U+1FFFE is valid", "\xf0\x9f\xbf\xbe", 1);
  U8("6.22.34 noncharacter U+10FFFF is valid", "\xf4\x8f\xbf\xbf", 1);
  U8("6.22.x noncharacters U+FDD0..U+FDEF are valid", "\xef\xb7\x90\xef\xb7\xaf", 1);
  U8("6.23.1 U+FFFD replacement character", "\xef\xbf\xbd", 1);
  U8("6.23.x ASCII longer than a word, then a cut sequence", "abcdefghijklmnopq\xe2", 0);
  U8("6.23.x ASCII longer than a word, then a bad byte in the middle", "abcdefgh\x80ijklmnop", 0);
  U8("6.23.x mixed: a \xce\xba \xe2\x82\xac \xf0\x9f\x98\x80 over word boundaries",
     "aaaaaaa\xce\xba bbbbbbb\xe2\x82\xac ccccccc\xf0\x9f\x98\x80", 1);
  utf8_exhaustive();

  /* ---- 7.x close handling ---- */
  F(1, WS_OP_TEXT, "Hello World!");
  F(1, WS_OP_CLOSE, "\x03\xe8");
  stream("7.1.1 text then close", DEF_MAX, "T:Hello World! C1000:", 0);
  F(1, WS_OP_CLOSE, "\x03\xe8");
  F(1, WS_OP_CLOSE, "\x03\xe8");
  stream("7.1.2 close twice: the second is not read", DEF_MAX, "C1000:", 0);
  F(1, WS_OP_CLOSE, "\x03\xe8");
  F(1, WS_OP_PING, "");
  stream("7.1.3 ping after close is not read", DEF_MAX, "C1000:", 0);
  F(1, WS_OP_CLOSE, "\x03\xe8");
  F(1, WS_OP_TEXT, "Hello World!");
  stream("7.1.4 text after close is not read", DEF_MAX, "C1000:", 0);
  F(0, WS_OP_TEXT, "fragment1");
  F(1, WS_OP_CLOSE, "\x03\xe8");
  F(1, WS_OP_CONT, "fragment2");
  stream("7.1.5 close between fragments ends the reading", DEF_MAX, "C1000:", 0);
  frame(1, WS_OP_TEXT, NULL, 256 << 10);
  F(1, WS_OP_PING, "");
  F(1, WS_OP_CLOSE, "\x03\xe8");
  stream("7.1.6 256 KiB text, ping, close", DEF_MAX, "T262144 P: C1000:", 0);
  CLOSE("7.3.1 close without payload reports 1005", "", 0, WS_CLOSE_NO_STATUS);
  CLOSE("7.3.2 close with a 1-byte payload refused with 1002", "\x03", WS_ERR_CLOSE_LENGTH, 0);
  CLOSE("7.3.3 close with code 1000", "\x03\xe8", 0, 1000);
  CLOSE("7.3.4 close with code 1000 and a reason",
        "\x03\xe8"
        "Hello World!",
        0, 1000);
  {
    uint8_t p[126] = {0x03, 0xe8};
    memset(p + 2, '*', 124);
    close_case("7.3.5 close with a 123-byte reason", p, 125, 0, 1000);
    close_case("7.3.6 close with a 124-byte reason (payload 126) refused with 1002", p, 126,
               WS_ERR_CONTROL_TOO_LONG, 0);
  }
  CLOSE("7.5.1 close reason not UTF-8 refused with 1007",
        "\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
        WS_ERR_CLOSE_REASON, 0);
  CLOSE("7.5.x close reason cut inside a sequence refused with 1007", "\x03\xe8\xce",
        WS_ERR_CLOSE_REASON, 0);
  CLOSE("7.x close with code 1001 and a UTF-8 reason", "\x03\xe9\xce\xba\xe1\xbd\xb9", 0, 1001);
  {
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned bad[] = {0,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
      close_code(ok[i], 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
      close_code(bad[i], 0);
  }

  /* ---- 9.x limits ---- */
  data_len("9.1.1", WS_OP_TEXT, 64 << 10);
  data_len("9.1.3", WS_OP_TEXT, 1 << 20);
  data_len("9.1.6", WS_OP_TEXT, 16 << 20);
  data_len("9.2.1", WS_OP_BINARY, 64 << 10);
  data_len("9.2.6", WS_OP_BINARY, 16 << 20);
  data_frags("9.3.1", 1 << 20, 64);
  data_frags("9.3.5", 1 << 20, 4096);
  data_frags("9.3.7", 1 << 20, 65536);
  data_frags("9.x", 1 << 20, 1 << 19);
  HDR_MAX("9.x frame exactly at the limit (16 MiB)", "\x82\xff\0\0\0\0\x01\0\0\0" M4, 16 * MIB, 14,
          16 * MIB);
  HDR_MAX("9.x frame one byte over the limit refused with 1009 before its payload",
          "\x82\xff\0\0\0\0\x01\0\0\x01" M4, 16 * MIB, WS_ERR_TOO_BIG, 0);
  HDR_MAX("9.x 16-bit length over a limit of 1000 refused with 1009", "\x82\xfe\x03\xe9" M4, 1000,
          WS_ERR_TOO_BIG, 0);
  HDR_MAX("9.x 64-bit length 2^63-1 over the limit refused with 1009",
          "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff" M4, 16 * MIB, WS_ERR_TOO_BIG, 0);
  frame(1, WS_OP_BINARY, NULL, 1001);
  stream("9.x message over a limit of 1000 refused with 1009 after its header", 1000, "E1009", 4);
  for (int i = 0; i < 4; i++)
    frame(i == 3, i == 0 ? WS_OP_TEXT : WS_OP_CONT, NULL, 300);
  stream("9.x fragments summing over a limit of 1000 refused with 1009 at the 4th header", 1000,
         "E1009", 3 * 308 + 8);
  for (int i = 0; i < 4; i++)
    frame(i == 3, i == 0 ? WS_OP_BINARY : WS_OP_CONT, NULL, 250);
  stream("9.x fragments summing exactly to the limit of 1000", 1000, "B1000", 0);
  F(0, WS_OP_TEXT, "");
  frame(1, WS_OP_PING, NULL, 125);
  F(1, WS_OP_CONT, "");
  {
    char exp[140] = "P:";
    memset(exp + 2, 'x', 125);
    strcat(exp, " T:");
    stream("9.x control frames do not count toward a message's limit (limit 0)", 0, exp, 0);
  }
  {
    static const size_t pieces[] = {1, 2, 3, 5, 7, 8, 9, 63, 4096, 65537};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
      for (size_t skew = 0; skew < 4; skew += 3) {
        char desc[100];
        snprintf(desc, sizeof desc, "9.x unmasking 1 MiB in pieces of %zu from payload offset %zu",
                 pieces[i], skew);
        unmask_case(desc, pieces[i], skew);
      }
  }

  /* ---- the server's encoder ---- */
  ENC("encoder: empty final text, 2 bytes", 1, WS_OP_TEXT, 0, "\x81\x00");
  ENC("encoder: 125-byte binary, 2 bytes", 1, WS_OP_BINARY, 125, "\x82\x7d");
  ENC("encoder: 126 bytes, 16-bit form", 1, WS_OP_BINARY, 126, "\x82\x7e\x00\x7e");
  ENC("encoder: 65535 bytes, 16-bit form", 0, WS_OP_TEXT, 65535, "\x01\x7e\xff\xff");
  ENC("encoder: 65536 bytes, 64-bit form", 0, WS_OP_CONT, 65536, "\x00\x7f\0\0\0\0\0\x01\0\0");
  ENC("encoder: 2^63-1 bytes", 1, WS_OP_BINARY, INT64_MAX,
      "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff");
  ENC("encoder: close with 125 bytes", 1, WS_OP_CLOSE, 125, "\x88\x7d");
  ENC("encoder: pong", 1, WS_OP_PONG, 3, "\x8a\x03");
  ENC("encoder: length with the top bit set refused", 1, WS_OP_BINARY, UINT64_C(1) << 63, "");
  ENC("encoder: ping of 126 bytes refused", 1, WS_OP_PING, 126, "");
  ENC("encoder: ping with FIN clear refused", 0, WS_OP_PING, 1, "");
  ENC("encoder: opcode 3 refused", 1, 3, 1, "");
  ENC("encoder: opcode 0xB refused", 1, 0xB, 1, "");
  ENC("encoder: opcode 0x11 refused", 1, 0x11, 1, "");
  {
    uint8_t out[130];
    int n = ws_close_payload(out, sizeof out, 1000, (const uint8_t *)"bye", 3);
    if (n != 5 || memcmp(out,
                         "\x03\xe8"
                         "bye",
                         5) != 0)
      why("wrote %d bytes", n);
    report("encoder: close payload 1000 'bye'");
    if (ws_close_payload(out, sizeof out, 1005, NULL, 0) != -1 ||
        ws_close_payload(out, sizeof out, 999, NULL, 0) != -1)
      why("an unsendable code accepted");
    report("encoder: close payload with code 1005 or 999 refused");
    uint8_t reason[124];
    memset(reason, 'r', sizeof reason);
    if (ws_close_payload(out, sizeof out, 1000, reason, 124) != -1 ||
        ws_close_payload(out, 4, 1000, (const uint8_t *)"bye", 3) != -1 ||
        ws_close_payload(out, sizeof out, 4999, reason, 123) != 125)
      why("reason limits wrong");
    report("encoder: close reason at most 123 bytes and within the buffer");
  }
  error_table();

  printf("# %d passed, %d failed\n", n_pass, n_fail);
  return n_fail == 0 ? 0 : 1;
}
