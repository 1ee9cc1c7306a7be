/* test_parse.c: unit tests for the SCGI request parser (core/scgi_parse.c).

   Every input is copied so that its last byte sits just before a PROT_NONE guard page (and
   the data pages themselves are read-only), so any read past the end or any write faults.
   Each valid case is also checked against an independent reference decoder, with every
   proper prefix, with one header of capacity too few and with the limit at the exact block
   size and one below it.

   Output: one TAP-like line per case, then "# N passed, N failed"; exit status 0 only if no
   case failed. Build:
     gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wconversion -O1 -g \
         -fsanitize=address,undefined -fno-sanitize-recover=all \
         core/test_parse.c core/scgi_parse.c -o /tmp/test_parse */
#include "scgi_parse.h"

#include <inttypes.h>
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

#define OK 0 /* expected outcome "complete"; the parser never returns 0 on success */
#define INCOMPLETE SCGI_PARSE_INCOMPLETE
#define INVALID SCGI_PARSE_INVALID
#define TOO_LARGE SCGI_PARSE_TOO_LARGE
#define FAULT INT_MIN /* the parser touched the guard page (or the read-only input) */

#define DEF_MAX 4096 /* default max_header_size */
#define DEF_CAP 64   /* default header capacity */
#define MAX_HEADERS 1024
#define CANARIES 2 /* header slots past the capacity that the parser must not touch */

/* Literal helpers: LIT gives pointer and length (embedded NULs included), H one pair. */
#define LIT(s) (s), (sizeof(s) - 1)
#define H(n, v) n "\0" v "\0"
#define CL0 H("CONTENT_LENGTH", "0")
#define SCGI1 H("SCGI", "1")

static size_t page_size;
static int n_pass, n_fail, n_todo, case_no;
static const char *todo_note; /* set by TODO(): the next case is a known parser bug */

/* ---- guard-page placement ---------------------------------------------------------------- */

struct guarded {
  char *map;
  size_t map_len;
  const char *buf;
};

static void guard_place(struct guarded *g, const char *src, size_t n) {
  size_t data_pages = (n + page_size - 1) / page_size;
  g->map_len = (data_pages + 1) * page_size;
  void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  g->map = m;
  char *guard = g->map + data_pages * page_size;
  if (mprotect(guard, page_size, PROT_NONE) != 0) {
    perror("mprotect");
    exit(2);
  }
  char *dst = guard - n;
  if (n > 0) memcpy(dst, src, n);
  if (data_pages > 0 && mprotect(g->map, data_pages * page_size, PROT_READ) != 0) {
    perror("mprotect");
    exit(2);
  }
  g->buf = dst;
}

static void guard_release(struct guarded *g) {
  if (munmap(g->map, g->map_len) != 0) {
    perror("munmap");
    exit(2);
  }
}

/* ---- fault trap: a SIGSEGV/SIGBUS inside the parser becomes a FAULT result ---------------- */

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t in_parser;

