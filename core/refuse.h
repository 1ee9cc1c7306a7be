/* refuse.h: answering 503 to connections over --max-connections. */
#ifndef SCGI_REFUSE_H
#define SCGI_REFUSE_H

#include <stdint.h>

struct worker;

/* Answers 503 on fd (a new connection, request id) and drains it; takes the descriptor. */
void refuse_conn(struct worker *w, int fd, uint64_t id);
/* Closes every refused connection still draining. */
void refuse_close_all(struct worker *w);
/* Reads and discards what fd has; 1 when the peer closed (or failed), 0 when it would block. */
int sock_drain(int fd, char *scratch);

#endif
