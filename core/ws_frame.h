/* ws_frame.h: RFC 6455 frames as a server reads and writes them; no I/O, no allocation, no Lua,
   no globals. The caller owns every buffer and every state struct. */
#ifndef WS_FRAME_H
#define WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum { WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2 };
enum { WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA };

#define WS_CONTROL_MAX 125      /* payload bytes a control frame may carry */
#define WS_SERVER_HEADER_MAX 10 /* bytes of an unmasked header: 2, 4 or 10 */
#define WS_CLOSE_NO_STATUS 1005 /* reported for a close frame without a payload */

/* Results: WS_INCOMPLETE asks for more bytes; every WS_ERR_* fails the connection with the close
   code ws_error_close_code() gives (1002, 1007 or 1009). */
enum {
  WS_INCOMPLETE = -1,
  WS_ERR_RSV = -2,                 /* reserved bit set, no extension negotiated (1002) */
  WS_ERR_OPCODE = -3,              /* opcode 3-7 or 0xB-0xF (1002) */
  WS_ERR_UNMASKED = -4,            /* a client frame without a mask (1002) */
  WS_ERR_CONTROL_FRAGMENTED = -5,  /* a control frame with FIN clear (1002) */
  WS_ERR_CONTROL_TOO_LONG = -6,    /* a control frame over 125 bytes (1002) */
  WS_ERR_LENGTH_NOT_MINIMAL = -7,  /* a 16/64-bit length that fits a shorter form (1002) */
  WS_ERR_LENGTH_TOP_BIT = -8,      /* a 64-bit length with its top bit set (1002) */
  WS_ERR_TOO_BIG = -9,             /* a frame or message over the caller's limit (1009) */
  WS_ERR_CONT_WITHOUT_START = -10, /* a continuation frame outside a fragmented message (1002) */
  WS_ERR_DATA_IN_FRAGMENTED = -11, /* a text or binary frame inside a fragmented message (1002) */
  WS_ERR_UTF8 = -12,               /* a text message that is not UTF-8 (1007) */
  WS_ERR_CLOSE_LENGTH = -13,       /* a close payload of 1 byte (1002) */
  WS_ERR_CLOSE_CODE = -14,         /* a close code no endpoint may send (1002) */
  WS_ERR_CLOSE_REASON = -15        /* a close reason that is not UTF-8 (1007) */
};

/* One frame header, as ws_frame_parse fills it. */
struct ws_frame {
  uint64_t payload_len;
  size_t header_len; /* 2 to 14 bytes; the payload starts there */
  uint8_t fin, rsv, opcode, masked;
  uint8_t mask[4];
};

/* Incremental UTF-8 check; zero-initialise (or ws_utf8_init) before the first byte. */
struct ws_utf8 {
  uint8_t need;   /* continuation bytes still expected in the current sequence */
  uint8_t lo, hi; /* the range the next continuation byte must fall in */
};

/* Message-level state for one connection's incoming frames; zero-initialise. */
struct ws_msg {
  uint64_t len;        /* payload bytes of the current message so far */
  uint8_t in_fragment; /* a fragmented message is open: only continuations or control frames */
  uint8_t opcode;      /* WS_OP_TEXT or WS_OP_BINARY: the current (or last) message's type */
  struct ws_utf8 utf8; /* the current text message's UTF-8 state */
};

/* Parses the frame header at the start of buf[0..len), as a server reads a client's frames: mask
   required, no reserved bits, known opcodes, control frames FIN and at most 125 bytes, minimal
   length forms, data frames at most max_payload bytes. Fails as soon as the bytes present show a
   fault. Returns the header length (2 to 14) with *f filled, WS_INCOMPLETE, or a WS_ERR_* code. */
int ws_frame_parse(const uint8_t *buf, size_t len, uint64_t max_payload, struct ws_frame *f);

/* XORs data[0..n) with the mask; offset is the position of data[0] in the payload, so a payload
   can be unmasked piece by piece. Returns the offset of the byte after the piece. */
uint64_t ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t offset);

/* Applies a parsed frame header to the message state: continuation rules (control frames may
   come between fragments) and the message size limit. Resets the UTF-8 state when a data frame
   starts a message. Returns 0 or a WS_ERR_* code. */
int ws_msg_frame(struct ws_msg *m, const struct ws_frame *f, uint64_t max_message);

/* Starts a new UTF-8 check. */
void ws_utf8_init(struct ws_utf8 *u);

/* Checks the next n bytes of a text; fails on the first byte no valid text can continue with
   (overlong forms, surrogates, code points over U+10FFFF, stray bytes). Returns 0 or
   WS_ERR_UTF8; after a failure the state is undefined. */
int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n);

/* At the end of a text: 0 if the bytes fed were complete UTF-8, WS_ERR_UTF8 if a sequence was
   cut short. */
int ws_utf8_finish(const struct ws_utf8 *u);

/* 1 if an endpoint may send close code `code` on the wire (1000-1003, 1007-1014, 3000-4999). */
int ws_close_code_valid(unsigned code);

/* Checks an unmasked close payload p[0..n): empty (*code = 1005, no reason), or a valid code
   then a UTF-8 reason (*reason points into p). Returns 0 or a WS_ERR_* code. */
int ws_close_parse(const uint8_t *p, size_t n, unsigned *code, const uint8_t **reason,
                   size_t *reason_len);

/* Writes a server frame's header (unmasked, RSV clear) to out: 2, 4 or 10 bytes, the shortest
   length form. Returns its length, or 0 for an unknown opcode, a control frame over 125 bytes or
   not final, or a length with its top bit set. */
size_t ws_frame_header(uint8_t out[WS_SERVER_HEADER_MAX], int fin, unsigned opcode, uint64_t len);

/* Writes a close payload (code, then reason) to out[0..cap); the code must be valid to send, the
   reason at most 123 bytes and fit cap. Returns the payload length, or -1. */
int ws_close_payload(uint8_t *out, size_t cap, unsigned code, const uint8_t *reason, size_t n);

/* The close code to send for a WS_ERR_* result (1002, 1007 or 1009), 0 for anything else. */
unsigned ws_error_close_code(int err);

/* A short static phrase naming a WS_ERR_* result. */
const char *ws_error_reason(int err);

#endif
