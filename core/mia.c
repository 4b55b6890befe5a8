/* The engine's side of the mia dialect (see mia.h, docs/seeds/mia.md). */
#include "mia.h"

#include <string.h>

#include "command.h"
#include "dialect-mia.h"

gboolean
ctl_engine_mia(CtlEngine *e, CtlObject *rt)
{
  return ctl_config_dialect(&e->cfg, rt->name) == CTL_DIALECT_MIA;
}

/* Keyed by runtime, a compacted command topic keeps a mia runtime's latest
 * whole desired state; ctlfs's own commands are keyed by resource. */
char *
ctl_engine_command_key(CtlEngine *e, CtlObject *obj)
{
  return ctl_engine_mia(e, obj->parent) ? ctl_mia_command_key(obj->parent->name)
                                        : g_strdup(obj->name);
}

/* Our newest command on each resource of RT that is not placed in the topic
 * yet (and that no writer was told failed): it is what `desired` will show
 * once placed, so the snapshot must already hold it. UUIDv7 ids of this host
 * sort in issue order. */
static GHashTable *
unplaced_verbs(CtlEngine *e, CtlObject *rt)
{
  GHashTable *newest = g_hash_table_new(NULL, NULL);   /* CtlObject* -> CtlInflight* */
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, e->inflight);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    CtlInflight *inf = v;
    if (inf->obj->parent != rt || inf->timed_out || inf->placed)
      continue;
    CtlInflight *had = g_hash_table_lookup(newest, inf->obj);
    if (!had || strcmp(inf->id, had->id) > 0)
      g_hash_table_insert(newest, inf->obj, inf);
  }
  return newest;
}

char *
ctl_engine_mia_encode(CtlEngine *e, CtlObject *obj, const CtlCommandMsg *msg)
{
  CtlObject *rt = obj->parent;
  GHashTable *newest = unplaced_verbs(e, rt);
  GPtrArray *children = ctl_model_children_array(rt);
  GArray *desired = g_array_new(FALSE, FALSE, sizeof(CtlMiaDesired));
  for (guint i = 0; children && i < children->len; i++) {
    CtlObject *c = children->pdata[i];
    CtlInflight *inf = g_hash_table_lookup(newest, c);
    const char *state = c == obj ? ctl_verb_target(msg->verb)
                      : inf ? ctl_verb_target(inf->verb)
                      : c->desired;
    /* Every resource as its `state` file shows it (a declared or discovered
     * one: running); anything else (a lifecycle verb's "stopped") has no Mia
     * state and is left to the runtime-wide default. */
    if (g_strcmp0(state, "paused") == 0 || g_strcmp0(state, "running") == 0) {
      CtlMiaDesired d = { .resource = c->name, .pause = strcmp(state, "paused") == 0 };
      g_array_append_val(desired, d);
    }
  }
  char *value = ctl_mia_command_encode(msg, (CtlMiaDesired *) desired->data, desired->len);
  g_array_free(desired, TRUE);
  g_hash_table_unref(newest);
  return value;
}

gboolean
ctl_engine_mia_command_decode(const char *value, gsize len, CtlCommandMsg *msg, GError **error)
{
  CtlMiaState s;
  if (!ctl_mia_state_decode(value, len, TRUE, &s, error)) {
    memset(msg, 0, sizeof *msg);
    return FALSE;
  }
  *msg = s.ctlfs;   /* taken over */
  memset(&s.ctlfs, 0, sizeof s.ctlfs);
  ctl_mia_state_clear(&s);
  return TRUE;
}

void
ctl_engine_mia_settle(CtlEngine *e, CtlObject *res, const char *state)
{
  if (!res->pending || g_strcmp0(res->pending, res->last_cmd_id) != 0
      || g_strcmp0(ctl_verb_target(res->last_cmd_verb), state) != 0)
    return;
  char *id = g_strdup(res->pending);
  ctl_engine_command_applied(e, res, id, TRUE, NULL);
  g_free(id);
}