static void on_fault(int sig) {
  if (!in_parser) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  in_parser = 0;
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

/* ---- one parser call ---------------------------------------------------------------------- */

struct outcome {
  int ret;
  size_t nh;
  uint64_t cl;
  int repeated;
  const char *reason;
  int bad_ptr;    /* a header pointer outside the input, or a field not NUL-terminated */
  int canary_hit; /* the parser wrote past the capacity it was given */
  size_t name_off[MAX_HEADERS], name_len[MAX_HEADERS];
  size_t value_off[MAX_HEADERS], value_len[MAX_HEADERS];
};

static struct scgi_header hdrs[MAX_HEADERS + CANARIES];

/* Offset of p in [base, base + n), or SIZE_MAX when outside. */
static size_t offset_in(const char *p, const char *base, size_t n) {
  uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
  return (a >= b && a - b < n) ? (size_t)(a - b) : SIZE_MAX;
}

static void run(const char *in, size_t n, size_t max, size_t cap, struct outcome *o) {
  static const char canary_name[] = "canary";
  struct guarded g;
  if (cap > MAX_HEADERS) abort();
  for (size_t i = 0; i < CANARIES; i++)
    hdrs[cap + i] = (struct scgi_header){canary_name, 6, canary_name, 6};
  guard_place(&g, in, n);
  o->nh = cap;
  o->cl = UINT64_MAX;
  o->repeated = -1;
  o->reason = NULL;
  o->bad_ptr = 0;
  if (sigsetjmp(fault_jmp, 1) == 0) {
    in_parser = 1;
    o->ret = scgi_parse_request(g.buf, n, max, hdrs, &o->nh, &o->cl, &o->repeated, &o->reason);
    in_parser = 0;
  } else {
    o->ret = FAULT;
  }
  o->canary_hit = 0;
  for (size_t i = 0; i < CANARIES; i++) {
    const struct scgi_header *c = &hdrs[cap + i];
    if (c->name != canary_name || c->name_len != 6 || c->value != canary_name || c->value_len != 6)
      o->canary_hit = 1;
  }
  if (o->ret > 0) {
    for (size_t i = 0; i < o->nh && i < cap; i++) {
      size_t no = offset_in(hdrs[i].name, g.buf, n), vo = offset_in(hdrs[i].value, g.buf, n);
      if (no == SIZE_MAX || vo == SIZE_MAX || hdrs[i].name_len >= n - no ||
          hdrs[i].value_len >= n - vo || g.buf[no + hdrs[i].name_len] != '\0' ||
          g.buf[vo + hdrs[i].value_len] != '\0') {
        o->bad_ptr = 1;
        break;
      }
      o->name_off[i] = no;
      o->name_len[i] = hdrs[i].name_len;
      o->value_off[i] = vo;
      o->value_len[i] = hdrs[i].value_len;
    }
  }
  guard_release(&g);
}

static const char *ret_name(int r, char *tmp, size_t tmp_len) {
  switch (r) {
  case INCOMPLETE: return "INCOMPLETE";
  case INVALID: return "INVALID";
  case TOO_LARGE: return "TOO_LARGE";
  case FAULT: return "SIGSEGV: access outside the input";
  default: snprintf(tmp, tmp_len, "complete(%d)", r); return tmp;
  }
}

/* ---- reference decoder (valid inputs only) ------------------------------------------------ */

struct ref {
  size_t colon, block, consumed, count;
  int repeated; /* some name occurs twice */
  size_t name_off[MAX_HEADERS], name_len[MAX_HEADERS];
  size_t value_off[MAX_HEADERS], value_len[MAX_HEADERS];
};

static size_t scan_nul(const char *in, size_t p, size_t end) {
  while (p < end && in[p] != '\0')
    p++;
  return p;
}

static int ref_decode(const char *in, size_t n, struct ref *r) {
  size_t i = 0, len = 0;
  while (i < n && in[i] >= '0' && in[i] <= '9')
    len = len * 10 + (size_t)(in[i++] - '0');
  if (i == 0 || i == n || in[i] != ':') return -1;
  size_t p = i + 1, end = p + len;
  if (end >= n || in[end] != ',') return -1;
  r->colon = i;
  r->block = len;
  r->consumed = end + 1;
  r->count = 0;
  while (p < end) {
    size_t q = scan_nul(in, p, end);
    if (q == end || r->count == MAX_HEADERS) return -1;
    r->name_off[r->count] = p;
    r->name_len[r->count] = q - p;
    p = q + 1;
    q = scan_nul(in, p, end);
    if (q == end) return -1;
    r->value_off[r->count] = p;
    r->value_len[r->count] = q - p;
    p = q + 1;
    r->count++;
  }
  r->repeated = 0;
  for (size_t a = 0; a < r->count; a++)
    for (size_t b = a + 1; b < r->count; b++)
      if (r->name_len[a] == r->name_len[b] &&
          memcmp(in + r->name_off[a], in + r->name_off[b], r->name_len[a]) == 0)
        r->repeated = 1;
  return 0;
}

/* ---- checks ------------------------------------------------------------------------------- */

static void report(const char *desc, const char *detail) {
  int ok = detail[0] == '\0';
  case_no++;
  if (todo_note != NULL) {
    if (ok) {
      printf("ok %d - %s # TODO %s (now passes: drop the TODO)\n", case_no, desc, todo_note);
      n_pass++;
    } else {
      printf("not ok %d - %s (%s) # TODO %s\n", case_no, desc, detail, todo_note);
      n_todo++;
    }
    todo_note = NULL;
    return;
  }
  if (ok) {
    printf("ok %d - %s\n", case_no, desc);
    n_pass++;
  } else {
    printf("not ok %d - %s (%s)\n", case_no, desc, detail);
    n_fail++;
  }
}

static struct outcome out, sub;
static struct ref ref;

/* Writes the failure detail and returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(char *detail, size_t dl, const char *fmt,
                                                      ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, dl, fmt, ap);
  va_end(ap);
  return -1;
}

/* Compares a complete parse with the reference decoding; returns 0 or writes detail. */
static int compare_valid(const struct outcome *o, const char *in, size_t cap, uint64_t want_cl,
                         size_t want_nh, char *detail, size_t dl) {
  char tmp[32];
  if (o->ret <= 0) {
    snprintf(detail, dl, "expected complete, got %s: %s", ret_name(o->ret, tmp, sizeof tmp),
             o->reason ? o->reason : "(no reason)");
    return -1;
  }
  if ((size_t)o->ret != ref.consumed) {
    snprintf(detail, dl, "consumed %d, expected %zu", o->ret, ref.consumed);
    return -1;
  }
  if (o->canary_hit) return fail(detail, dl, "wrote past the header capacity");
  if (o->nh != want_nh || o->nh != ref.count || o->nh > cap) {
    snprintf(detail, dl, "num_headers %zu, expected %zu (reference %zu)", o->nh, want_nh,
             ref.count);
    return -1;
  }
  if (o->cl != want_cl) {
    snprintf(detail, dl, "content_length %" PRIu64 ", expected %" PRIu64, o->cl, want_cl);
    return -1;
  }
  if (o->bad_ptr) return fail(detail, dl, "header pointer outside the input");
  if (o->repeated != ref.repeated)
    return fail(detail, dl, "repeated %d, expected %d", o->repeated, ref.repeated);
  for (size_t i = 0; i < o->nh; i++) {
    if (o->name_off[i] != ref.name_off[i] || o->name_len[i] != ref.name_len[i] ||
        o->value_off[i] != ref.value_off[i] || o->value_len[i] != ref.value_len[i]) {
      snprintf(detail, dl,
               "header %zu: name @%zu+%zu value @%zu+%zu, expected name @%zu+%zu value @%zu+%zu", i,
               o->name_off[i], o->name_len[i], o->value_off[i], o->value_len[i], ref.name_off[i],
               ref.name_len[i], ref.value_off[i], ref.value_len[i]);
      return -1;
    }
    if (o->name_len[i] == 0) return fail(detail, dl, "header %zu: empty name", i);
  }
  if (o->nh == 0 || o->name_len[0] != 14 || memcmp(in + o->name_off[0], "CONTENT_LENGTH", 14))
    return fail(detail, dl, "first header is not CONTENT_LENGTH");
  return 0;
}

/* The extra checks run on every valid input: prefixes, capacity - 1, limit = block size and
   limit = block size - 1. */
static void check_valid_extras(const char *in, size_t n, size_t max, size_t cap, uint64_t want_cl,
                               size_t want_nh, char *detail, size_t dl) {
  char tmp[32];
  for (size_t k = 0; k < n; k++) {
    run(in, k, max, cap, &sub);
    if (k < ref.consumed) {
      if (sub.ret != INCOMPLETE) {
        snprintf(detail, dl, "prefix %zu of %zu: got %s, expected INCOMPLETE", k, n,
                 ret_name(sub.ret, tmp, sizeof tmp));
        return;
      }
    } else if (compare_valid(&sub, in, cap, want_cl, want_nh, detail, dl) < 0) {
      size_t used = strlen(detail);
      snprintf(detail + used, dl - used, " [prefix %zu of %zu]", k, n);
      return;
    }
  }
  if (ref.count > 0) {
    run(in, n, max, ref.count - 1, &sub);
    if (sub.ret != TOO_LARGE || sub.canary_hit) {
      snprintf(detail, dl, "capacity %zu: got %s%s, expected TOO_LARGE", ref.count - 1,
               ret_name(sub.ret, tmp, sizeof tmp), sub.canary_hit ? " (wrote past it)" : "");
      return;
    }
  }
  run(in, n, ref.block, cap, &sub);
  if (compare_valid(&sub, in, cap, want_cl, want_nh, detail, dl) < 0) {
    size_t used = strlen(detail);
    snprintf(detail + used, dl - used, " [max_header_size %zu = block size]", ref.block);
    return;
  }
  if (ref.block > 0) {
    run(in, n, ref.block - 1, cap, &sub);
    if (sub.ret != TOO_LARGE)
      snprintf(detail, dl, "max_header_size %zu: got %s, expected TOO_LARGE", ref.block - 1,
               ret_name(sub.ret, tmp, sizeof tmp));
  }
}

/* One case: parse in[0..n) and compare with the expected outcome. For expect == OK the
   result is also compared with the reference decoder and the extras above are run. */
static void check(const char *desc, const char *in, size_t n, size_t max, size_t cap, int expect,
                  uint64_t want_cl, size_t want_nh) {
  char detail[512] = "", tmp[32], tmp2[32];
  run(in, n, max, cap, &out);
  if (expect == OK) {
    if (ref_decode(in, n, &ref) < 0) {
      snprintf(detail, sizeof detail, "test bug: the reference decoder rejects the input");
    } else if (compare_valid(&out, in, cap, want_cl, want_nh, detail, sizeof detail) == 0) {
      check_valid_extras(in, n, max, cap, want_cl, want_nh, detail, sizeof detail);
    }
  } else if (out.ret != expect) {
    snprintf(detail, sizeof detail, "expected %s, got %s", ret_name(expect, tmp, sizeof tmp),
             ret_name(out.ret, tmp2, sizeof tmp2));
  } else if (out.canary_hit) {
    snprintf(detail, sizeof detail, "wrote past the header capacity");
  } else if (expect != INCOMPLETE && (out.reason == NULL || out.reason[0] == '\0')) {
    snprintf(detail, sizeof detail, "no reason given for the error");
  }
  report(desc, detail);
}

/* ---- input builders ----------------------------------------------------------------------- */

static char nsbuf[1 << 17];

/* Wraps a header block as "LEN:block," followed by tail. */
static size_t netstring(char *dst, size_t cap, const char *block, size_t blen, const char *tail,
                        size_t tlen) {
  int k = snprintf(dst, cap, "%zu:", blen);
  size_t p = (size_t)k;
  if (k < 0 || p + blen + 1 + tlen > cap) abort();
  if (blen > 0) memcpy(dst + p, block, blen);
  p += blen;
  dst[p++] = ',';
  if (tlen > 0) memcpy(dst + p, tail, tlen);
  return p + tlen;
}

static void ns_case(const char *desc, const char *block, size_t blen, const char *tail, size_t tlen,
                    size_t max, size_t cap, int expect, uint64_t cl, size_t nh) {
  size_t n = netstring(nsbuf, sizeof nsbuf, block, blen, tail, tlen);
  check(desc, nsbuf, n, max, cap, expect, cl, nh);
}

struct block {
  char b[1 << 16];
  size_t n;
};

static void blk_bytes(struct block *b, const char *p, size_t n) {
  if (b->n + n > sizeof b->b) abort();
  memcpy(b->b + b->n, p, n);
  b->n += n;
}

static void blk_add(struct block *b, const char *name, const char *value) {
  blk_bytes(b, name, strlen(name) + 1);
  blk_bytes(b, value, strlen(value) + 1);
}

static struct block blk;

/* One line per case. */
#define NS(d, block, exp) ns_case(d, LIT(block), NULL, 0, DEF_MAX, DEF_CAP, exp, 0, 0)
#define NS_OK(d, block, cl, nh) ns_case(d, LIT(block), NULL, 0, DEF_MAX, DEF_CAP, OK, cl, nh)
#define NS_BODY(d, block, body, cl, nh)                                                            \
  ns_case(d, LIT(block), LIT(body), DEF_MAX, DEF_CAP, OK, cl, nh)
#define RAW(d, in, exp) check(d, LIT(in), DEF_MAX, DEF_CAP, exp, 0, 0)
#define RAW_OK(d, in, cl, nh) check(d, LIT(in), DEF_MAX, DEF_CAP, OK, cl, nh)
#define RAW_MAX(d, in, max, exp) check(d, LIT(in), max, DEF_CAP, exp, 0, 0)
#define BLK(d, max, cap, exp, cl, nh) ns_case(d, blk.b, blk.n, NULL, 0, max, cap, exp, cl, nh)
#define TODO(note) (todo_note = (note))

/* nginx-like header set (as sent by ngx_http_scgi_module with the stock scgi_params). */
static void nginx_headers(struct block *b, const char *content_length) {
  b->n = 0;
  blk_add(b, "CONTENT_LENGTH", content_length);
  blk_add(b, "SCGI", "1");
  blk_add(b, "REQUEST_METHOD", "POST");
  blk_add(b, "REQUEST_URI", "/api/items?id=42&sort=desc");
  blk_add(b, "QUERY_STRING", "id=42&sort=desc");
  blk_add(b, "CONTENT_TYPE", "application/json");
  blk_add(b, "DOCUMENT_URI", "/api/items");
  blk_add(b, "DOCUMENT_ROOT", "/var/www/html");
  blk_add(b, "SCGI_PATH_INFO", "");
  blk_add(b, "SERVER_PROTOCOL", "HTTP/1.1");
  blk_add(b, "REQUEST_SCHEME", "https");
  blk_add(b, "HTTPS", "on");
  blk_add(b, "REMOTE_ADDR", "203.0.113.7");
  blk_add(b, "REMOTE_PORT", "54321");
  blk_add(b, "SERVER_PORT", "443");
  blk_add(b, "SERVER_NAME", "example.com");
  blk_add(b, "HTTP_HOST", "example.com");
  blk_add(b, "HTTP_USER_AGENT", "curl/8.5.0");
  blk_add(b, "HTTP_ACCEPT", "*/*");
  blk_add(b, "HTTP_CONTENT_TYPE", "application/json");
  blk_add(b, "HTTP_CONTENT_LENGTH", content_length);
  blk_add(b, "HTTP_X_FORWARDED_FOR", "198.51.100.1, 203.0.113.7");
}

int main(void) {
  long ps = sysconf(_SC_PAGESIZE);
  page_size = ps > 0 ? (size_t)ps : 4096;
  setvbuf(stdout, NULL, _IOLBF, 0);
  trap_faults();

  /* ---- valid requests ---- */
  RAW_OK("minimal valid request, literal 24:...,", "24:" CL0 SCGI1 ",", 0, 2);
  NS_OK("minimal valid request, SCGI first after CONTENT_LENGTH", CL0 SCGI1, 0, 2);
  NS_OK("SCGI last", CL0 H("REQUEST_METHOD", "GET") H("A", "b") SCGI1, 0, 4);
  NS_OK("SCGI in the middle", CL0 H("A", "1") SCGI1 H("B", "2"), 0, 4);
  NS_BODY("body bytes after the comma are not consumed", H("CONTENT_LENGTH", "5") SCGI1, "hello", 5,
          2);
  NS_BODY("body that looks like a netstring with NULs", H("CONTENT_LENGTH", "12") SCGI1,
          "3:a\0b,\0,,9:x", 12, 2);
  NS_OK("empty values", CL0 SCGI1 H("HTTPS", "") H("QUERY_STRING", "") H("X", ""), 0, 5);
  NS_OK("non-ASCII bytes in values",
        CL0 SCGI1 H("HTTP_X_NAME", "caf\xc3\xa9") H("B", "\xff\x80\x01\x7f"), 0, 4);
  NS_OK("non-ASCII bytes in names", CL0 SCGI1 H("HTTP_\xc3\x9c", "1") H("\xff", "2"), 0, 4);
  NS_OK("values with ':' ',' '=' and spaces", CL0 SCGI1 H("A", "1:2,3=4 5") H("B", ","), 0, 4);
  NS_OK("names that differ only in case", CL0 SCGI1 H("Host", "a") H("HOST", "b") H("scgi", "x"), 0,
        5);
  NS_OK("names with a common prefix or first byte",
        CL0 SCGI1 H("AB", "1") H("A", "2") H("AC", "3") H("ABC", "4"), 0, 6);
  NS_OK("name CONTENT_LENGTH as a prefix of a later name", CL0 SCGI1 H("CONTENT_LENGTH_X", "1"), 0,
        3);
  NS_OK("CONTENT_LENGTH 1234", H("CONTENT_LENGTH", "1234") SCGI1, 1234, 2);
  NS_OK("CONTENT_LENGTH with leading zeros (digits only)", H("CONTENT_LENGTH", "007") SCGI1, 7, 2);
  NS_OK("CONTENT_LENGTH 19 digits", H("CONTENT_LENGTH", "9999999999999999999") SCGI1,
        UINT64_C(9999999999999999999), 2);

  nginx_headers(&blk, "27");
  ns_case("nginx-like request, 22 headers, with body", blk.b, blk.n,
          LIT("{\"name\":\"widget\",\"qty\":3}\n\n"), DEF_MAX, DEF_CAP, OK, 27, 22);
  nginx_headers(&blk, "0");
  BLK("nginx-like request, 22 headers, no body", DEF_MAX, DEF_CAP, OK, 0, 22);

  blk.n = 0;
  blk_add(&blk, "CONTENT_LENGTH", "0");
  blk_add(&blk, "SCGI", "1");
  for (int i = 2; i < 200; i++) {
    char name[32], value[32];
    snprintf(name, sizeof name, "HTTP_X_HEADER_%03d", i);
    snprintf(value, sizeof value, "value-%d", i * 7);
    blk_add(&blk, name, value);
  }
  BLK("200 headers", 65536, 256, OK, 0, 200);
  BLK("200 headers, capacity exactly 200", 65536, 200, OK, 0, 200);
  BLK("200 headers, capacity 199 (TOO_LARGE)", 65536, 199, TOO_LARGE, 0, 0);
  BLK("header count over capacity: 200 headers, capacity 64", 65536, DEF_CAP, TOO_LARGE, 0, 0);
  ns_case("header count over capacity: 3 headers, capacity 2", LIT(CL0 SCGI1 H("A", "1")), NULL, 0,
          DEF_MAX, 2, TOO_LARGE, 0, 0);
  ns_case("capacity 0", LIT(CL0 SCGI1), NULL, 0, DEF_MAX, 0, TOO_LARGE, 0, 0);

  /* block exactly at the limit: 24 (CL0 SCGI1) + "X\0" + 73 bytes + "\0" = 100 */
  blk.n = 0;
  blk_bytes(&blk, LIT(CL0 SCGI1 "X"));
  blk_bytes(&blk, "", 1);
  for (int i = 0; i < 73; i++)
    blk_bytes(&blk, "a", 1);
  blk_bytes(&blk, "", 1);
  if (blk.n != 100) abort();
  BLK("block size exactly max_header_size (100)", 100, DEF_CAP, OK, 0, 3);
  BLK("block size one over max_header_size (99)", 99, DEF_CAP, TOO_LARGE, 0, 0);
  RAW_MAX("length digits over the limit, nothing else available: \"100\" max 99", "100", 99,
          TOO_LARGE);
  RAW_MAX("length digits over the limit: \"1000\" max 999", "1000", 999, TOO_LARGE);
  RAW_MAX("length digits at the limit, nothing else: \"100\" max 100", "100", 100, INCOMPLETE);
  RAW_MAX("length digits below the limit: \"10\" max 99", "10", 99, INCOMPLETE);
  RAW_MAX("length digits over the limit followed by a bad byte", "5000x", DEF_MAX, TOO_LARGE);
  RAW("26 length digits, no overflow with a sane limit", "99999999999999999999999999", TOO_LARGE);
  RAW_MAX("max_header_size 0, length 1", "1", 0, TOO_LARGE);
  RAW_MAX("length 2^64+24 with max_header_size SIZE_MAX", "18446744073709551640:" CL0 SCGI1 ",",
          SIZE_MAX, TOO_LARGE);

  /* ---- incomplete ---- */
  RAW("empty input", "", INCOMPLETE);
  RAW("length digit only", "2", INCOMPLETE);
  RAW("length and colon only", "24:", INCOMPLETE);
  RAW("block without the comma yet", "24:" CL0 SCGI1, INCOMPLETE);
  RAW("\"0:\" without the comma yet", "0:", INCOMPLETE);

  /* ---- netstring framing ---- */
  RAW("bad length char: letter", "x4:" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: letter after a digit", "2x:" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: minus sign", "-24:" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: plus sign", "+24:" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: leading space", " 24:" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: space before colon", "24 :" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: hex", "0x18:" CL0 SCGI1 ",", INVALID);
  RAW("bad length char: NUL", "2\0", INVALID);
  RAW("bad length char: ';' instead of ':'", "24;" CL0 SCGI1 ",", INVALID);
  RAW("leading zero: \"05:\"", "05:" H("A", "b") ",", INVALID);
  RAW("leading zero, digits only: \"05\"", "05", INVALID);
  RAW("leading zero: \"00:\"", "00:,", INVALID);
  RAW("leading zero before a valid block: \"024:\"", "024:" CL0 SCGI1 ",", INVALID);
  RAW("\"0:,\" (no CONTENT_LENGTH)", "0:,", INVALID);
  RAW("empty length \":\"", ":", INVALID);
  RAW("empty length before a valid block", ":" CL0 SCGI1 ",", INVALID);
  RAW("missing comma: ';'", "24:" CL0 SCGI1 ";", INVALID);
  RAW("missing comma: NUL", "24:" CL0 SCGI1 "\0", INVALID);
  RAW("missing comma: body starts right after the block", "24:" CL0 SCGI1 "hello", INVALID);
  RAW("\"0:x\"", "0:x", INVALID);
  RAW("length one short of the block", "23:" CL0 SCGI1 ",", INVALID);
  RAW("length cuts a name in half", "20:" CL0 SCGI1 ",", INVALID);

  /* ---- header pairs ---- */
  NS("missing NUL after the last name", CL0 SCGI1 "NAME", INVALID);
  NS("missing NUL after the last value", CL0 SCGI1 "NAME\0value", INVALID);
  NS("missing NUL after CONTENT_LENGTH's value",
     "CONTENT_LENGTH\0"
     "0",
     INVALID);
  NS("only a name, no value at all", "CONTENT_LENGTH", INVALID);
  NS("empty name in the middle", CL0 SCGI1 "\0x\0" H("B", "2"), INVALID);
  NS("empty name first", "\0x\0" CL0 SCGI1, INVALID);
  NS("empty name and value (two NULs)", CL0 SCGI1 "\0\0", INVALID);
  NS("CONTENT_LENGTH not first", SCGI1 CL0, INVALID);
  NS("CONTENT_LENGTH second after another header", H("A", "1") CL0 SCGI1, INVALID);
  NS("CONTENT_LENGTH in lower case", H("content_length", "0") SCGI1, INVALID);
  NS("CONTENT_LENGTH with a suffix", H("CONTENT_LENGTHX", "0") SCGI1, INVALID);
  NS("CONTENT_LENGTH truncated name", H("CONTENT_LENGT", "0") SCGI1, INVALID);
  NS("CONTENT_LENGTH missing (only SCGI)", SCGI1, INVALID);
  NS("CONTENT_LENGTH not digits", H("CONTENT_LENGTH", "abc") SCGI1, INVALID);
  NS("CONTENT_LENGTH empty", H("CONTENT_LENGTH", "") SCGI1, INVALID);
  NS("CONTENT_LENGTH with '-' sign", H("CONTENT_LENGTH", "-1") SCGI1, INVALID);
  NS("CONTENT_LENGTH with '+' sign", H("CONTENT_LENGTH", "+1") SCGI1, INVALID);
  NS("CONTENT_LENGTH with a leading space", H("CONTENT_LENGTH", " 1") SCGI1, INVALID);
  NS("CONTENT_LENGTH with a trailing space", H("CONTENT_LENGTH", "1 ") SCGI1, INVALID);
  NS("CONTENT_LENGTH with an inner space", H("CONTENT_LENGTH", "1 0") SCGI1, INVALID);
  NS("CONTENT_LENGTH decimal point", H("CONTENT_LENGTH", "1.0") SCGI1, INVALID);
  NS("CONTENT_LENGTH hex", H("CONTENT_LENGTH", "0x10") SCGI1, INVALID);
  NS("CONTENT_LENGTH too long (20 digits, max uint64)",
     H("CONTENT_LENGTH", "18446744073709551615") SCGI1, INVALID);
  NS("CONTENT_LENGTH too long (20 digits, small value)",
     H("CONTENT_LENGTH", "00000000000000000001") SCGI1, INVALID);
  NS("missing SCGI", CL0 H("REQUEST_METHOD", "GET"), INVALID);
  NS("missing SCGI (only CONTENT_LENGTH)", CL0, INVALID);
  NS("missing SCGI (lower-case scgi)", CL0 H("scgi", "1"), INVALID);
  NS("SCGI=0", CL0 H("SCGI", "0"), INVALID);
  NS("SCGI=11", CL0 H("SCGI", "11"), INVALID);
  NS("SCGI empty", CL0 H("SCGI", ""), INVALID);
  NS("SCGI=\" 1\"", CL0 H("SCGI", " 1"), INVALID);
  NS("SCGI=2", CL0 H("SCGI", "2"), INVALID);
  NS_OK("repeated name, adjacent (nginx 1.22: one pair per repeated line)",
        CL0 SCGI1 H("A", "1") H("A", "2"), 0, 4);
  NS_OK("repeated name, same value", CL0 SCGI1 H("HTTP_HOST", "x") H("HTTP_HOST", "x"), 0, 4);
  NS_OK("repeated name, distant",
        CL0 H("HTTP_HOST", "a") SCGI1 H("B", "1") H("C", "2") H("D", "3") H("E", "4") H("F", "5")
            H("G", "6") H("HTTP_HOST", "b"),
        0, 10);
  NS_OK("repeated cookie three times",
        CL0 SCGI1 H("HTTP_COOKIE", "a=1") H("HTTP_X", "y") H("HTTP_COOKIE", "b=2")
            H("HTTP_COOKIE", "c=3"),
        0, 6);
  NS("repeated CONTENT_LENGTH, adjacent", CL0 CL0 SCGI1, INVALID);
  NS("repeated CONTENT_LENGTH, later", CL0 SCGI1 H("A", "1") H("CONTENT_LENGTH", "5"), INVALID);
  NS("repeated CONTENT_LENGTH, same value later", CL0 SCGI1 H("A", "1") CL0, INVALID);
  NS("repeated SCGI", CL0 SCGI1 SCGI1, INVALID);
  NS("repeated SCGI, distant", CL0 SCGI1 H("A", "1") H("B", "2") SCGI1, INVALID);
  NS("repeated SCGI, second one not 1", CL0 SCGI1 H("SCGI", "2"), INVALID);
  nginx_headers(&blk, "0");
  blk_add(&blk, "HTTP_ACCEPT", "text/html");
  BLK("repeated name at the end of an nginx-like request", DEF_MAX, DEF_CAP, OK, 0, 23);
  nginx_headers(&blk, "0");
  for (int i = 0; i < 200; i++)
    blk_add(&blk, "HTTP_X_IGNORABLE", "v");
  BLK("200 repeats of one ignorable header", DEF_MAX * 2, 256, OK, 0, 222);
  nginx_headers(&blk, "0");
  BLK("no repeats in an nginx-like request", DEF_MAX, DEF_CAP, OK, 0, 22);

  if (n_todo > 0) printf("# %d known parser bug(s) marked TODO, not counted as failures\n", n_todo);
  printf("# %d passed, %d failed\n", n_pass, n_fail);
  return n_fail == 0 ? 0 : 1;
}
