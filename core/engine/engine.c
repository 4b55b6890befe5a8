/* The engine: wiring, and the directory operations (the text of status:
 * attrs.c; metrics: metrics.c). */
#include "engine-private.h"

#include <errno.h>
#include <string.h>

#include "name.h"
#include "timefmt.h"

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
on_delivered(gpointer opaque, gboolean ok, int partition, gint64 offset, const char *reason,
             gboolean timed_out, gboolean possibly_persisted, gpointer user_data)
{
  if (!ctl_engine_peer_delivered(user_data, opaque, ok, offset))
    ctl_engine_command_delivered(opaque, ok, partition, offset, reason, timed_out,
                                 possibly_persisted, user_data);
}

static void
on_message(const char *topic, int partition, gint64 offset, const char *key, gsize key_len,
           const char *value, gsize value_len, const char *command_id, gpointer user_data)
{
  CtlEngine *e = user_data;
  e->msg_partition = partition;
  e->msg_key = key;
  e->msg_key_len = key_len;
  if (!ctl_engine_peer_message(e, topic, partition, offset, key, key_len, value, value_len,
                               command_id))
    ctl_engine_feedback_message(topic, partition, offset, key, key_len, value, value_len, e);
  e->msg_partition = -1;
  e->msg_key = NULL;
}

/* Positions are the store's: stored with the state they produced. */
static gint64
on_position(const char *topic, int partition, gpointer user_data)
{
  CtlEngine *e = user_data;
  return ctl_store_offset_get(e->store, topic, partition);
}

static const CtlBusCallbacks bus_callbacks = {
  .delivered = on_delivered,
  .batch_begin = ctl_engine_feedback_begin,
  .message = on_message,
  .batch_end = ctl_engine_feedback_end,
  .link = on_link,
  .position = on_position,
  .topic_checked = ctl_engine_topic_checked,
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
  e->msg_partition = -1;
  e->acked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, ctl_acked_free);
  e->backend_data = g_hash_table_new(NULL, NULL);
  e->model = ctl_model_new(st, &e->cfg, error);
  /* Queued commands may wait forever for the broker; durable ones get the ack
   * timeout (the engine's own timer answers the writer on time). */
  int timeout = cfg->write_mode == CTL_WRITE_QUEUED ? 0 : cfg->ack_timeout_ms;
  if (e->model)
    e->bus = ctl_bus_new(cfg->brokers, (const char *const *) cfg->kafka_props, timeout,
                         &bus_callbacks, e, error);
  if (!e->bus) {
    ctl_engine_free(e);
    return NULL;
  }
  ctl_engine_topics_start(e);
  ctl_engine_peers_start(e);
  e->janitor = ctl_janitor_new(e);
  GHashTableIter it;
  gpointer rt;
  g_hash_table_iter_init(&it, ctl_model_runtimes(e->model)->children);
  while (g_hash_table_iter_next(&it, NULL, &rt))
    ctl_engine_watch_runtime(e, rt);
  ctl_model_add_listener(e->model, on_runtime_removed, e);
  ctl_engine_stale_init(e);
  ctl_engine_drift_init(e);
  ctl_engine_reported_init(e);
  ctl_engine_outbox_restart(e);
  ctl_engine_backends_start(e);
  return e;
}

