/* The engine's own types (the root, runtimes/, a runtime), the attribute rows
 * every backend may reuse, and the text of their status files. Which type an
 * object has is decided here once; each row's show() then knows its kind. */
#include "backend.h"
#include "engine-private.h"

#include <string.h>

#include "timefmt.h"

static const char readme_text[] =
  "ctlfs: the control plane of data runtimes as files.\n"
  "\n"
  "  status              the daemon: version, brokers, broker link, db, write mode\n"
  "  log                 every event, oldest first (tail -f works)\n"
  "  metrics             Prometheus text format\n"
  "  runtimes/RT/        mkdir declares a runtime, rmdir forgets it\n"
  "    state             the runtime's own state: echo pause > state pauses every\n"
  "                      resource that follows it (one command)\n"
  "    observed          what its resources report: one state, or mixed\n"
  "    status, log       topics, resource counts by observed state, events\n"
  "    RES/              mkdir declares a resource of the runtime\n"
  "      state           desired state; write a verb: echo pause > state;\n"
  "                      inherit: follow the runtime's state again\n"
  "      observed        what the runtime last reported (or stale/unknown)\n"
  "      status          key: value lines: desired, observed, pending, last command\n"
  "      log             this resource's commands and reports\n"
  "      metrics         the metrics its runtime reported: NAME VALUE lines\n"
  "  modules/MOD/        mkdir declares a cluster (Rama) module, rmdir forgets it\n"
  "    status            what `rama moduleStatus MOD` last printed\n"
  "    log               the module's and its topologies' events\n"
  "    scale             write workers=N threads=N: rama scaleExecutors\n"
  "    topologies/TOPO/  mkdir declares a microbatch topology\n"
  "      state, observed, status, log   as for a resource (rama pauseTopology)\n"
  "    options/NAME      echo JSON > NAME: rama setOption module MOD NAME JSON\n"
  "\n"
  "Verbs: pause, resume; lifecycle runtimes (flows) also start, stop, kill, and\n"
  "have a `mode` file: ordinary or realtime, changed only while the flow is stopped.\n"
  "kill stops a flow at once, without its graceful shutdown.\n"
  "A write returns once the broker acknowledged the command\n"
  "(durable mode) or once it is stored (queued mode). Errors: EINVAL bad input,\n"
  "EACCES not allowed, EBUSY a CLI call still runs, ETIMEDOUT broker or CLI did not\n"
  "answer, EIO store, broker or CLI failed;\n"
  "the reason is in log and in status (last_error).\n"
  "Manual: docs/manual.md, ctlfs(8).\n";

/* The counts in a runtime's status, in this order; the lifecycle backend's
 * sleeping and shutting-down came later and so come last. */
static const char *const observed_states[] = {
  "running", "paused", "pausing", "resuming", "starting", "stopping", "stopped",
  "unknown", "stale", "sleeping", "shutting-down",
};

/* ---- status lines ---- */

void
ctl_status_kv(GString *out, const char *key, const char *value)
{
  g_string_append_printf(out, "%s: %s\n", key, value && *value ? value : "-");
}

static void
kv_time(GString *out, const char *key, gint64 ms)
{
  char ts[CTL_TIME_LEN];
  ctl_status_kv(out, key, ms > 0 ? ctl_time_format(ms, ts) : NULL);
}

static void
kv_int(GString *out, const char *key, gint64 n)
{
  g_string_append_printf(out, "%s: %" G_GINT64_FORMAT "\n", key, n);
}

static void
append_last(int partition, gint64 next, gpointer data)
{
  if (next > 0)
    g_string_append_printf(data, "%s%d:%" G_GINT64_FORMAT, ((GString *) data)->len ? " " : "",
                           partition, next - 1);
}

/* The last offset handled in each partition read, as stored: "0:16 2:4". */
static void
kv_offsets(CtlEngine *e, GString *out, const char *key, const char *topic)
{
  GString *v = g_string_new(NULL);
  ctl_store_offset_foreach(e->store, topic, append_last, v);
  ctl_status_kv(out, key, v->len ? v->str : NULL);
  g_string_free(v, TRUE);
}

/* pending, last_command, last_error: OBJ's commands (a leaf's, or a
 * runtime's runtime-wide ones). */
static void
kv_commands(GString *out, CtlObject *obj)
{
  ctl_status_kv(out, "pending", obj->pending);
  char *last = obj->last_cmd_id ? g_strdup_printf("%s %s %s", obj->last_cmd_id,
                                                  obj->last_cmd_verb, obj->last_cmd_result)
                                : NULL;
  ctl_status_kv(out, "last_command", last);
  g_free(last);
  /* One line per key: a multi-line reason is flattened. */
  char *err = obj->last_error ? g_strdelimit(g_strdup(obj->last_error), "\n\r", ' ') : NULL;
  ctl_status_kv(out, "last_error", err);
  g_free(err);
}

