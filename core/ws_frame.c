/* ws_frame.c: RFC 6455 frame parser, unmasker, message rules, UTF-8 and close checks, server
   frame encoder (see ws_frame.h). */
#include "ws_frame.h"

#include <string.h>

#define TOP_BIT ((uint64_t)1 << 63)

static int is_control(unsigned op) { return (op & 0x8) != 0; }

static int known_opcode(unsigned op) {
  return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
         op == WS_OP_PING || op == WS_OP_PONG;
}

/* Checks the first byte: no reserved bits, a known opcode. */
static int check_byte0(uint8_t b) {
  if (b & 0x70) return WS_ERR_RSV;
  if (!known_opcode(b & 0x0F)) return WS_ERR_OPCODE;
  return 0;
}

/* Checks the second byte against the first: mask, control frame rules. */
static int check_byte1(uint8_t b0, uint8_t b1) {
  unsigned op = b0 & 0x0F, len7 = b1 & 0x7F;
  if (!(b1 & 0x80)) return WS_ERR_UNMASKED;
  if (is_control(op)) {
    if (!(b0 & 0x80)) return WS_ERR_CONTROL_FRAGMENTED;
    if (len7 > WS_CONTROL_MAX) return WS_ERR_CONTROL_TOO_LONG;
  }
  return 0;
}

int ws_frame_parse(const uint8_t *buf, size_t len, uint64_t max_payload, struct ws_frame *f) {
  if (len < 1) return WS_INCOMPLETE;
  int rc = check_byte0(buf[0]);
  if (rc < 0) return rc;
  if (len < 2) return WS_INCOMPLETE;
  rc = check_byte1(buf[0], buf[1]);
  if (rc < 0) return rc;
  unsigned len7 = buf[1] & 0x7F;
  size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  uint64_t plen = len7;
  if (ext > 0) {
    /* the length's bytes fail fast too: top bit, then the value once all are present */
    if (ext == 8 && len >= 3 && (buf[2] & 0x80)) return WS_ERR_LENGTH_TOP_BIT;
    if (len < 2 + ext) return WS_INCOMPLETE;
    plen = 0;
    for (size_t i = 0; i < ext; i++)
      plen = plen << 8 | buf[2 + i];
    if ((ext == 2 && plen < 126) || (ext == 8 && plen <= 0xFFFF)) return WS_ERR_LENGTH_NOT_MINIMAL;
  }
  if (!is_control(buf[0] & 0x0F) && plen > max_payload) return WS_ERR_TOO_BIG;
  size_t hlen = 2 + ext + 4;
  if (len < hlen) return WS_INCOMPLETE;
  f->fin = (uint8_t)(buf[0] >> 7);
  f->rsv = (uint8_t)((buf[0] >> 4) & 7);
  f->opcode = (uint8_t)(buf[0] & 0x0F);
  f->masked = 1;
  memcpy(f->mask, buf + 2 + ext, 4);
  f->payload_len = plen;
  f->header_len = hlen;
  return (int)hlen;
}

uint64_t ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t offset) {
  size_t i = 0;
  unsigned k = (unsigned)(offset & 3);
  /* eight bytes at a time with the key rotated to this piece's offset (byte order free) */
  uint8_t pat[8];
  for (unsigned j = 0; j < 8; j++)
    pat[j] = mask[(k + j) & 3];
  uint64_t key;
  memcpy(&key, pat, 8);
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, data + i, 8);
    w ^= key;
    memcpy(data + i, &w, 8);
  }
  for (; i < n; i++)
    data[i] ^= mask[(k + i) & 3];
  return offset + n;
}

int ws_msg_frame(struct ws_msg *m, const struct ws_frame *f, uint64_t max_message) {
  if (is_control(f->opcode)) return 0; /* allowed anywhere; the parser checked their shape */
  if (f->opcode == WS_OP_CONT) {
    if (!m->in_fragment) return WS_ERR_CONT_WITHOUT_START;
    if (f->payload_len > max_message || m->len > max_message - f->payload_len)
      return WS_ERR_TOO_BIG;
    m->len += f->payload_len;
  } else {
    if (m->in_fragment) return WS_ERR_DATA_IN_FRAGMENTED;
    if (f->payload_len > max_message) return WS_ERR_TOO_BIG;
    m->opcode = f->opcode;
    m->len = f->payload_len;
    ws_utf8_init(&m->utf8);
  }
  m->in_fragment = (uint8_t)!f->fin;
  return 0;
}

void ws_utf8_init(struct ws_utf8 *u) {
  u->need = 0;
  u->lo = 0x80;
  u->hi = 0xBF;
}

