/* A runtime's own state and its resources' overrides (issue 15).
 * INTERIM: the interface of backend.h with the behaviour of before runtime-
 * wide state (every resource commanded on its own); being replaced. */
#include "backend.h"
#include "engine-private.h"
#include "kv.h"
#include "verb.h"

const char *
ctl_engine_runtime_desired(CtlEngine *e, CtlObject *rt)
{
  if (rt->desired)
    return rt->desired;
  const CtlBackend *b = ctl_engine_runtime_backend(e, rt->name);
  return b && b->initial_state ? b->initial_state : "running";
}

const char *
ctl_engine_override(CtlEngine *e, CtlObject *res)
{
  (void) e;
  return res->last_cmd_verb ? ctl_verb_target(res->last_cmd_verb) : NULL;
}

void
ctl_engine_desire_runtime(CtlEngine *e, CtlObject *rt, const char *verb, const char *id,
                          gint64 offset)
{
  (void) e; (void) id; (void) offset;
  ctl_set_str(&rt->desired, ctl_verb_target(verb));
}