void
ctl_attr_show_leaf_status(CtlEngine *e, CtlObject *obj, GString *out)
{
  const CtlBackend *b = ctl_engine_backend(e, obj);
  ctl_status_kv(out, "desired", ctl_engine_desired(e, obj));
  ctl_status_kv(out, "observed", ctl_engine_observed(e, obj));
  kv_time(out, "observed_at", obj->observed_at);
  kv_commands(out, obj);
  if (obj->feedback_at > 0)
    kv_int(out, "heartbeat_age_ms", MAX(0, ctl_now_ms() - obj->feedback_at));
  else
    ctl_status_kv(out, "heartbeat_age_ms", NULL);
  /* What the runtime last said, which `observed` hides once it is stale. */
  ctl_status_kv(out, "reported", obj->observed);
  if (obj->kind == CTL_KIND_RESOURCE && b && b->runtime_state)
    ctl_status_kv(out, "state_source", ctl_engine_override(e, obj) ? "override" : "runtime");
  ctl_engine_drift_status(e, obj, out);
  if (b && b->status)
    b->status(e, obj, out);
}

static void
show_runtime_status(CtlEngine *e, CtlObject *rt, GString *out)
{
  const CtlBackend *b = ctl_engine_runtime_backend(e, rt->name);
  ctl_status_kv(out, "backend", b->backend);
  ctl_status_kv(out, "dialect", b->dialect);
  ctl_status_kv(out, "desired", b->runtime_state ? ctl_engine_runtime_desired(e, rt) : NULL);
  ctl_status_kv(out, "observed", ctl_engine_runtime_observed(e, rt));
  kv_commands(out, rt);
  ctl_status_kv(out, "command_topic", rt->command_topic);
  ctl_status_kv(out, "feedback_topic", rt->feedback_topic);
  ctl_status_kv(out, "command_topic_check", ctl_engine_topic_check(e, rt->command_topic));
  ctl_status_kv(out, "feedback_topic_check", ctl_engine_topic_check(e, rt->feedback_topic));
  /* The last offset handled on each topic, per partition, as stored (CDAP
   * keeps them per runtime and topic too). */
  kv_offsets(e, out, "feedback_offset", rt->feedback_topic);
  kv_offsets(e, out, "command_offset", rt->command_topic);
  kv_int(out, "resources", g_hash_table_size(rt->children));
  guint counts[G_N_ELEMENTS(observed_states)] = { 0 };
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, rt->children);
  while (g_hash_table_iter_next(&it, NULL, &value)) {
    const char *state = ctl_engine_observed(e, value);
    for (gsize i = 0; i < G_N_ELEMENTS(observed_states); i++)
      if (strcmp(state, observed_states[i]) == 0)
        counts[i]++;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(observed_states); i++)
    kv_int(out, observed_states[i], counts[i]);
  kv_time(out, "last_heartbeat", rt->feedback_at);
  const CtlConfig *cfg = ctl_engine_config(e);
  char *access = ctl_policy_describe(cfg->policy, rt->name);
  ctl_status_kv(out, "access", access);
  g_free(access);
  ctl_status_kv(out, "activity", ctl_janitor_activity(e->janitor, rt));
  gint64 silent = ctl_janitor_silent_ms(e->janitor, rt);
  if (silent >= 0)
    kv_int(out, "silent_ms", silent);
  else
    ctl_status_kv(out, "silent_ms", NULL);
}

static void
show_root_status(CtlEngine *e, CtlObject *root, GString *out)
{
  ctl_status_kv(out, "version", CTLFS_VERSION);
  ctl_status_kv(out, "brokers", e->cfg.brokers);
  ctl_status_kv(out, "broker_link", ctl_bus_link_up(e->bus) ? "up" : "down");
  ctl_status_kv(out, "db", e->cfg.db_path);
  ctl_status_kv(out, "write_mode", e->cfg.write_mode == CTL_WRITE_QUEUED ? "queued" : "durable");
  kv_int(out, "pending_commands", ctl_engine_commands_pending(e));
  kv_int(out, "uptime_s", (g_get_monotonic_time() - e->started_us) / G_USEC_PER_SEC);
  ctl_status_kv(out, "tree_topic", ctl_engine_tree_topic(e));
  ctl_status_kv(out, "tree_topic_check", ctl_engine_topic_check(e, ctl_engine_tree_topic(e)));
  char *astray = ctl_engine_topics_astray(e);
  ctl_status_kv(out, "topics_not_as_configured", astray);
  g_free(astray);
  char *access = ctl_policy_describe(e->cfg.policy, NULL);
  ctl_status_kv(out, "access", access);
  g_free(access);
}

