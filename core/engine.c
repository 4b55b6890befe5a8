/* The engine: wiring, mkdir/rmdir, and the text of status (metrics: metrics.c). */
#include "engine-private.h"

#include <errno.h>
#include <string.h>

#include "backend-rama.h"
#include "lifecycle.h"
#include "timefmt.h"

/* The counts in a runtime's status, in this order; the lifecycle backend's
 * sleeping and shutting-down came later and so come last. */
static const char *const observed_states[] = {
  "running", "paused", "pausing", "resuming", "starting", "stopping", "stopped",
  "unknown", "stale", "sleeping", "shutting-down",
};

static void
on_link(gboolean up, gpointer user_data)
{
  CtlEngine *e = user_data;
  GError *error = NULL;
  CtlObject *root = ctl_model_root(e->model);
  if (!ctl_model_log(e->model, root, up ? "broker-up" : "broker-down", NULL, &error)) {
    g_warning("%s", error->message);
    g_error_free(error);
  }
  ctl_model_changed(e->model, root, CTL_CHANGE_STATE);
}

/* Announcements to other hosts and commands share the producer; messages on
 * the tree and command topics share the consumer with feedback. */
static void
on_delivered(gpointer opaque, gboolean ok, gint64 offset, const char *reason, gboolean timed_out,
             gboolean possibly_persisted, gpointer user_data)
{
  if (!ctl_engine_peer_delivered(user_data, opaque, ok, offset))
    ctl_engine_command_delivered(opaque, ok, offset, reason, timed_out, possibly_persisted,
                                 user_data);
}

static void
on_message(const char *topic, gint64 offset, const char *key, gsize key_len, const char *value,
           gsize value_len, const char *command_id, gpointer user_data)
{
  if (!ctl_engine_peer_message(user_data, topic, offset, key, key_len, value, value_len,
                               command_id))
    ctl_engine_feedback_message(topic, offset, key, key_len, value, value_len, user_data);
}

static const CtlBusCallbacks bus_callbacks = {
  .delivered = on_delivered,
  .batch_begin = ctl_engine_feedback_begin,
  .message = on_message,
  .batch_end = ctl_engine_feedback_end,
  .link = on_link,
};

/* A runtime that goes from the model (rmdir, or a creation whose commit was
 * lost) stops being watched. */
static void
on_runtime_removed(CtlObject *obj, CtlChange what, gpointer data)
{
  if ((what & CTL_CHANGE_REMOVED) && obj->kind == CTL_KIND_RUNTIME)
    ctl_engine_unwatch_runtime(data, obj);
}

CtlEngine *
ctl_engine_new(const CtlConfig *cfg, CtlStore *st, GError **error)
{
  CtlEngine *e = g_new0(CtlEngine, 1);
  ctl_config_copy(&e->cfg, cfg);
  e->store = st;
  e->started_us = g_get_monotonic_time();
  e->started_real_us = g_get_real_time();
  /* Keys are copies: a runtime's own strings die with it at rmdir. */
  e->by_topic = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  e->inflight = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, ctl_inflight_free);
  e->commands = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  e->batch_offsets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  e->acked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, ctl_acked_free);
  e->model = ctl_model_new(st, cfg->topic_prefix, error);
  /* Queued commands may wait forever for the broker; durable ones get the ack
   * timeout (the engine's own timer answers the writer on time). */
  int timeout = cfg->write_mode == CTL_WRITE_QUEUED ? 0 : cfg->ack_timeout_ms;
  if (e->model)
    e->bus = ctl_bus_new(cfg->brokers, timeout, &bus_callbacks, e, error);
  if (!e->bus) {
    ctl_engine_free(e);
    return NULL;
  }
  ctl_engine_peers_start(e);
  e->janitor = ctl_janitor_new(e);
  GHashTableIter it;
  gpointer rt;
  g_hash_table_iter_init(&it, ctl_model_runtimes(e->model)->children);
  while (g_hash_table_iter_next(&it, NULL, &rt))
    ctl_engine_watch_runtime(e, rt);
  ctl_model_add_listener(e->model, on_runtime_removed, e);
  ctl_engine_stale_init(e);
  ctl_engine_outbox_restart(e);
  ctl_rama_new(e);
  return e;
}

