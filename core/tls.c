/* tls.c: TLS for outbound sockets over OpenSSL: contexts (the system's trusted certificates, or
   --ca-file, or a caller's), the non-blocking handshake with the chain and the host name checked,
   and reads and writes that say which readiness they wait for. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sock.h"

static __thread SSL_CTX *shared_ctx[2]; /* this thread's default contexts: no check, check */

/* What a connection's TLS was started with, kept in its SSL (ex_data) for tls_fits. */
struct tag {
  int verify;
  char name[]; /* "" when none */
};

static int tag_index = -1;
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;

static void tag_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent;
  (void)ad;
  (void)idx;
  (void)argl;
  (void)argp;
  free(ptr);
}

static void tag_init(void) { tag_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tag_free); }

/* Records ctx's companions (verify, server_name) in ssl: 0, or -1. */
static int tag_set(SSL *ssl, const char *server_name, int verify) {
  pthread_once(&tag_once, tag_init);
  size_t n = server_name ? strlen(server_name) : 0;
  struct tag *t = malloc(sizeof *t + n + 1);
  if (t == NULL || tag_index < 0) goto fail;
  t->verify = verify != 0;
  memcpy(t->name, server_name ? server_name : "", n + 1);
  if (SSL_set_ex_data(ssl, tag_index, t) != 1) goto fail;
  return 0;
fail:
  free(t);
  return -1;
}

int tls_fits(void *ssl, const void *want) {
  const struct tls_want *w = want;
  const struct tag *t = tag_index < 0 ? NULL : SSL_get_ex_data(ssl, tag_index);
  return t && SSL_get_SSL_CTX(ssl) == w->ctx && t->verify == (w->verify != 0) &&
         strcmp(t->name, w->name ? w->name : "") == 0;
}

int tls_verified(const struct sock *s) {
  const struct tag *t = s->ssl && tag_index >= 0 ? SSL_get_ex_data(s->ssl, tag_index) : NULL;
  return t && t->verify && SSL_is_init_finished(s->ssl) &&
         SSL_get_verify_result(s->ssl) == X509_V_OK;
}

static void error_text(char *buf, size_t len, const char *what) {
  unsigned long e = ERR_get_error();
  char detail[200] = "";
  if (e) ERR_error_string_n(e, detail, sizeof detail);
  ERR_clear_error();
  snprintf(buf, len, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

static int min_version(const char *protocol) {
  if (protocol == NULL || strcmp(protocol, "any") == 0 || strcmp(protocol, "tlsv1_2") == 0)
    return TLS1_2_VERSION;
  if (strcmp(protocol, "tlsv1_3") == 0) return TLS1_3_VERSION;
  return -1;
}

void *tls_context(const struct tls_params *p, const char *default_cafile, char *err,
                  size_t errlen) {
  int minv = min_version(p->protocol);
  if (minv < 0) {
    snprintf(err, errlen, "unsupported TLS protocol '%s' (any, tlsv1_2 or tlsv1_3)", p->protocol);
    return NULL;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) goto fail;
  SSL_CTX_set_min_proto_version(ctx, minv);
  if (p->protocol && strcmp(p->protocol, "tlsv1_2") == 0)
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
  /* a peer that closes without close_notify (many HTTP servers) ends the stream, as in LuaSec */
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (p->ciphers && SSL_CTX_set_cipher_list(ctx, p->ciphers) != 1) goto fail;
  const char *cafile = p->cafile ? p->cafile : p->capath ? NULL : default_cafile;
  if (cafile || p->capath) {
    if (SSL_CTX_load_verify_locations(ctx, cafile, p->capath) != 1) goto fail;
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    goto fail;
  }
  if (p->certificate && SSL_CTX_use_certificate_chain_file(ctx, p->certificate) != 1) goto fail;
  if (p->key && SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) != 1) goto fail;
  SSL_CTX_set_verify(ctx, p->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  return ctx;
fail:
  error_text(err, errlen, "cannot set up TLS");
  SSL_CTX_free(ctx);
  return NULL;
}

void *tls_context_default(int verify, const char *default_cafile, char *err, size_t errlen) {
  verify = verify != 0;
  if (shared_ctx[verify] == NULL) {
    struct tls_params p = {.verify = verify};
    shared_ctx[verify] = tls_context(&p, default_cafile, err, errlen);
  }
  return shared_ctx[verify];
}

void tls_context_free(void *ctx) { SSL_CTX_free(ctx); }

void tls_thread_cleanup(void) {
  for (int i = 0; i < 2; i++) {
    SSL_CTX_free(shared_ctx[i]);
    shared_ctx[i] = NULL;
  }
}

int tls_start(struct sock *s, void *ctx, const char *server_name, int verify, void *session) {
  if (verify && (server_name == NULL || server_name[0] == '\0')) { /* a chain for any name */
    snprintf(s->tls_error, sizeof s->tls_error,
             "cannot verify the peer without a server name (give one, or do not verify)");
    return -1;
  }
  SSL *ssl = SSL_new(ctx);
  if (ssl == NULL || SSL_set_fd(ssl, s->fd) != 1 || tag_set(ssl, server_name, verify) < 0) {
    error_text(s->tls_error, sizeof s->tls_error, "cannot start TLS");
    SSL_free(ssl);
    return -1;
  }
  if (server_name && server_name[0]) {
    unsigned char ip[16];
    int is_ip =
        inet_pton(AF_INET, server_name, ip) == 1 || inet_pton(AF_INET6, server_name, ip) == 1;
    if (!is_ip) SSL_set_tlsext_host_name(ssl, server_name);
    if (verify) {
      X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, server_name) != 1
                : X509_VERIFY_PARAM_set1_host(vp, server_name, 0) != 1) {
        error_text(s->tls_error, sizeof s->tls_error, "cannot check the server name");
        SSL_free(ssl);
        return -1;
      }
    }
  }
  if (session) SSL_set_session(ssl, session);
  SSL_set_connect_state(ssl);
  s->ssl = ssl;
  return 0;
}

