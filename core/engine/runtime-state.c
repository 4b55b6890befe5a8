/* A runtime's own state, and its resources' overrides (issue 15).
 *
 * `runtimes/RT/state` pauses or resumes the whole runtime with one command
 * ("scope": "runtime" in ctlfs's dialect, pipelines.state in Mia's). A
 * resource follows its runtime's state until a command to the resource
 * itself sets one of its own, its override; `inherit` written to the
 * resource clears it. The variables are independent, so that their orders
 * in the command topic never have to be compared: the runtime's state is
 * set by runtime-wide commands only, a resource's override by commands to
 * that resource only, and a resource's `state` shows its override, else its
 * runtime's state.
 *
 * res->desired always holds that effective state (the `state` file and
 * everything that compares with it read it); this file keeps it so when
 * the runtime's state changes. Whether a resource overrides is its newest
 * command's verb (an `inherit` or none: it follows), which the store keeps
 * with its place in the topic, so a restart knows it without a column. */
#include "backend.h"
#include "engine-private.h"

#include <string.h>

#include "kv.h"
#include "verb.h"

CtlObject *
ctl_command_runtime(CtlObject *obj)
{
  return obj->kind == CTL_KIND_RUNTIME ? obj : obj->parent;
}

const char *
ctl_command_resource(CtlObject *obj)
{
  return obj->kind == CTL_KIND_RUNTIME ? NULL : obj->name;
}

const CtlBackend *
ctl_engine_command_backend(CtlEngine *e, CtlObject *obj)
{
  return obj->kind == CTL_KIND_RUNTIME ? ctl_engine_runtime_backend(e, obj->name)
                                       : ctl_engine_backend(e, obj);
}

/* The state a runtime is in until a command sets it: [runtime RT]
 * initial-state=, else its backend's (Mia workloads start paused). */
static const char *
initial_state(CtlEngine *e, CtlObject *rt)
{
  const char *configured = ctl_config_initial_state(&e->cfg, rt->name);
  if (configured)
    return configured;
  const CtlBackend *b = ctl_engine_runtime_backend(e, rt->name);
  return b && b->initial_state ? b->initial_state : "running";
}

const char *
ctl_engine_runtime_desired(CtlEngine *e, CtlObject *rt)
{
  return rt->desired ? rt->desired : initial_state(e, rt);
}

/* The verb that decides RES's override: our newest command while one is not
 * placed in the topic yet (what the write asked for), else the newest placed
 * there, by whichever host; after a restart, a queued command the outbox has
 * not sent again yet is the newest. */
static const char *
deciding_verb(CtlObject *res)
{
  if (res->unplaced > 0 || (g_strcmp0(res->last_cmd_result, "queued") == 0
                            && g_strcmp0(res->last_cmd_id, res->desired_id) != 0))
    return res->last_cmd_verb;
  return res->desired_verb;
}

const char *
ctl_engine_override(CtlEngine *e, CtlObject *res)
{
  (void) e;
  if (res->kind != CTL_KIND_RESOURCE)
    return NULL;
  return ctl_verb_target(deciding_verb(res));   /* NULL for inherit and for none */
}

const char *
ctl_engine_desired_after(CtlEngine *e, CtlObject *obj, const char *verb)
{
  if (g_strcmp0(verb, CTL_VERB_INHERIT) == 0)
    return ctl_engine_runtime_desired(e, obj->parent);
  return ctl_verb_target(verb);
}

gboolean
ctl_engine_runtime_wide(CtlEngine *e, CtlObject *rt)
{
  const CtlBackend *b = ctl_engine_runtime_backend(e, rt->name);
  return b && b->runtime_state;
}

void
ctl_engine_runtime_watched(CtlEngine *e, CtlObject *rt)
{
  if (!rt->desired)
    rt->desired = g_strdup(initial_state(e, rt));
  ctl_engine_runtime_follow(e, rt, FALSE);
}

void
ctl_engine_runtime_follow(CtlEngine *e, CtlObject *rt, gboolean elsewhere)
{
  if (!ctl_engine_runtime_wide(e, rt) || !rt->children)
    return;
  const char *state = ctl_engine_runtime_desired(e, rt);
  /* In no particular order: this runs at start for every runtime, and a
   * sorted listing of a million resources is not needed for it. */
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, rt->children);
  GError *error = NULL;
  gboolean ok = ctl_model_begin(e->model, &error);
  while (ok && g_hash_table_iter_next(&it, NULL, &value)) {
    CtlObject *res = value;
    if (ctl_engine_override(e, res) || !ctl_set_str(&res->desired, state))
      continue;
    ok = ctl_model_save(e->model, res, &error);
    ctl_model_changed(e->model, res, CTL_CHANGE_DESIRED | (elsewhere ? CTL_CHANGE_ELSEWHERE : 0));
  }
  if (!ctl_model_end(e->model, ok, &error)) {
    g_warning("%s: cannot store its resources' desired state: %s", rt->name, error->message);
    g_error_free(error);
  }
}

void
ctl_engine_runtime_fanout(CtlEngine *e, CtlObject *rt, const char *id)
{
  GPtrArray *children = ctl_model_children_array(rt);
  for (guint i = 0; children && i < children->len; i++) {
    CtlObject *res = children->pdata[i];
    if (ctl_engine_override(e, res))
      continue;
    ctl_set_str(&res->pending, id);
    ctl_model_changed(e->model, res, CTL_CHANGE_STATE);
  }
  if (!ctl_engine_runtime_awaits(e, rt, id))
    ctl_set_str(&rt->pending, NULL);   /* nothing follows the runtime: nothing to wait for */
}

gboolean
ctl_engine_runtime_awaits(CtlEngine *e, CtlObject *rt, const char *id)
{
  (void) e;
  GPtrArray *children = ctl_model_children_array(rt);
  for (guint i = 0; children && i < children->len; i++)
    if (g_strcmp0(((CtlObject *) children->pdata[i])->pending, id) == 0)
      return TRUE;
  return FALSE;
}

const char *
ctl_engine_runtime_command_verb(CtlObject *res, const char *id)
{
  CtlObject *rt = res->parent;
  if (res->kind != CTL_KIND_RESOURCE || !rt || !id || g_strcmp0(rt->last_cmd_id, id) != 0)
    return NULL;
  return rt->last_cmd_verb;
}

const char *
ctl_engine_runtime_observed(CtlEngine *e, CtlObject *rt)
{
  GPtrArray *children = rt->children ? ctl_model_children_array(rt) : NULL;
  const char *common = NULL;
  for (guint i = 0; children && i < children->len; i++) {
    const char *state = ctl_engine_observed(e, children->pdata[i]);
    if (!common)
      common = state;
    else if (strcmp(common, state) != 0)
      return "mixed";
  }
  return common ? common : "unknown";
}

void
ctl_engine_desire_runtime(CtlEngine *e, CtlObject *rt, const char *verb, const char *id,
                          gint64 offset)
{
  ctl_engine_desire(e, rt, verb, id, FALSE, e->msg_partition, offset, TRUE);
}