void
ctl_engine_free(CtlEngine *e)
{
  if (!e)
    return;
  e->stopping = TRUE;
  ctl_rama_free(e->rama);
  if (e->bus) {
    /* Durable writers still waiting are answered (EIO) by the purge inside. */
    ctl_bus_free(e->bus, e->cfg.write_mode == CTL_WRITE_QUEUED ? 2000 : 0);
    e->bus = NULL;
  }
  ctl_engine_inflight_fail_all(e, "daemon stopping");
  ctl_engine_stale_fini(e);
  ctl_janitor_free(e->janitor);
  e->janitor = NULL;
  /* Replies waiting for the last commit still see a whole model. */
  GError *error = NULL;
  if (!ctl_store_flush(e->store, &error)) {
    g_warning("store: last commit failed: %s", error->message);
    g_error_free(error);
  }
  /* After the flush: announcements waiting for it are then in the table. */
  ctl_engine_peers_stop(e);
  g_hash_table_unref(e->inflight);
  g_hash_table_unref(e->by_topic);
  g_hash_table_unref(e->commands);
  g_hash_table_unref(e->batch_offsets);
  g_hash_table_unref(e->acked);
  ctl_model_free(e->model);
  ctl_store_close(e->store);
  ctl_config_clear(&e->cfg);
  g_free(e);
}

CtlModel *
ctl_engine_model(CtlEngine *e)
{
  return e->model;
}

const CtlConfig *
ctl_engine_config(CtlEngine *e)
{
  return &e->cfg;
}

/* Runtimes and resources are shared with the other admin hosts (peers.c);
 * modules and topologies are the cluster's, asked of its CLI by each host. */
static gboolean
shared_with_peers(CtlObject *obj)
{
  return obj->kind == CTL_KIND_RUNTIME || obj->kind == CTL_KIND_RESOURCE;
}

int
ctl_engine_mkdir(CtlEngine *e, CtlObject *parent, const char *name, const CtlCaller *who,
                 CtlObject **out)
{
  char *by = ctl_caller_describe(who);
  int err = 0;
  GError *error = NULL;
  CtlObject *obj = ctl_model_create(e->model, parent, name, "created", by, &err);
  if (obj && shared_with_peers(obj) && !ctl_engine_announce(e, obj, TRUE, by, &error)) {
    /* Other hosts could not be told: the object must not exist only here. */
    g_warning("%s: cannot announce: %s", name, error->message);
    g_error_free(error);
    ctl_model_remove(e->model, obj, by);
    obj = NULL;
    err = EIO;
  }
  g_free(by);
  if (obj && obj->kind == CTL_KIND_RUNTIME)
    ctl_engine_watch_runtime(e, obj);
  *out = obj;
  return err;
}

int
ctl_engine_rmdir(CtlEngine *e, CtlObject *obj, const CtlCaller *who)
{
  if (obj->kind == CTL_KIND_TOPOLOGIES || obj->kind == CTL_KIND_OPTIONS)
    return EPERM;   /* goes with its module */
  if (ctl_model_has_children(obj))
    return ENOTEMPTY;
  if (obj->inflight > 0)
    return EBUSY;
  char *by = ctl_caller_describe(who);
  GError *error = NULL;
  /* Announced first (it is in the same transaction as the removal): the
   * announcement still names the object. */
  int err = !shared_with_peers(obj) || ctl_engine_announce(e, obj, FALSE, by, &error) ? 0 : EIO;
  if (err) {
    g_warning("%s: cannot announce removal: %s", obj->name, error->message);
    g_error_free(error);
  } else {
    if (obj->kind == CTL_KIND_RUNTIME)
      ctl_engine_unwatch_runtime(e, obj);
    err = ctl_model_remove(e->model, obj, by);
  }
  g_free(by);
  return err;
}

typedef struct {
  CtlCommandDone done;
  gpointer       user_data;
  int            err;
} Deferred;

static void
on_committed(gpointer data, gboolean ok, const char *reason)
{
  Deferred *d = data;
  d->done(ok ? d->err : EIO, d->user_data);
  g_free(d);
}

void
ctl_engine_reply(CtlEngine *e, int err, CtlCommandDone done, gpointer user_data)
{
  Deferred *d = g_new(Deferred, 1);
  d->done = done;
  d->user_data = user_data;
  d->err = err;
  ctl_store_after_commit(e->store, on_committed, d);
}

void
ctl_engine_after_commit(CtlEngine *e, CtlCommandDone done, gpointer user_data)
{
  ctl_engine_reply(e, 0, done, user_data);
}

char *
ctl_write_shape_problem(gsize len, gint64 offset, gsize max)
{
  if (offset != 0)
    return g_strdup("the value must be written whole at offset 0");
  if (len > max)
    return g_strdup_printf("longer than %zu bytes", max);
  return NULL;
}