/* ---- rows ---- */

static void
show_readme(CtlEngine *e, CtlObject *obj, GString *out)
{
  g_string_append(out, readme_text);
}

static void
show_metrics(CtlEngine *e, CtlObject *obj, GString *out)
{
  ctl_engine_show_metrics(e, out);
}

void
ctl_attr_show_desired(CtlEngine *e, CtlObject *obj, GString *out)
{
  const char *desired = ctl_engine_desired(e, obj);
  g_string_append_printf(out, "%s\n", desired ? desired : "running");
}

void
ctl_attr_store_command(CtlEngine *e, CtlObject *obj, const char *buf, gsize len, gint64 offset,
                       const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_engine_command(e, obj, buf, len, offset, who, done, user_data);
}

void
ctl_attr_show_observed(CtlEngine *e, CtlObject *obj, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_engine_observed(e, obj));
}

static const CtlAttr root_attrs[] = {
  { .name = "README",  .mode = S_IFREG | 0444, .show = show_readme },
  { .name = "status",  .mode = S_IFREG | 0444, .show = show_root_status },
  CTL_ATTR_LOG,
  { .name = "metrics", .mode = S_IFREG | 0444, .show = show_metrics },
};

static void
show_runtime_state(CtlEngine *e, CtlObject *rt, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_engine_runtime_desired(e, rt));
}

static void
show_runtime_observed(CtlEngine *e, CtlObject *rt, GString *out)
{
  g_string_append_printf(out, "%s\n", ctl_engine_runtime_observed(e, rt));
}

static const CtlAttr runtime_attrs[] = {
  { .name = "state", .mode = S_IFREG | 0664, .show = show_runtime_state,
    .store = ctl_attr_store_command },
  { .name = "observed", .mode = S_IFREG | 0444, .show = show_runtime_observed },
  { .name = "status", .mode = S_IFREG | 0444, .show = show_runtime_status },
  CTL_ATTR_LOG,
};

static const CtlType root_type = { .attrs = root_attrs, .n_attrs = G_N_ELEMENTS(root_attrs) };
static const CtlType runtimes_type = { .children = CTL_CHILDREN_MKDIR };
static const CtlType runtime_type = { .attrs = runtime_attrs, .n_attrs = G_N_ELEMENTS(runtime_attrs),
                                      .children = CTL_CHILDREN_MKDIR };

/* state is writable by its owner and the admin group; the daemon checks the
 * caller itself too (mounts without default_permissions). */
static const CtlAttr resource_attrs[] = {
  { .name = "state", .mode = S_IFREG | 0664, .show = ctl_attr_show_desired,
    .store = ctl_attr_store_command },
  CTL_ATTR_OBSERVED,
  CTL_ATTR_LEAF_STATUS,
  CTL_ATTR_LOG,
  CTL_ATTR_METRICS,
};

static const CtlType resource_type = { .attrs = resource_attrs,
                                       .n_attrs = G_N_ELEMENTS(resource_attrs) };

const CtlType *
ctl_type_resource(CtlObject *obj)
{
  return &resource_type;
}

const CtlUnderway ctl_underway_pause_resume[] = {
  { "pause",  "pausing" },
  { "resume", "resuming" },
  { "resume", "starting" },   /* a resumed step that slept starts again */
  { NULL, NULL },
};

char *
ctl_dialect_ctlfs_key(CtlEngine *e, CtlObject *obj)
{
  return g_strdup(obj->name);
}

char *
ctl_dialect_ctlfs_encode(CtlEngine *e, CtlObject *obj, CtlCommandMsg *msg)
{
  return ctl_command_msg_encode(msg);
}

gboolean
ctl_dialect_ctlfs_decode(const char *value, gsize len, CtlCommandMsg *msg, GError **error)
{
  return ctl_command_msg_decode(value, len, msg, error);
}

/* Objects without files of their own (a backend's virtual directories) */
static const CtlType empty_type = { 0 };

const CtlType *
ctl_engine_type(CtlEngine *e, CtlObject *obj)
{
  switch (obj->kind) {
  case CTL_KIND_ROOT:     return &root_type;
  case CTL_KIND_RUNTIMES: return &runtimes_type;
  case CTL_KIND_RUNTIME:  return &runtime_type;
  default: break;
  }
  const CtlBackend *b = ctl_engine_backend(e, obj);
  return b ? b->type(obj) : &empty_type;
}
