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
/* A recycle's load ended: the fresh state serves (err NULL), or it failed with err. */
void upkeep_recycled(struct rt *rt, const char *why, const char *err);
/* task.c: starts building a new state for new requests (recycle: from the sources the running
   app loaded; else from the files); 0, or -1 with the reason in err. */
int rt_load_new(struct worker *w, int recycle, const char *why, char *err, size_t errlen);

#endif
