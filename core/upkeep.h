/* upkeep.h: keeping a worker's runtime in shape: --slow-log (a request still running after so
   long is logged with where it is), and building a fresh Lua state after --max-requests or over
   --max-lua-memory. */
#ifndef SCGI_UPKEEP_H
#define SCGI_UPKEEP_H

#include <lua.h>

struct rt;
struct request;
struct worker;
struct app;

void upkeep_start(struct rt *rt);
void upkeep_stop(struct rt *rt);
/* A new app state serves (reload or recycle): its request count starts again. */
void upkeep_new_app(struct rt *rt);
/* A request ended: recycles the state when it is due. */
void upkeep_request_done(struct rt *rt);
/* From the guard's hook, when the watchdog asked: logs the running request if it is slow. */
void upkeep_trace_running(lua_State *L, struct rt *rt);
/* task.c: builds a new state from the app file for new requests; NULL if it fails to load. */
struct app *rt_swap_app(struct worker *w, char *err, size_t errlen);

#endif
