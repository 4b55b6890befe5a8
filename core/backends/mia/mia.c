/* The mia backend: ctlfs's resources as the artifacts of one Fast Data
 * pipeline per runtime (see mia.h); the codec is dialect-mia.c's.
 *
 * Mia's semantics (issue 15): a state message's top state is the runtime-
 * wide state; only resources with a state of their own are overridden, so a
 * write to one resource leaves every other artifact where the runtime-wide
 * state puts it. Fast Data workloads start paused. Pipelines and artifacts
 * are known by Mia's ids (UUIDs): learned from feedback, or given in the
 * config file, and kept as the objects' settings. */
#include "mia.h"

#include <string.h>

#include "config.h"
#include "dialect-mia.h"
#include "kv.h"
#include "model.h"
#include "name.h"
#include "verb.h"

static const char *const verbs[] = { "pause", "resume", "inherit", NULL };

/* The runtime a command to OBJ (a resource, or the runtime itself) is for. */
static CtlObject *
runtime_of(CtlObject *obj)
{
  return obj->kind == CTL_KIND_RUNTIME ? obj : obj->parent;
}

/* The settings that keep the ids learned (stored, so that a restart keeps
 * using them). */
#define PIPELINE_ID "mia-pipeline-id"
#define ARTIFACT_ID "mia-artifact-id"

/* Keyed by runtime, a compacted command topic keeps a mia runtime's latest
 * whole desired state. */
static char *
command_key(CtlEngine *e, CtlObject *obj)
{
  return ctl_mia_command_key(runtime_of(obj)->name);
}

/* RT's pipeline id: learned, else configured, else NULL (the name serves). */
static const char *
pipeline_id(CtlEngine *e, CtlObject *rt)
{
  const char *id = ctl_model_setting(rt, PIPELINE_ID);
  return id ? id : ctl_config_mia_pipeline_id(ctl_engine_config(e), rt->name);
}

static const char *
artifact_id(CtlEngine *e, CtlObject *res)
{
  const char *id = ctl_model_setting(res, ARTIFACT_ID);
  return id ? id : ctl_config_mia_artifact_id(ctl_engine_config(e), res->parent->name, res->name);
}

/* The runtime's whole desired state once MSG is applied: the runtime-wide
 * state, and an override for each resource that has a state of its own --
 * MSG's, our commands not yet placed in the topic, and those the engine
 * keeps. Resources never commanded follow the runtime. */