void
ctl_engine_free(CtlEngine *e)
{
  if (!e)
    return;
  e->stopping = TRUE;
  ctl_engine_backends_stop(e);
  if (e->bus) {
    /* Durable writers still waiting are answered (EIO) by the purge inside. */
    ctl_bus_free(e->bus, e->cfg.write_mode == CTL_WRITE_QUEUED ? 2000 : 0);
    e->bus = NULL;
  }
  ctl_engine_inflight_fail_all(e, "daemon stopping");
  ctl_engine_topics_stop(e);
  ctl_engine_stale_fini(e);
  ctl_engine_drift_fini(e);
  ctl_engine_reported_fini(e);
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
  g_hash_table_unref(e->backend_data);
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

/* Authorises WHO for ACCESS on OBJ (VERB NAME as the refusal records it)
 * and fills in WHO's audit fields for the log line that follows. */
int
ctl_engine_authorize_and_resolve(CtlEngine *e, CtlAccess access, CtlObject *obj, const char *verb, const char *name,
          CtlCaller *who)
{
  int err = ctl_engine_authorize(e, access, obj, verb, name, who);
  if (!err)
    ctl_caller_resolve(who);
  return err;
}

/* A name taken by one of DIR's files. */
gboolean
ctl_engine_names_a_file(CtlEngine *e, CtlObject *dir, const char *name)
{
  const CtlType *type = ctl_engine_type(e, dir);
  for (guint i = 0; i < type->n_attrs; i++)
    if (strcmp(type->attrs[i].name, name) == 0)
      return TRUE;
  return FALSE;
}

/* Records a directory operation turned down (see ctl_engine_refuse_request):
 * "VERB NAME" as the request; returns ERR. */
static int
turned_down(CtlEngine *e, CtlObject *obj, CtlAccess access, int err, const char *verb,
            const char *name, const char *reason, CtlCaller *who)
{
  char *request = g_strdup_printf("%s %s", verb, name);
  ctl_engine_refuse_request(e, obj, access, err, request, reason, who);
  g_free(request);
  return err;
}

/* What a directory whose children do not come by mkdir says to one. */
static const char *
no_mkdir_reason(CtlEngine *e, CtlObject *parent)
{
  if (ctl_engine_type(e, parent)->children == CTL_CHILDREN_CREATE)
    return "only files are created here, not directories";
  return "no directory can be made here: mkdir declares objects in runtimes/, in a runtime,"
         " in modules/ and in a module's topologies/, depots/ and pstates/";
}

int
ctl_engine_mkdir(CtlEngine *e, CtlObject *parent, const char *name, CtlCaller *who,
                 CtlObject **out)
{
  *out = NULL;
  if (ctl_engine_names_a_file(e, parent, name))
    return EEXIST;
  if (ctl_engine_type(e, parent)->children != CTL_CHILDREN_MKDIR)
    return turned_down(e, parent, CTL_ACCESS_DECLARE, EPERM, "mkdir", name,
                       no_mkdir_reason(e, parent), who);
  int err = ctl_engine_authorize_and_resolve(e, CTL_ACCESS_DECLARE, parent, "mkdir", name, who);
  if (err)
    return err;
  char *problem = ctl_model_name_problem(parent, name);
  if (problem) {
    turned_down(e, parent, CTL_ACCESS_DECLARE, EINVAL, "mkdir", name, problem, who);
    g_free(problem);
    return EINVAL;
  }
  char *by = ctl_caller_describe(who);
  GError *error = NULL;
  CtlObject *obj = ctl_model_create(e->model, parent, name, "created", by, &err);
  if (obj && ctl_engine_shared(e, obj) && !ctl_engine_announce(e, obj, TRUE, by, &error)) {
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
  if (err == EPERM)   /* a kind the model makes only with its parent */
    turned_down(e, parent, CTL_ACCESS_DECLARE, err, "mkdir", name,
                no_mkdir_reason(e, parent), who);
  *out = obj;
  return err;
}

/* Removes OBJ for WHO: the checks rmdir and unlink share; a refusal is
 * recorded as VERB on ON (the directory it was asked in) under ACCESS. */
static int
remove_object(CtlEngine *e, CtlObject *obj, CtlObject *on, CtlAccess access, const char *verb,
              CtlCaller *who)
{
  if (ctl_kind_is_own_dir(obj->kind))
    return turned_down(e, on, access, EPERM, verb, obj->name,
                       obj->parent->kind == CTL_KIND_MODULE
                       ? "it goes with its module: rmdir the module"
                       : "it goes with its owner: rmdir that", who);
  if (ctl_model_has_children(obj)) {
    guint n = ctl_model_members(obj);
    char *why = g_strdup_printf("it still holds %u object%s: remove %s first", n,
                                n == 1 ? "" : "s", n == 1 ? "it" : "them");
    turned_down(e, on, access, ENOTEMPTY, verb, obj->name, why, who);
    g_free(why);
    return ENOTEMPTY;
  }
  if (obj->inflight > 0)
    return turned_down(e, on, access, EBUSY, verb, obj->name,
                       "a command on it is still on its way", who);
  char *by = ctl_caller_describe(who);
  GError *error = NULL;
  /* Announced first (it is in the same transaction as the removal): the
   * announcement still names the object. */
  int err = !ctl_engine_shared(e, obj) || ctl_engine_announce_removal(e, obj, by, &error) ? 0 : EIO;
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

int
ctl_engine_rmdir(CtlEngine *e, CtlObject *obj, CtlCaller *who)
{
  int err = ctl_engine_authorize_and_resolve(e, CTL_ACCESS_DECLARE, obj->parent, "rmdir", obj->name, who);
  return err ? err : remove_object(e, obj, obj->parent, CTL_ACCESS_DECLARE, "rmdir", who);
}

int
ctl_engine_unlink(CtlEngine *e, CtlObject *obj, CtlCaller *who)
{
  if (ctl_engine_type(e, obj->parent)->children != CTL_CHILDREN_CREATE)
    return turned_down(e, obj->parent, CTL_ACCESS_COMMAND, EPERM, "unlink", obj->name,
                       "the daemon's files cannot be removed", who);
  int err = ctl_engine_authorize_and_resolve(e, CTL_ACCESS_COMMAND, obj->parent->parent, "unlink", obj->name, who);
  return err ? err : remove_object(e, obj, obj->parent->parent, CTL_ACCESS_COMMAND, "unlink", who);
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

CtlStore *
ctl_engine_store(CtlEngine *e)
{
  return e->store;
}

void
ctl_engine_log(CtlEngine *e, CtlObject *obj, const char *event, const char *details)
{
  GError *error = NULL;
  gboolean ok = ctl_model_begin(e->model, &error);
  ok = ok && ctl_model_log(e->model, obj, event, details, &error);
  if (!ctl_model_end(e->model, ok, &error)) {
    g_warning("%s: cannot log %s: %s", obj->name, event, error->message);
    g_error_free(error);
  }
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