/* Sets the state for lead byte b; 0, or WS_ERR_UTF8 when no sequence starts with b. */
static int utf8_lead(struct ws_utf8 *u, uint8_t b) {
  u->lo = 0x80;
  u->hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    u->need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    u->need = 2;
    if (b == 0xE0) u->lo = 0xA0; /* below: overlong */
    if (b == 0xED) u->hi = 0x9F; /* above: surrogates U+D800..U+DFFF */
  } else if (b >= 0xF0 && b <= 0xF4) {
    u->need = 3;
    if (b == 0xF0) u->lo = 0x90; /* below: overlong */
    if (b == 0xF4) u->hi = 0x8F; /* above: over U+10FFFF */
  } else {
    return WS_ERR_UTF8; /* a continuation byte, C0/C1 (overlong) or F5..FF */
  }
  return 0;
}

int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (u->need == 0) {
      /* ASCII runs eight bytes at a time */
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & UINT64_C(0x8080808080808080)) break;
        i += 8;
      }
      if (i == n) break;
      uint8_t b = p[i++];
      if (b < 0x80) continue;
      if (utf8_lead(u, b) < 0) return WS_ERR_UTF8;
      continue;
    }
    uint8_t b = p[i++];
    if (b < u->lo || b > u->hi) return WS_ERR_UTF8;
    u->need--;
    u->lo = 0x80;
    u->hi = 0xBF;
  }
  return 0;
}

int ws_utf8_finish(const struct ws_utf8 *u) { return u->need == 0 ? 0 : WS_ERR_UTF8; }

int ws_close_code_valid(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

int ws_close_parse(const uint8_t *p, size_t n, unsigned *code, const uint8_t **reason,
                   size_t *reason_len) {
  *reason = p;
  *reason_len = 0;
  if (n == 0) {
    *code = WS_CLOSE_NO_STATUS;
    return 0;
  }
  if (n == 1) return WS_ERR_CLOSE_LENGTH;
  if (n > WS_CONTROL_MAX) return WS_ERR_CONTROL_TOO_LONG;
  *code = (unsigned)p[0] << 8 | p[1];
  if (!ws_close_code_valid(*code)) return WS_ERR_CLOSE_CODE;
  struct ws_utf8 u;
  ws_utf8_init(&u);
  if (ws_utf8_feed(&u, p + 2, n - 2) < 0 || ws_utf8_finish(&u) < 0) return WS_ERR_CLOSE_REASON;
  *reason = p + 2;
  *reason_len = n - 2;
  return 0;
}

size_t ws_frame_header(uint8_t out[WS_SERVER_HEADER_MAX], int fin, unsigned opcode, uint64_t len) {
  if (opcode > 0xF || !known_opcode(opcode) || (len & TOP_BIT)) return 0;
  if (is_control(opcode) && (!fin || len > WS_CONTROL_MAX)) return 0;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++)
    out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

int ws_close_payload(uint8_t *out, size_t cap, unsigned code, const uint8_t *reason, size_t n) {
  if (!ws_close_code_valid(code) || n > WS_CONTROL_MAX - 2 || cap < n + 2) return -1;
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  if (n > 0) memcpy(out + 2, reason, n);
  return (int)(n + 2);
}

unsigned ws_error_close_code(int err) {
  switch (err) {
  case WS_ERR_TOO_BIG: return 1009;
  case WS_ERR_UTF8:
  case WS_ERR_CLOSE_REASON: return 1007;
  default: return err <= WS_ERR_RSV && err >= WS_ERR_CLOSE_REASON ? 1002 : 0;
  }
}

const char *ws_error_reason(int err) {
  switch (err) {
  case WS_INCOMPLETE: return "incomplete frame";
  case WS_ERR_RSV: return "reserved bit set without an extension";
  case WS_ERR_OPCODE: return "unknown opcode";
  case WS_ERR_UNMASKED: return "client frame not masked";
  case WS_ERR_CONTROL_FRAGMENTED: return "fragmented control frame";
  case WS_ERR_CONTROL_TOO_LONG: return "control frame over 125 bytes";
  case WS_ERR_LENGTH_NOT_MINIMAL: return "payload length not in its shortest form";
  case WS_ERR_LENGTH_TOP_BIT: return "64-bit payload length with the top bit set";
  case WS_ERR_TOO_BIG: return "message too big";
  case WS_ERR_CONT_WITHOUT_START: return "continuation frame without a message to continue";
  case WS_ERR_DATA_IN_FRAGMENTED: return "new data frame inside a fragmented message";
  case WS_ERR_UTF8: return "text is not valid UTF-8";
  case WS_ERR_CLOSE_LENGTH: return "close payload of 1 byte";
  case WS_ERR_CLOSE_CODE: return "invalid close code";
  case WS_ERR_CLOSE_REASON: return "close reason is not valid UTF-8";
  default: return "no error";
  }
}
