/* tls.h: TLS on outbound sockets (OpenSSL, non-blocking): contexts, the handshake with the
   peer's certificate checked, and encrypted reads and writes for sock.c. No Lua here. */
#ifndef SCGI_TLS_H
#define SCGI_TLS_H

#include <stddef.h>

struct sock;

/* What a context checks and offers; NULL fields take the defaults. */
struct tls_params {
  int verify;              /* check the peer's chain (and its name, when one is given) */
  const char *cafile;      /* trusted certificates (PEM); NULL: capath, --ca-file or the system's */
  const char *capath;      /* a directory of them */
  const char *certificate; /* a client certificate (PEM) and its key */
  const char *key;
  const char *ciphers;  /* OpenSSL's cipher list (TLS 1.2 and below) */
  const char *protocol; /* "any" (TLS 1.2 and up, the default), "tlsv1_2" or "tlsv1_3" */
};

/* A client context (an SSL_CTX), or NULL with a message in err. Contexts of the default
   parameters are shared per thread (tls_context_default); free others with tls_context_free. */
void *tls_context(const struct tls_params *p, const char *default_cafile, char *err, size_t errlen);
void *tls_context_default(int verify, const char *default_cafile, char *err, size_t errlen);
void tls_context_free(void *ctx);
void tls_thread_cleanup(void);

/* Starts TLS on the connected socket s: SNI and the name checked (server_name, may be NULL), a
   session to resume (may be NULL). 0, or -1 with the reason in s->tls_error. The TLS state
   remembers ctx, server_name and verify (tls_fits). */
int tls_start(struct sock *s, void *ctx, const char *server_name, int verify, void *session);
/* What a caller asks of a TLS connection: one made with the same context, server name and
   verification is handed to it (from the pool) as it is; no other is. */
struct tls_want {
  void *ctx;
  const char *name; /* NULL: none */
  int verify;
};
/* Whether the TLS state ssl (a struct sock's) was started as want (a struct tls_want) asks. */
int tls_fits(void *ssl, const void *want);
/* Whether s's TLS is up with the peer's certificate (and name) verified. */
int tls_verified(const struct sock *s);
/* Drives the handshake: SOCK_DONE, SOCK_WAIT (wait for s->want) or SOCK_GONE. */
int tls_handshake(struct sock *s);
/* Reads into p (SOCK_DONE with *n > 0; SOCK_GONE with s->err 0 at a clean close). */
int tls_read(struct sock *s, char *p, size_t len, size_t *n);
int tls_write(struct sock *s, const char *p, size_t len, size_t *n);
size_t tls_pending(const struct sock *s);
/* The session to resume later (a new reference), or NULL; tls_session_free lets it go. */
void *tls_session(const struct sock *s);
void tls_session_free(void *session);
/* Whether the session s ran was a resumed one. */
int tls_resumed(const struct sock *s);
void tls_close(struct sock *s);

#endif