static char *
command_encode(CtlEngine *e, CtlObject *obj, CtlCommandMsg *msg)
{
  CtlObject *rt = runtime_of(obj);
  GHashTable *newest = ctl_engine_unplaced_verbs(e, rt);
  GPtrArray *children = ctl_model_children_array(rt);
  GArray *desired = g_array_new(FALSE, FALSE, sizeof(CtlMiaDesired));
  for (guint i = 0; children && i < children->len; i++) {
    CtlObject *c = children->pdata[i];
    const char *verb = g_hash_table_lookup(newest, c);
    /* inherit has no target: the resource follows the pipeline */
    const char *state = c == obj ? ctl_verb_target(msg->verb)
                      : verb ? ctl_verb_target(verb)
                      : ctl_engine_override(e, c);
    /* Anything but paused or running (a lifecycle verb's "stopped") has no
     * Mia state and is left to the runtime-wide state. */
    if (g_strcmp0(state, "paused") == 0 || g_strcmp0(state, "running") == 0) {
      CtlMiaDesired d = { .id = artifact_id(e, c), .name = c->name,
                          .pause = strcmp(state, "paused") == 0 };
      g_array_append_val(desired, d);
    }
  }
  /* the runtime-wide state: MSG's when it is runtime-wide, else ours not yet
   * placed in the topic, else the runtime's */
  const char *all = obj == rt ? ctl_verb_target(msg->verb)
                  : rt->unplaced > 0 ? ctl_verb_target(rt->last_cmd_verb)
                  : ctl_engine_runtime_desired(e, rt);
  gboolean pause_all = g_strcmp0(all, "paused") == 0;
  char *value = ctl_mia_command_encode(msg, pipeline_id(e, rt), pause_all,
                                       (CtlMiaDesired *) desired->data, desired->len);
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

/* Keeps ID as OBJ's setting NAME when it is new; logged once, on OBJ. */
static void
learn_id(CtlEngine *e, CtlObject *obj, const char *name, const char *id)
{
  if (!id || !*id || g_strcmp0(ctl_model_setting(obj, name), id) == 0)
    return;
  CtlModel *m = ctl_engine_model(e);
  GError *error = NULL;
  char *d = g_strdup_printf("%s=%s", name, id);
  if (!ctl_model_set_setting(m, obj, name, id, &error)
      || !ctl_model_log(m, obj, "mia-id", d, &error)) {
    g_warning("%s: %s", obj->name, error->message);
    g_error_free(error);
  }
  g_free(d);
}

/* Another producer's state message on the command topic (a Mia Control
 * Plane beside ctlfs): the runtime's desired state as its producer set it,
 * read like another admin host's commands. ID is the engine's made-up id for
 * the message's place in the topic. */
static gboolean
foreign_command(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value, gsize len,
                const char *id)
{
  CtlMiaState s;
  if (!ctl_mia_state_decode(value, len, FALSE, &s, NULL))
    return FALSE;
  if (s.has_ctlfs || !s.pipelines) {
    ctl_mia_state_clear(&s);
    return FALSE;   /* ctlfs's, refused for its own reason */
  }
  const CtlMiaNode *p = ctl_mia_state_pipeline(&s, pipeline_id(e, rt), rt->name);
  gboolean pause_all = p ? p->pause : s.pipelines->pause;
  ctl_engine_desire_runtime(e, rt, pause_all ? "pause" : "resume", id, offset);
  GHashTable *named = g_hash_table_new(g_str_hash, g_str_equal);
  GHashTableIter it;
  gpointer key, v;
  if (p && p->override)
    g_hash_table_iter_init(&it, p->override);
  while (p && p->override && g_hash_table_iter_next(&it, &key, &v)) {
    const CtlMiaNode *a = v;
    if (!ctl_name_valid(a->name)) {
      char *why = g_strdup_printf("artifact %s: not a valid name", (char *) key);
      ctl_engine_peer_skip(e, rt, offset, why);
      g_free(why);
      continue;
    }
    CtlObject *res = ctl_model_child(rt, a->name);
    if (!res)
      res = ctl_engine_peer_object(e, rt, a->name, offset);
    if (!res)
      continue;
    g_hash_table_add(named, res->name);
    if (strcmp(key, a->name) != 0)
      learn_id(e, res, ARTIFACT_ID, key);
    char *cid = g_strdup_printf("%s:%s", id, a->name);
    CtlCommandMsg msg = { .id = cid, .runtime = rt->name, .resource = a->name,
                          .verb = a->pause ? "pause" : "resume", .uid = -1, .pid = -1 };
    ctl_engine_peer_command(e, res, &msg, offset, "another-producer");
    g_free(cid);
  }
  /* The message is the whole desired state: an artifact it does not
   * override follows the pipeline, as if told to inherit. */
  GPtrArray *children = ctl_model_children_array(rt);
  for (guint i = 0; children && i < children->len; i++) {
    CtlObject *res = children->pdata[i];
    if (g_hash_table_contains(named, res->name) || !ctl_engine_override(e, res))
      continue;
    char *cid = g_strdup_printf("%s:%s", id, res->name);
    CtlCommandMsg msg = { .id = cid, .runtime = rt->name, .resource = res->name,
                          .verb = CTL_VERB_INHERIT, .uid = -1, .pid = -1 };
    ctl_engine_peer_command(e, res, &msg, offset, "another-producer");
    g_free(cid);
  }
  g_hash_table_unref(named);
  ctl_mia_state_clear(&s);
  return TRUE;
}

/* Fast Data's shape: one report per artifact, naming no command (each
 * settles by the state it reports); ctlfs's own shape is taken too. The key
 * names the pipeline, whose id is learned with the artifacts'. */
static void
feedback(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value, gsize len)
{
  GPtrArray *edges = NULL, *skipped = NULL;
  GError *error = NULL;
  CtlMiaFeedbackResult r = ctl_mia_feedback_decode(value, len, &edges, &skipped, &error);
  if (r == CTL_MIA_NOT_MIA) {
    g_clear_error(&error);
    ctl_engine_feedback_ctlfs(e, rt, offset, value, len);
    return;
  }
  if (r == CTL_MIA_FEEDBACK) {
    gsize key_len = 0;
    const char *key = ctl_engine_message_key(e, &key_len);
    char *pid = NULL, *pname = NULL;
    if (ctl_mia_feedback_key_decode(key, key_len, &pid, &pname))
      learn_id(e, rt, PIPELINE_ID, pid);
    g_free(pid);
    g_free(pname);
  }
  for (guint i = 0; edges && i < edges->len; i++) {
    CtlMiaEdge *edge = edges->pdata[i];
    ctl_engine_report(e, rt, offset, &edge->fb, TRUE);
    CtlObject *res = edge->artifact_id ? ctl_model_child(rt, edge->fb.resource) : NULL;
    if (res && strcmp(edge->artifact_id, edge->fb.resource) != 0)
      learn_id(e, res, ARTIFACT_ID, edge->artifact_id);
  }
  /* Each unusable edge is one line and one unused input; the rest counts. */
  for (guint i = 0; skipped && i < skipped->len; i++)
    ctl_engine_feedback_reject(e, rt, offset, skipped->pdata[i]);
  if (r == CTL_MIA_MALFORMED)
    ctl_engine_feedback_reject(e, rt, offset, error->message);
  g_clear_error(&error);
  g_clear_pointer(&edges, g_ptr_array_unref);
  g_clear_pointer(&skipped, g_ptr_array_unref);
}

/* A resource's ids, as its commands use them ("-": its name serves). */
static void
status(CtlEngine *e, CtlObject *obj, GString *out)
{
  if (obj->kind != CTL_KIND_RESOURCE)
    return;
  ctl_status_kv(out, "mia_pipeline_id", pipeline_id(e, obj->parent));
  ctl_status_kv(out, "mia_artifact_id", artifact_id(e, obj));
}

const CtlBackend ctl_backend_mia = {
  .name = "mia",
  .backend = "kafka",
  .dialect = "mia",
  /* Fast Data workloads start with every artifact paused. */
  .initial_state = "paused",
  .runtime_state = TRUE,
  .verbs = verbs,
  .underway = ctl_underway_pause_resume,
  .type = ctl_type_resource,
  .status = status,
  .command_key = command_key,
  .command_encode = command_encode,
  .command_decode = command_decode,
  .foreign_command = foreign_command,
  .feedback = feedback,
};