/* Maps an OpenSSL result to SOCK_*, setting s->want or s->err and s->tls_error. */
static int result(struct sock *s, int rc, const char *what) {
  SSL *ssl = s->ssl;
  int e = SSL_get_error(ssl, rc);
  switch (e) {
  case SSL_ERROR_WANT_READ: s->want = EV_READ; return SOCK_WAIT;
  case SSL_ERROR_WANT_WRITE: s->want = EV_WRITE; return SOCK_WAIT;
  case SSL_ERROR_ZERO_RETURN: s->err = 0; return SOCK_GONE;
  case SSL_ERROR_SYSCALL:
    s->err = errno; /* 0: the peer closed */
    if (ERR_peek_error()) break;
    ERR_clear_error();
    return SOCK_GONE;
  default: break;
  }
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK)
    snprintf(s->tls_error, sizeof s->tls_error, "certificate verify failed: %s",
             X509_verify_cert_error_string(v));
  else
    error_text(s->tls_error, sizeof s->tls_error, what);
  s->err = EPROTO;
  return SOCK_GONE;
}

int tls_handshake(struct sock *s) {
  ERR_clear_error();
  int rc = SSL_do_handshake(s->ssl);
  return rc == 1 ? SOCK_DONE : result(s, rc, "handshake failed");
}

int tls_read(struct sock *s, char *p, size_t len, size_t *n) {
  ERR_clear_error();
  int rc = SSL_read_ex(s->ssl, p, len, n);
  return rc == 1 ? SOCK_DONE : result(s, 0, "TLS read failed");
}

int tls_write(struct sock *s, const char *p, size_t len, size_t *n) {
  ERR_clear_error();
  int rc = SSL_write_ex(s->ssl, p, len, n);
  return rc == 1 ? SOCK_DONE : result(s, 0, "TLS write failed");
}

size_t tls_pending(const struct sock *s) { return s->ssl ? (size_t)SSL_pending(s->ssl) : 0; }

void *tls_session(const struct sock *s) { return s->ssl ? SSL_get1_session(s->ssl) : NULL; }

void tls_session_free(void *session) { SSL_SESSION_free(session); }

int tls_resumed(const struct sock *s) { return s->ssl && SSL_session_reused(s->ssl); }

void tls_close(struct sock *s) {
  if (s->ssl == NULL) return;
  if (SSL_is_init_finished(s->ssl)) SSL_shutdown(s->ssl); /* one try: no wait for the peer's */
  ERR_clear_error();
  SSL_free(s->ssl);
  s->ssl = NULL;
}