const char *
ctl_engine_observed(CtlEngine *e, CtlObject *obj)
{
  if (!obj->observed)
    return "unknown";
  if (obj->feedback_at > 0 && ctl_now_ms() - obj->feedback_at > e->cfg.stale_after_ms)
    return "stale";
  return obj->observed;
}

/* ---- status ---- */

static void
kv(GString *out, const char *key, const char *value)
{
  g_string_append_printf(out, "%s: %s\n", key, value && *value ? value : "-");
}

static void
kv_time(GString *out, const char *key, gint64 ms)
{
  char ts[CTL_TIME_LEN];
  kv(out, key, ms > 0 ? ctl_time_format(ms, ts) : NULL);
}

static void
kv_int(GString *out, const char *key, gint64 n)
{
  g_string_append_printf(out, "%s: %" G_GINT64_FORMAT "\n", key, n);
}

static void
kv_offset(GString *out, const char *key, gint64 next)
{
  if (next > 0)
    kv_int(out, key, next - 1);
  else
    kv(out, key, NULL);
}

static void
status_resource(CtlEngine *e, CtlObject *obj, GString *out)
{
  gboolean flow = ctl_engine_is_flow(e, obj);
  kv(out, "desired", flow ? ctl_lifecycle_desired(e, obj) : obj->desired);
  kv(out, "observed", ctl_engine_observed(e, obj));
  kv_time(out, "observed_at", obj->observed_at);
  kv(out, "pending", obj->pending);
  char *last = obj->last_cmd_id ? g_strdup_printf("%s %s %s", obj->last_cmd_id,
                                                  obj->last_cmd_verb, obj->last_cmd_result)
                                : NULL;
  kv(out, "last_command", last);
  g_free(last);
  /* One line per key: a multi-line reason is flattened. */
  char *err = obj->last_error ? g_strdelimit(g_strdup(obj->last_error), "\n\r", ' ') : NULL;
  kv(out, "last_error", err);
  g_free(err);
  if (obj->feedback_at > 0)
    kv_int(out, "heartbeat_age_ms", MAX(0, ctl_now_ms() - obj->feedback_at));
  else
    kv(out, "heartbeat_age_ms", NULL);
  /* What the runtime last said, which `observed` hides once it is stale. */
  kv(out, "reported", obj->observed);
  if (flow)
    kv(out, "mode", ctl_lifecycle_mode(obj));
}

static void
status_runtime(CtlEngine *e, CtlObject *rt, GString *out)
{
  kv(out, "backend", ctl_backend_name(ctl_config_backend(&e->cfg, rt->name)));
  kv(out, "dialect", ctl_dialect_name(ctl_config_dialect(&e->cfg, rt->name)));
  kv(out, "command_topic", rt->command_topic);
  kv(out, "feedback_topic", rt->feedback_topic);
  /* The last offset handled on each topic, as stored (CDAP keeps them per
   * runtime and topic too). */
  kv_offset(out, "feedback_offset", rt->feedback_next);
  kv_offset(out, "command_offset", rt->command_next);
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
  char *access = ctl_policy_describe(e->cfg.policy, rt->name);
  kv(out, "access", access);
  g_free(access);
  kv(out, "activity", ctl_janitor_activity(e->janitor, rt));
  gint64 silent = ctl_janitor_silent_ms(e->janitor, rt);
  if (silent >= 0)
    kv_int(out, "silent_ms", silent);
  else
    kv(out, "silent_ms", NULL);
}

static void
status_root(CtlEngine *e, GString *out)
{
  kv(out, "version", CTLFS_VERSION);
  kv(out, "brokers", e->cfg.brokers);
  kv(out, "broker_link", ctl_bus_link_up(e->bus) ? "up" : "down");
  kv(out, "db", e->cfg.db_path);
  kv(out, "write_mode", e->cfg.write_mode == CTL_WRITE_QUEUED ? "queued" : "durable");
  kv_int(out, "pending_commands", g_hash_table_size(e->inflight));
  kv_int(out, "uptime_s", (g_get_monotonic_time() - e->started_us) / G_USEC_PER_SEC);
  char *access = ctl_policy_describe(e->cfg.policy, NULL);
  kv(out, "access", access);
  g_free(access);
}

void
ctl_engine_show_status(CtlEngine *e, CtlObject *obj, GString *out)
{
  switch (obj->kind) {
  case CTL_KIND_ROOT:     status_root(e, out); break;
  case CTL_KIND_RUNTIME:  status_runtime(e, obj, out); break;
  case CTL_KIND_RESOURCE:
  case CTL_KIND_TOPOLOGY: status_resource(e, obj, out); break;
  case CTL_KIND_MODULE:   ctl_rama_show_module(e, obj, out); break;
  default: break;
  }
}
