/* The mia backend: ctlfs's resources as the artifacts of one Fast Data
 * pipeline per runtime (see mia.h); the codec is dialect-mia.c's. */
#include "mia.h"

#include <string.h>

#include "dialect-mia.h"
#include "verb.h"

static const char *const verbs[] = { "pause", "resume", NULL };

/* Keyed by runtime, a compacted command topic keeps a mia runtime's latest
 * whole desired state. */
static char *
command_key(CtlEngine *e, CtlObject *obj)
{
  return ctl_mia_command_key(obj->parent->name);
}

/* The runtime's whole desired state once MSG is applied: every resource as
 * its `state` file will show it, our commands not yet placed in the topic
 * included (they are what `desired` shows once placed). */
static char *
command_encode(CtlEngine *e, CtlObject *obj, CtlCommandMsg *msg)
{
  CtlObject *rt = obj->parent;
  GHashTable *newest = ctl_engine_unplaced_verbs(e, rt);
  GPtrArray *children = ctl_model_children_array(rt);
  GArray *desired = g_array_new(FALSE, FALSE, sizeof(CtlMiaDesired));
  for (guint i = 0; children && i < children->len; i++) {
    CtlObject *c = children->pdata[i];
    const char *verb = g_hash_table_lookup(newest, c);
    const char *state = c == obj ? ctl_verb_target(msg->verb)
                      : verb ? ctl_verb_target(verb)
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

/* A message read from the command topic, in either shape. */
static gboolean
command_decode(const char *value, gsize len, CtlCommandMsg *msg, GError **error)
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

/* Fast Data's shape: one report per artifact, naming no command (each
 * settles by the state it reports); ctlfs's own shape is taken too. */
static void
feedback(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value, gsize len)
{
  GPtrArray *edges = NULL;
  GError *error = NULL;
  CtlMiaFeedbackResult r = ctl_mia_feedback_decode(value, len, &edges, &error);
  if (r == CTL_MIA_NOT_MIA) {
    g_clear_error(&error);
    ctl_engine_feedback_ctlfs(e, rt, offset, value, len);
    return;
  }
  for (guint i = 0; edges && i < edges->len; i++)
    ctl_engine_report(e, rt, offset, edges->pdata[i], TRUE);
  if (r == CTL_MIA_MALFORMED)
    ctl_engine_feedback_reject(e, rt, offset, error->message);
  g_clear_error(&error);
  g_clear_pointer(&edges, g_ptr_array_unref);
}

const CtlBackend ctl_backend_mia = {
  .name = "mia",
  .backend = "kafka",
  .dialect = "mia",
  .verbs = verbs,
  .underway = ctl_underway_pause_resume,
  .type = ctl_type_resource,
  .command_key = command_key,
  .command_encode = command_encode,
  .command_decode = command_decode,
  .feedback = feedback,
};
