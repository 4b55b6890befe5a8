/* The command path: a `state` write becomes a stored command, a Kafka message,
 * and an answer to the writer. Lifecycle: queued -> sent -> applied | failed. */

#include <errno.h>
#include <string.h>

#include "backend.h"
#include "engine-private.h"
#include "message.h"
#include "verb.h"
#include "timefmt.h"

/* The verbs are the backend's: NULL when OBJ's backend takes VERB, else why
 * not (g_free). */
static char *
backend_refuses(const CtlBackend *b, const char *verb)
{
  if (ctl_backend_takes(b, verb))
    return NULL;
  char *verbs = ctl_backend_verbs_text(b);
  char *why = g_strdup_printf("verb %s not supported by the %s backend (it takes %s)", verb,
                              b->backend, verbs);
  g_free(verbs);
  return why;
}

void
ctl_engine_count_command(CtlEngine *e, const char *verb, const char *result)
{
  char *key = g_strdup_printf("%s\037%s", verb, result);
  guint64 *n = g_hash_table_lookup(e->commands, key);
  if (!n) {
    n = g_new0(guint64, 1);
    g_hash_table_insert(e->commands, key, n);
  } else {
    g_free(key);
  }
  (*n)++;
}

static void
command_details(GString *d, const char *id, const char *verb, const char *by, const char *result)
{
  ctl_kv_append(d, "id", id);
  ctl_kv_append(d, "verb", verb);
  if (by)
    g_string_append_printf(d, " %s", by);
  ctl_kv_append(d, "result", result);
}

/* Records RESULT of command ID on OBJ: the command row, the object's status and
 * one log line, in one transaction. EXTRA is appended to the line. */
static gboolean
record(CtlEngine *e, CtlObject *obj, const char *id, const char *verb, const char *by,
       const char *result, gint64 offset, const char *error_text, const char *extra,
       GError **error)
{
  GString *d = g_string_new(NULL);
  command_details(d, id, verb, by, result);
  if (offset >= 0)
    g_string_append_printf(d, " offset=%" G_GINT64_FORMAT, offset);
  if (error_text)
    ctl_kv_append(d, "error", error_text);
  if (extra)
    g_string_append_printf(d, " %s", extra);
  if (g_strcmp0(obj->last_cmd_id, id) == 0)
    ctl_set_str(&obj->last_cmd_result, result);
  gboolean ok = ctl_model_begin(e->model, error);
  ok = ok && ctl_store_command_update(e->store, id, result, offset, error_text, error);
  ok = ok && ctl_model_save(e->model, obj, error);
  ok = ok && ctl_model_log(e->model, obj, "command", d->str, error);
  ok = ctl_model_end(e->model, ok, error);
  g_string_free(d, TRUE);
  ctl_engine_count_command(e, verb, result);
  ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
  return ok;
}

/* The root's status shows how many commands wait for the broker. */
static void
pending_changed(CtlEngine *e)
{
  ctl_model_changed(e->model, ctl_model_root(e->model), CTL_CHANGE_STATE);
}

static void show_desired(CtlEngine *e, CtlObject *res, gboolean elsewhere);

/* Our acknowledged commands remembered until read back (e->acked), at most. */
#define ACKED_MAX 65536

void
ctl_acked_free(gpointer p)
{
  CtlAcked *a = p;
  g_free(a->runtime);
  g_free(a->resource);
  g_free(a->verb);
  g_free(a->value);
  g_free(a);
}

static void
acked_clear(CtlEngine *e)
{
  g_hash_table_remove_all(e->acked);
  e->acked_bytes = 0;
}

/* INF was acknowledged: its message moves to e->acked, within the budget. */
static void
acked_add(CtlEngine *e, CtlInflight *inf)
{
  CtlAcked *a = g_new0(CtlAcked, 1);
  a->runtime = g_strdup(ctl_command_runtime(inf->obj)->name);
  a->resource = g_strdup(ctl_command_resource(inf->obj));
  a->verb = g_strdup(inf->verb);
  gsize len = inf->value ? strlen(inf->value) : 0;
  if (inf->value && e->acked_bytes + len <= CTL_ACKED_BYTES_MAX) {
    a->value = g_steal_pointer(&inf->value);   /* inf goes right after */
    a->len = len;
    e->acked_bytes += len;
  }
  CtlAcked *had = g_hash_table_lookup(e->acked, inf->id);
  if (had)
    e->acked_bytes -= had->len;
  g_hash_table_insert(e->acked, g_strdup(inf->id), a);
}

static gboolean
acked_remove(CtlEngine *e, const char *id)
{
  CtlAcked *a = g_hash_table_lookup(e->acked, id);
  if (!a)
    return FALSE;
  e->acked_bytes -= a->len;
  return g_hash_table_remove(e->acked, id);
}

/* A command's place in its topic is known: the broker acknowledged it, it
 * was read back, or it failed. Until all of an object's are placed, commands
 * read from the topic are older than one of ours (see ctl_engine_desire). */
static void
place(CtlInflight *inf)
{
  if (inf->placed)
    return;
  inf->placed = TRUE;
  if (--inf->obj->unplaced == 0)
    show_desired(inf->engine, inf->obj,
                 inf->engine->cfg.write_mode == CTL_WRITE_QUEUED);
}

static void
inflight_free(CtlInflight *inf)
{
  place(inf);
  if (inf->timer)
    g_source_remove(inf->timer);
  if (inf->waiting)
    g_queue_delete_link(&inf->engine->waiting, inf->waiting);
  inf->obj->inflight--;
  pending_changed(inf->engine);
  g_free(inf->id);
  g_free(inf->verb);
  g_free(inf->by);
  g_free(inf->topic);
  g_free(inf->key);
  g_free(inf->value);
  g_free(inf);
}

/* The writer hears once the outcome is committed: a success it was told of
 * is never lost to a crash. */
static void
answer(CtlInflight *inf, int err)
{
  CtlCommandDone done = inf->done;
  inf->done = NULL;
  if (done)
    ctl_engine_reply(inf->engine, err, done, inf->user_data);
}

/* A failure the writer must hear about: the command is failed for good and
 * the object no longer waits for it. */
static void
fail_command(CtlEngine *e, CtlInflight *inf, const char *why, const char *extra, int err)
{
  CtlObject *obj = inf->obj;
  if (g_strcmp0(obj->pending, inf->id) == 0)
    ctl_set_str(&obj->pending, NULL);
  ctl_set_str(&obj->last_error, why);
  GError *error = NULL;
  if (!record(e, obj, inf->id, inf->verb, inf->by, "failed", -1, why, extra, &error)) {
    g_warning("%s: cannot record failed command %s: %s", obj->name, inf->id, error->message);
    g_error_free(error);
  }
  answer(inf, err);
}

/* The --ack-timeout-ms backstop. librdkafka times messages out by itself too,
 * but only on a one-second scan; the writer is answered on time here, and
 * whatever still waits in the producer's queue is withdrawn so that it is
 * never delivered after the writer saw ETIMEDOUT. */
static gboolean
on_ack_timeout(gpointer data)
{
  CtlInflight *inf = data;
  CtlEngine *e = inf->engine;
  inf->timer = 0;
  inf->timed_out = TRUE;
  char *why = g_strdup_printf("broker did not acknowledge within %d ms", e->cfg.ack_timeout_ms);
  fail_command(e, inf, why, NULL, ETIMEDOUT);
  g_free(why);
  if (inf->waiting)       /* never handed to the producer: it simply goes */
    g_hash_table_remove(e->inflight, inf->id);
  else if (inf->handed)
    ctl_bus_purge_queued(e->bus);
  /* else its row is not committed yet: command_committed() drops it */
  return G_SOURCE_REMOVE;
}

static void
delivered_ok(CtlEngine *e, CtlInflight *inf, int partition, gint64 offset)
{
  CtlObject *obj = inf->obj;
  GError *error = NULL;
  const char *result = inf->applied ? "applied" : "sent";
  g_autofree char *extra = g_strdup_printf("partition=%d", partition);
  if (inf->timed_out) {
    /* Only a request already on the wire when the timeout hit can get here:
     * say so plainly rather than hide it. */
    result = "sent";
    g_free(extra);
    extra = g_strdup_printf("partition=%d warning=\"acknowledged after the write had failed"
                            " with ETIMEDOUT\"", partition);
    ctl_set_str(&obj->pending, inf->id);
    ctl_set_str(&obj->last_error, "command acknowledged after its write timed out");
  } else {
    ctl_engine_desire(e, obj, inf->verb, inf->id, TRUE, partition, offset,
                      e->cfg.write_mode == CTL_WRITE_QUEUED);
    /* Reading it back from the topic then costs no store lookup, nor (with
     * the message kept) parsing it. The table empties as the consumer
     * catches up; one that never does is not kept. */
    if (g_hash_table_size(e->acked) >= ACKED_MAX)
      acked_clear(e);
    acked_add(e, inf);
    if (g_strcmp0(obj->last_cmd_id, inf->id) == 0)
      ctl_set_str(&obj->last_error, NULL);
  }
  if (!record(e, obj, inf->id, inf->verb, inf->by, result, offset, NULL, extra, &error)) {
    g_warning("%s: cannot record sent command %s: %s", obj->name, inf->id, error->message);
    g_error_free(error);
    answer(inf, EIO);
    return;
  }
  answer(inf, 0);
}

static void pump(CtlEngine *e);

static void
possibly_sent(CtlEngine *e, CtlInflight *inf, const char *reason)
{
  CtlObject *obj = inf->obj;
  GError *error = NULL;
  if (g_strcmp0(obj->last_cmd_id, inf->id) == 0)
    ctl_set_str(&obj->last_error, "command may have reached the broker after its write timed out");
  char *extra = g_strdup_printf("possibly_persisted=yes warning=\"may have reached the broker"
                                " after the write had failed with ETIMEDOUT\"");
  if (!record(e, obj, inf->id, inf->verb, inf->by, "failed", -1, reason, extra, &error)) {
    g_warning("%s: cannot record command %s: %s", obj->name, inf->id, error->message);
    g_error_free(error);
  }
  g_free(extra);
}

void
ctl_engine_command_delivered(gpointer opaque, gboolean ok, int partition, gint64 offset, const char *reason,
                             gboolean timed_out, gboolean possibly_persisted, gpointer user_data)
{
  CtlInflight *inf = opaque;
  CtlEngine *e = inf->engine;
  gboolean queued = e->cfg.write_mode == CTL_WRITE_QUEUED;
  e->producing--;
  if (ok) {
    delivered_ok(e, inf, partition, offset);
  } else if (queued && !e->stopping) {
    /* The outbox never gives up: a fatal producer error is logged and the
     * command stays queued for the next start. */
    g_warning("%s: command %s not delivered: %s", inf->obj->name, inf->id, reason);
  } else if (queued) {
    /* Daemon stopping: the command stays queued in the store and goes out
     * on the next start. */
  } else if (inf->timed_out) {
    /* The writer saw ETIMEDOUT, but the request was on the wire: the broker
     * may have it, and a runtime may apply it. Say so plainly. */
    if (possibly_persisted)
      possibly_sent(e, inf, reason);
  } else {
    char *why = g_strdup_printf("%s%s", timed_out ? "broker did not acknowledge: " : "",
                                e->stopping ? "daemon stopping" : reason);
    fail_command(e, inf, why, possibly_persisted ? "possibly_persisted=yes" : NULL,
                 timed_out ? ETIMEDOUT : EIO);
    g_free(why);
  }
  g_hash_table_remove(e->inflight, inf->id);   /* frees inf */
  pump(e);
}

static CtlInflight *
inflight_new(CtlEngine *e, CtlObject *obj, const char *id, const char *verb,
             const CtlCaller *who)
{
  CtlInflight *inf = g_new0(CtlInflight, 1);
  inf->engine = e;
  inf->obj = obj;
  inf->id = g_strdup(id);
  inf->verb = g_strdup(verb);
  inf->by = ctl_caller_describe(who);
  obj->inflight++;
  obj->unplaced++;
  g_hash_table_insert(e->inflight, inf->id, inf);
  pending_changed(e);
  return inf;
}

/* Hands waiting commands to the producer, in order, up to the window. One
 * that librdkafka refuses at once is failed (durable) or stays queued in the
 * store for the next start (queued). */
static void
pump(CtlEngine *e)
{
  while (!e->stopping && e->producing < CTL_PRODUCE_WINDOW && !g_queue_is_empty(&e->waiting)) {
    CtlInflight *inf = g_queue_pop_head(&e->waiting);
    inf->waiting = NULL;
    GError *error = NULL;
    const char *resource = ctl_command_resource(inf->obj);
    const char *headers[] = {
      CTL_MSG_HEADER_ID, inf->id,
      CTL_MSG_HEADER_VERB, inf->verb,
      resource ? CTL_MSG_HEADER_RESOURCE : NULL, resource,   /* none: runtime-wide */
      NULL,
    };
    if (ctl_bus_produce(e->bus, inf->topic, inf->key, inf->value, headers, inf, &error)) {
      e->producing++;
      inf->handed = TRUE;
      continue;
    }
    if (e->cfg.write_mode == CTL_WRITE_DURABLE)
      fail_command(e, inf, error->message, NULL, EIO);
    else
      g_warning("%s: command %s stays queued: %s", inf->obj->name, inf->id, error->message);
    g_error_free(error);
    g_hash_table_remove(e->inflight, inf->id);
  }
}

static void
enqueue(CtlEngine *e, CtlInflight *inf)
{
  g_queue_push_tail(&e->waiting, inf);
  inf->waiting = e->waiting.tail;
  pump(e);
}

/* A stored command joins the queue before the producer. */
static void
publish(CtlEngine *e, CtlInflight *inf, const char *topic, const char *key, const char *value)
{
  inf->topic = g_strdup(topic);
  inf->key = g_strdup(key);
  inf->value = g_strdup(value);
  enqueue(e, inf);
}

/* A new command reaches the producer only once the batch holding its row has
 * committed. If that commit fails (disk full), the writer hears EIO -- in
 * queued mode through its reply, queued after this callback -- and the
 * command must never be delivered: it goes here, unsent. */
static void
command_committed(gpointer data, gboolean ok, const char *reason)
{
  CtlInflight *inf = data;
  CtlEngine *e = inf->engine;
  if (ok && !inf->timed_out) {
    enqueue(e, inf);
    return;
  }
  if (!ok) {
    g_warning("%s: command %s not stored, never sent: %s", inf->obj->name, inf->id, reason);
    ctl_engine_count_command(e, inf->verb, "failed");
    answer(inf, EIO);
  }
  g_hash_table_remove(e->inflight, inf->id);   /* frees inf */
}

static char *
encode(CtlEngine *e, const CtlBackend *b, const char *id, CtlObject *obj, const char *verb,
       gint64 issued_at, const CtlCaller *who)
{
  CtlCommandMsg msg = {
    .id = (char *) id,
    .runtime = ctl_command_runtime(obj)->name,
    .resource = (char *) ctl_command_resource(obj),
    .verb = (char *) verb,
    .issued_at_ms = issued_at,
    .uid = who->uid,
    .user = who->user,
    .pid = who->pid,
    .comm = who->comm,
    .host = (char *) who->host,
  };
  return b->command_encode(e, obj, &msg);
}

/* A runtime-wide command ID: the resources that await it, saved with it. */
static gboolean
save_followers(CtlEngine *e, CtlObject *obj, const char *id, GError **error)
{
  GPtrArray *children = obj->kind == CTL_KIND_RUNTIME ? ctl_model_children_array(obj) : NULL;
  gboolean ok = TRUE;
  for (guint i = 0; ok && children && i < children->len; i++)
    if (g_strcmp0(((CtlObject *) children->pdata[i])->pending, id) == 0)
      ok = ctl_model_save(e->model, children->pdata[i], error);
  return ok;
}

/* Stores the command, and in queued mode the new desired state with it: once
 * this commits, a queued write has succeeded. */
static gboolean
store_command(CtlEngine *e, CtlObject *obj, const char *id, const char *verb, gint64 now,
              const CtlCaller *who, GError **error)
{
  gboolean queued = e->cfg.write_mode == CTL_WRITE_QUEUED;
  CtlCommandRow row = {
    .id = id, .object_id = obj->id, .runtime = ctl_command_runtime(obj)->name,
    .resource = obj->kind == CTL_KIND_RUNTIME ? "" : obj->name,   /* "": runtime-wide */
    .verb = verb, .mode = queued ? "queued" : "durable",
    .uid = who->uid, .user = who->user, .pid = who->pid, .comm = who->comm,
    .host = who->host, .issued_at = now, .result = "queued", .offset = -1,
  };
  ctl_engine_drift_commanded(e, obj, id, who);
  ctl_set_str(&obj->pending, id);
  ctl_set_str(&obj->last_cmd_id, id);
  ctl_set_str(&obj->last_cmd_verb, verb);
  ctl_set_str(&obj->last_cmd_result, "queued");
  if (queued) {
    if (ctl_set_str(&obj->desired, ctl_engine_desired_after(e, obj, verb)))
      ctl_model_changed(e->model, obj, CTL_CHANGE_DESIRED);
    ctl_set_str(&obj->last_error, NULL);
  }
  if (obj->kind == CTL_KIND_RUNTIME)
    ctl_engine_runtime_fanout(e, obj, id);
  GString *d = g_string_new(NULL);
  char *by = ctl_caller_describe(who);
  command_details(d, id, verb, by, "queued");
  gboolean ok = ctl_model_begin(e->model, error);
  ok = ok && ctl_store_command_insert(e->store, &row, error);
  ok = ok && ctl_model_save(e->model, obj, error);
  ok = ok && save_followers(e, obj, id, error);
  /* The queued line is the writer's receipt in queued mode; in durable mode
   * the writer's answer is the sent/failed line that follows. */
  ok = ok && (!queued || ctl_model_log(e->model, obj, "command", d->str, error));
  ok = ctl_model_end(e->model, ok, error);
  g_free(by);
  g_string_free(d, TRUE);
  return ok;
}

static void issue(CtlEngine *e, CtlObject *obj, const CtlBackend *b, const char *verb,
                  const CtlCaller *who, CtlCommandDone done, gpointer user_data);

/* A declarative write: VERB asks for the state resource OBJ is desired in
 * and reported in, with nothing on the way, so there is nothing to send. (A
 * runtime's state is a summary of its resources': its writes always go.) */
static gboolean
unchanged(CtlEngine *e, CtlObject *obj, const char *verb)
{
  const char *target = ctl_verb_target(verb);
  if (!target || obj->kind != CTL_KIND_RESOURCE || obj->pending || obj->inflight > 0
      || obj->unplaced > 0)
    return FALSE;
  /* A resource that follows its runtime is made an override by a write of
   * the same state: that changes something. */
  if (ctl_engine_runtime_wide(e, obj->parent) && !ctl_engine_override(e, obj))
    return FALSE;
  return g_strcmp0(target, ctl_engine_desired(e, obj)) == 0
         && g_strcmp0(target, ctl_engine_observed(e, obj)) == 0;
}

/* Its receipt: "command verb=V by=... result=unchanged", no id (nothing was
 * stored nor sent), counted as a command with that result. */
static void
record_unchanged(CtlEngine *e, CtlObject *obj, const char *verb, const CtlCaller *who)
{
  GString *d = g_string_new(NULL);
  char *by = ctl_caller_describe(who);
  command_details(d, NULL, verb, by, "unchanged");
  ctl_engine_log(e, obj, "command", d->str);
  ctl_engine_count_command(e, verb, "unchanged");
  g_free(by);
  g_string_free(d, TRUE);
}

void
ctl_engine_command_as(CtlEngine *e, CtlObject *obj, const char *verb, const CtlCaller *who,
                      CtlCommandDone done, gpointer user_data)
{
  issue(e, obj, ctl_engine_command_backend(e, obj), verb, who, done, user_data);
}

/* Why VERB cannot go to OBJ in its scope (g_free), or NULL: a runtime takes
 * pause and resume when its backend has a runtime-wide state; inherit is a
 * resource's. */
static char *
runtime_wide_problem(const CtlBackend *b, CtlObject *obj, const char *verb)
{
  gboolean inherit = g_str_equal(verb, CTL_VERB_INHERIT);
  if (obj->kind != CTL_KIND_RUNTIME)
    return inherit && !b->runtime_state
           ? g_strdup_printf("the %s backend has no runtime-wide state to inherit", b->name)
           : NULL;
  if (inherit)
    return g_strdup("inherit is written to a resource's state: a runtime follows nothing");
  if (!b->runtime_state)
    return g_strdup_printf("the %s backend has no runtime-wide state: command each resource",
                           b->name);
  return NULL;
}

void
ctl_engine_command(CtlEngine *e, CtlObject *obj, const char *input, gsize len, gint64 offset,
                   const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_engine_time_write(e, &done, &user_data);   /* every answer below is timed */
  const char *verb = NULL;
  char *reason = ctl_write_shape_problem(len, offset, CTL_WRITE_MAX);
  if (!reason)
    verb = ctl_verb_parse(input, len, &reason);
  if (!verb) {
    len = MIN(len, CTL_WRITE_MAX);   /* the log keeps what identifies the input */
    ctl_engine_refuse(e, obj, CTL_ACCESS_COMMAND, EINVAL, input, len, reason, who);
    g_free(reason);
    done(EINVAL, user_data);
    return;
  }
  if (!ctl_engine_allows(e, CTL_ACCESS_COMMAND, obj, who)) {
    ctl_engine_refuse(e, obj, CTL_ACCESS_COMMAND, EACCES, input, len,
                      "the access policy does not allow this caller to issue commands", who);
    done(EACCES, user_data);
    return;
  }
  /* The backend is looked up once per write: every step below is its. */
  const CtlBackend *b = ctl_engine_command_backend(e, obj);
  char *unfit = runtime_wide_problem(b, obj, verb);
  if (unfit) {
    /* inherit to a runtime is a mistake of scope; the rest, of backend */
    int err = obj->kind == CTL_KIND_RUNTIME && g_str_equal(verb, CTL_VERB_INHERIT)
              ? EINVAL : EOPNOTSUPP;
    ctl_engine_refuse(e, obj, CTL_ACCESS_COMMAND, err, input, len, unfit, who);
    g_free(unfit);
    done(err, user_data);
    return;
  }
  /* "running" written to a stopped flow is a start: resume is for a paused one */
  if (ctl_verb_written_as_state(input, len) && g_str_equal(verb, "resume")
      && ctl_backend_takes(b, "start")
      && (!ctl_backend_takes(b, "resume")
          || g_strcmp0(ctl_engine_desired(e, obj), "stopped") == 0))
    verb = "start";
  char *unsupported = backend_refuses(b, verb);
  if (unsupported) {
    ctl_engine_refuse(e, obj, CTL_ACCESS_COMMAND, EOPNOTSUPP, input, len, unsupported, who);
    g_free(unsupported);
    done(EOPNOTSUPP, user_data);
    return;
  }
  if (b->command_encode && unchanged(e, obj, verb)) {
    record_unchanged(e, obj, verb, who);
    ctl_engine_reply(e, 0, done, user_data);
    return;
  }
  issue(e, obj, b, verb, who, done, user_data);
}

/* The command is stored, then produced; DONE hears how that went. */
static void
issue(CtlEngine *e, CtlObject *obj, const CtlBackend *b, const char *verb, const CtlCaller *who,
      CtlCommandDone done, gpointer user_data)
{
  char id[37];
  ctl_uuid7(id);
  gint64 now = ctl_now_ms();
  GError *error = NULL;
  if (!store_command(e, obj, id, verb, now, who, &error)) {
    ctl_set_str(&obj->last_error, error->message);
    g_warning("%s: cannot store command: %s", obj->name, error->message);
    g_error_free(error);
    done(EIO, user_data);
    return;
  }
  ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
  if (obj->kind == CTL_KIND_RUNTIME && e->cfg.write_mode == CTL_WRITE_QUEUED)
    ctl_engine_runtime_follow(e, obj, FALSE);
  CtlInflight *inf = inflight_new(e, obj, id, verb, who);
  char *value = encode(e, b, id, obj, verb, now, who);
  if (e->cfg.write_mode == CTL_WRITE_DURABLE) {
    inf->done = done;
    inf->user_data = user_data;
    inf->timer = g_timeout_add(e->cfg.ack_timeout_ms, on_ack_timeout, inf);
  }
  inf->topic = g_strdup(ctl_command_runtime(obj)->command_topic);
  inf->key = b->command_key(e, obj);
  inf->value = value;
  ctl_store_after_commit(e->store, command_committed, inf);
  if (e->cfg.write_mode == CTL_WRITE_QUEUED)
    ctl_engine_reply(e, 0, done, user_data);   /* once stored, the outbox takes it */
}

/* Commands set `desired` in the order of their runtime's command topic,
 * whichever host issued them: `desired` shows the verb of the newest command
 * placed there. While a command of ours is not placed yet (sent, not yet
 * acknowledged nor read back), whatever is read from the topic is older than
 * it, so `desired` keeps what the write set. Every host thus ends with the
 * same desired state however their writes interleaved, with no flicker. */
static void
show_desired(CtlEngine *e, CtlObject *res, gboolean elsewhere)
{
  if (res->unplaced > 0 || !res->desired_verb
      || !ctl_set_str(&res->desired, ctl_engine_desired_after(e, res, res->desired_verb)))
    return;
  /* Stored at once: a lost commit or a restart goes back to what is stored. */
  GError *error = NULL;
  gboolean ok = ctl_model_begin(e->model, &error);
  ok = ok && ctl_model_save(e->model, res, &error);
  if (!ctl_model_end(e->model, ok, &error)) {
    g_warning("%s: cannot store the desired state: %s", res->name, error->message);
    g_error_free(error);
  }
  ctl_model_changed(e->model, res, CTL_CHANGE_DESIRED | (elsewhere ? CTL_CHANGE_ELSEWHERE : 0));
  if (res->kind == CTL_KIND_RUNTIME)
    ctl_engine_runtime_follow(e, res, elsewhere);
}

void
ctl_engine_desire(CtlEngine *e, CtlObject *res, const char *verb, const char *id, gboolean ours,
                  int partition, gint64 offset, gboolean elsewhere)
{
  /* Offsets order commands within one partition only. A resource's commands
   * share one (keyed by its name, murmur2), whoever sent them; a command of
   * another partition (another client's key) is taken in the order read.
   * After a restart the stored offset's partition is not known: it is taken
   * to be the resource's usual one. */
  gboolean comparable = res->desired_partition < 0 || partition == res->desired_partition;
  if (offset >= 0 && comparable && offset <= res->desired_offset)
    return;
  /* A copy of an older command of ours (the outbox sends again what it could
   * not record as sent, after a crash or a full disk): its first copy came
   * earlier in the topic, and agents apply an id once. UUIDv7 ids of one
   * host sort in issue order. */
  if (ours && res->desired_ours && res->desired_id && strcmp(id, res->desired_id) < 0)
    return;
  if (offset >= 0) {
    res->desired_offset = offset;
    res->desired_partition = partition;
  }
  ctl_set_str(&res->desired_verb, verb);
  ctl_set_str(&res->desired_id, id);
  res->desired_ours = ours;
  show_desired(e, res, elsewhere);
}

/* A command another host issued, as read from RT's command topic at OFFSET:
 * recorded here too (commands table, log, status), so that every admin host
 * shows every command. Our own come back the same way and are skipped. */
static void
record_peer_command(CtlEngine *e, CtlObject *res, const CtlCommandMsg *msg, gint64 offset,
                    const char *producer, GError **error)
{
  CtlCaller who = { .uid = msg->uid, .pid = msg->pid, .user = msg->user, .comm = msg->comm,
                    .host = msg->host };
  CtlCommandRow row = {
    .id = msg->id, .object_id = res->id, .runtime = msg->runtime,
    .resource = msg->resource ? msg->resource : "", .verb = msg->verb, .mode = "peer", .uid = msg->uid, .user = msg->user, .pid = msg->pid,
    .comm = msg->comm, .host = msg->host, .issued_at = msg->issued_at_ms, .result = "sent",
    .offset = offset,
  };
  ctl_set_str(&res->pending, msg->id);
  ctl_set_str(&res->last_cmd_id, msg->id);
  ctl_set_str(&res->last_cmd_verb, msg->verb);
  ctl_set_str(&res->last_cmd_result, "sent");
  ctl_engine_desire(e, res, msg->verb, msg->id, FALSE, e->msg_partition, offset, TRUE);
  if (res->kind == CTL_KIND_RUNTIME)
    ctl_engine_runtime_fanout(e, res, msg->id);
  char *by = producer ? g_strdup_printf("by=%s", producer) : ctl_caller_describe(&who);
  GString *d = g_string_new(NULL);
  command_details(d, msg->id, msg->verb, by, "sent");
  ctl_engine_append_position(e, d, offset);
  gboolean ok = ctl_model_begin(e->model, error);
  ok = ok && ctl_store_command_insert(e->store, &row, error);
  ok = ok && ctl_model_save(e->model, res, error);
  ok = ok && save_followers(e, res, msg->id, error);
  ok = ok && ctl_model_log(e->model, res, "command", d->str, error);
  ok = ctl_model_end(e->model, ok, error);
  ctl_model_changed(e->model, res, CTL_CHANGE_STATE);
  g_string_free(d, TRUE);
  g_free(by);
}

/* Our command ID (to RES, if still declared; INF while in flight) read back
 * from its topic at OFFSET: its place there counts for `desired`. */
static void
read_back_ours(CtlEngine *e, CtlObject *res, const char *verb, const char *id, gint64 offset,
               CtlInflight *inf)
{
  if (res)
    ctl_engine_desire(e, res, verb, id, TRUE, e->msg_partition, offset, FALSE);
  if (inf)
    place(inf);   /* read back before its acknowledgement */
}

/* Our own command read back, recognised without parsing it: the ctlfs-id
 * header names one of ours still in memory (in flight, or acknowledged and
 * kept), and the message is byte for byte the one we produced for it. A
 * 1,000-resource mia command is 40 KB of JSON whose parsing was about half
 * of the daemon's CPU per write (docs/performance.md, issue 7); comparing the
 * bytes costs microseconds. The header alone is never believed: anything
 * else -- no header, another host's command, an id only the store knows
 * (after a restart), different bytes -- is parsed and checked as before. */
static gboolean
seen_own(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value, gsize len,
         const char *id)
{
  if (!id)
    return FALSE;
  CtlInflight *inf = g_hash_table_lookup(e->inflight, id);
  CtlAcked *a = inf ? NULL : g_hash_table_lookup(e->acked, id);
  const char *runtime, *resource, *verb, *mine;
  gsize mine_len;
  if (inf) {
    runtime = ctl_command_runtime(inf->obj)->name;
    resource = ctl_command_resource(inf->obj);
    verb = inf->verb;
    mine = inf->value;
    mine_len = mine ? strlen(mine) : 0;
  } else if (a) {
    runtime = a->runtime;
    resource = a->resource;
    verb = a->verb;
    mine = a->value;
    mine_len = a->len;
  } else {
    return FALSE;
  }
  if (!mine || mine_len != len || memcmp(mine, value, len) != 0
      || strcmp(runtime, rt->name) != 0)
    return FALSE;
  read_back_ours(e, resource ? ctl_model_child(rt, resource) : rt, verb, id, offset, inf);
  if (!inf)
    acked_remove(e, id);   /* frees a */
  return TRUE;
}

static gboolean seen_foreign(CtlEngine *e, CtlObject *rt, const CtlBackend *b, gint64 offset,
                             const char *value, gsize len);

void
ctl_engine_command_seen(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value,
                        gsize len, const char *command_id)
{
  if (seen_own(e, rt, offset, value, len, command_id))
    return;
  CtlCommandMsg msg;
  GError *error = NULL;
  const CtlBackend *b = ctl_engine_runtime_backend(e, rt->name);
  if (!b->command_decode(value, len, &msg, &error)) {
    if (!seen_foreign(e, rt, b, offset, value, len))
      ctl_engine_peer_skip(e, rt, offset, error->message);
    g_error_free(error);
    return;
  }
  /* a runtime-wide command is the runtime's own */
  CtlObject *res = msg.resource ? ctl_model_child(rt, msg.resource) : rt;
  CtlInflight *inf = g_hash_table_lookup(e->inflight, msg.id);
  gboolean peer = FALSE;
  gboolean known = inf || acked_remove(e, msg.id)
                   || ctl_store_command_lookup(e->store, msg.id, &peer);
  if (strcmp(msg.runtime, rt->name) != 0) {
    ctl_engine_peer_skip(e, rt, offset, "the command names another runtime");
  } else if (!msg.resource && !b->runtime_state) {
    ctl_engine_peer_skip(e, rt, offset, "a runtime-wide command, which this runtime's backend"
                         " does not take");
  } else if (known && peer) {
    /* another host's command seen before: a copy its outbox sent again */
    char *why = g_strdup_printf("a copy of command %s, recorded before", msg.id);
    ctl_engine_peer_skip(e, rt, offset, why);
    g_free(why);
  } else if (known) {
    read_back_ours(e, res, msg.verb, msg.id, offset, inf);
  } else {
    if (!res)
      res = ctl_engine_peer_object(e, rt, msg.resource, offset);
    if (res && b->peer_command)
      b->peer_command(e, res, &msg);
    if (res)
      record_peer_command(e, res, &msg, offset, NULL, &error);
    if (error) {
      g_warning("%s: cannot record command %s: %s", msg.resource, msg.id, error->message);
      g_clear_error(&error);
    }
  }
  ctl_command_msg_clear(&msg);
}

void
ctl_engine_peer_command(CtlEngine *e, CtlObject *res, const CtlCommandMsg *msg, gint64 offset,
                        const char *by)
{
  GError *error = NULL;
  record_peer_command(e, res, msg, offset, by, &error);
  if (error) {
    g_warning("%s: cannot record command %s: %s", msg->resource, msg->id, error->message);
    g_error_free(error);
  }
}

/* Another producer's message: the backend may read it as desired state. Its
 * made-up id is its place in the topic, the same on every host. */
static gboolean
seen_foreign(CtlEngine *e, CtlObject *rt, const CtlBackend *b, gint64 offset, const char *value,
             gsize len)
{
  if (!b->foreign_command)
    return FALSE;
  char *topic = ctl_config_topic(&e->cfg, rt->name, FALSE);
  char *id = g_strdup_printf("%s:%d:%" G_GINT64_FORMAT, topic, e->msg_partition, offset);
  gboolean used = b->foreign_command(e, rt, offset, value, len, id);
  g_free(id);
  g_free(topic);
  return used;
}

/* Called from the feedback path when a runtime reports on command ID. */
/* Runtime-wide command ID of RT, which resource NAME reported on: failed at
 * the first resource that did not reach its state, applied once every
 * resource that follows the runtime did. */
static void
runtime_progress(CtlEngine *e, CtlObject *rt, const char *id, const char *verb, gboolean ok,
                 const char *why, const char *name)
{
  if (g_strcmp0(rt->pending, id) != 0 || (ok && ctl_engine_runtime_awaits(e, rt, id)))
    return;
  ctl_set_str(&rt->pending, NULL);
  if (!ok)
    ctl_set_str(&rt->last_error, why);
  CtlInflight *inf = g_hash_table_lookup(e->inflight, id);
  if (inf)
    inf->applied = ok;
  char *extra = ok ? NULL : g_strdup_printf("resource=%s", name);
  GError *error = NULL;
  if (!record(e, rt, id, verb, NULL, ok ? "applied" : "failed", -1, ok ? NULL : why, extra,
              &error)) {
    g_warning("%s: cannot record command %s: %s", rt->name, id, error->message);
    g_error_free(error);
  }
  g_free(extra);
}

/* Runtime-wide command ID reached resource RES: its own line and status (the
 * command's row is the runtime's), then the runtime's progress. */
static void
runtime_command_applied(CtlEngine *e, CtlObject *res, const char *id, const char *verb,
                        gboolean ok, const char *why)
{
  if (g_strcmp0(res->pending, id) == 0)
    ctl_set_str(&res->pending, NULL);
  if (!ok)
    ctl_set_str(&res->last_error, why);
  GString *d = g_string_new(NULL);
  command_details(d, id, verb, NULL, ok ? "applied" : "failed");
  g_string_append(d, " scope=runtime");
  if (!ok)
    ctl_kv_append(d, "error", why);
  GError *error = NULL;
  gboolean stored = ctl_model_begin(e->model, &error);
  stored = stored && ctl_model_save(e->model, res, &error);
  stored = stored && ctl_model_log(e->model, res, "command", d->str, &error);
  if (!ctl_model_end(e->model, stored, &error)) {
    g_warning("%s: cannot record command %s: %s", res->name, id, error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
  ctl_model_changed(e->model, res, CTL_CHANGE_STATE);
  runtime_progress(e, res->parent, id, verb, ok, why, res->name);
}

void
ctl_engine_command_applied(CtlEngine *e, CtlObject *res, const char *id, gboolean ok,
                           const char *why)
{
  const char *runtime_verb = g_strcmp0(res->last_cmd_id, id) != 0
                             ? ctl_engine_runtime_command_verb(res, id) : NULL;
  if (runtime_verb) {
    runtime_command_applied(e, res, id, runtime_verb, ok, why);
    return;
  }
  CtlInflight *inf = g_hash_table_lookup(e->inflight, id);
  if (inf)
    inf->applied = ok;
  if (g_strcmp0(res->pending, id) == 0)
    ctl_set_str(&res->pending, NULL);
  if (!ok)
    ctl_set_str(&res->last_error, why);
  const char *verb = g_strcmp0(res->last_cmd_id, id) == 0 ? res->last_cmd_verb : "-";
  GError *error = NULL;
  if (!record(e, res, id, verb, NULL, ok ? "applied" : "failed", -1, ok ? NULL : why, NULL,
              &error)) {
    g_warning("%s: cannot record applied command %s: %s", res->name, id, error->message);
    g_error_free(error);
  }
}

/* A runtime reported on command ID of RES that a newer command has replaced
 * in RES's status (issued before the first was reported on): only its own row
 * and log line are settled, so that every command ends applied or failed;
 * RES's pending command and last error belong to the newer one. */
void
ctl_engine_command_settle_older(CtlEngine *e, CtlObject *res, const char *id, const char *verb,
                                gboolean ok, const char *why)
{
  CtlInflight *inf = g_hash_table_lookup(e->inflight, id);
  if (inf)
    inf->applied = ok;   /* its acknowledgement, if later, must not undo this */
  GError *error = NULL;
  if (!record(e, res, id, verb, NULL, ok ? "applied" : "failed", -1, ok ? NULL : why,
              "superseded=yes", &error)) {
    g_warning("%s: cannot record command %s: %s", res->name, id, error->message);
    g_error_free(error);
  }
}

/* ---- restart ---- */

typedef struct {
  char  *id, *verb, *user, *comm, *host;
  gint64 object_id, uid, pid, issued_at;
} SavedCommand;

static void
saved_free(SavedCommand *s)
{
  g_free(s->id);
  g_free(s->verb);
  g_free(s->user);
  g_free(s->comm);
  g_free(s->host);
  g_free(s);
}

static void
collect(const CtlCommandRow *row, gpointer data)
{
  GPtrArray *rows = data;
  SavedCommand *s = g_new0(SavedCommand, 1);
  s->id = g_strdup(row->id);
  s->verb = g_strdup(row->verb);
  s->user = g_strdup(row->user);
  s->comm = g_strdup(row->comm);
  s->host = g_strdup(row->host);
  s->object_id = row->object_id;
  s->uid = row->uid;
  s->pid = row->pid;
  s->issued_at = row->issued_at;
  g_ptr_array_add(rows, s);
}

static CtlObject *
object_of(CtlEngine *e, const SavedCommand *s)
{
  return ctl_model_by_key(e->model, s->object_id + CTL_KEY_FIRST_STORED - 1);
}

/* Commands on a tree backend's objects are its own (its outbox); those of
 * a runtime backend's resources go out through Kafka, here. */
static gboolean
kafka_command(CtlEngine *e, const SavedCommand *s)
{
  CtlObject *obj = object_of(e, s);
  if (!obj)
    return TRUE;
  const CtlBackend *b = ctl_engine_command_backend(e, obj);
  return b && b->command_encode;
}

/* Durable commands that never got an answer died with the previous daemon:
 * their writers saw an error (or nothing), so they must never go out now. */
static void
fail_unacknowledged(CtlEngine *e, GPtrArray *rows)
{
  for (guint i = 0; i < rows->len; i++) {
    SavedCommand *s = rows->pdata[i];
    CtlObject *obj = object_of(e, s);
    GError *error = NULL;
    if (!kafka_command(e, s))
      continue;
    const char *why = "daemon stopped before the broker acknowledged";
    if (!obj) {
      ctl_store_command_update(e->store, s->id, "failed", -1, why, NULL);
      continue;
    }
    if (g_strcmp0(obj->pending, s->id) == 0)
      ctl_set_str(&obj->pending, NULL);
    ctl_set_str(&obj->last_error, why);
    if (!record(e, obj, s->id, s->verb, NULL, "failed", -1, why, NULL, &error)) {
      g_warning("cannot fail command %s: %s", s->id, error->message);
      g_error_free(error);
    }
  }
}

/* Queued commands go out again in the order they were issued; agents dedup by
 * id, so one that reached the broker before the restart is applied once. */
static void
resend_queued(CtlEngine *e, GPtrArray *rows)
{
  for (guint i = 0; i < rows->len; i++) {
    SavedCommand *s = rows->pdata[i];
    CtlObject *obj = object_of(e, s);
    if (!obj || !kafka_command(e, s))
      continue;
    CtlCaller who = { .uid = s->uid, .pid = s->pid, .user = s->user, .comm = s->comm,
                      .host = s->host };
    const CtlBackend *b = ctl_engine_command_backend(e, obj);
    CtlInflight *inf = inflight_new(e, obj, s->id, s->verb, &who);
    char *value = encode(e, b, s->id, obj, s->verb, s->issued_at, &who);
    char *key = b->command_key(e, obj);
    publish(e, inf, ctl_command_runtime(obj)->command_topic, key, value);
    g_free(key);
    g_free(value);
  }
}

void
ctl_engine_outbox_restart(CtlEngine *e)
{
  GError *error = NULL;
  GPtrArray *rows = g_ptr_array_new_with_free_func((GDestroyNotify) saved_free);
  if (ctl_store_queued_commands(e->store, "durable", collect, rows, &error))
    fail_unacknowledged(e, rows);
  else
    g_clear_error(&error);
  g_ptr_array_set_size(rows, 0);
  if (ctl_store_queued_commands(e->store, "queued", collect, rows, &error))
    resend_queued(e, rows);
  if (error) {
    g_warning("outbox: %s", error->message);
    g_error_free(error);
  }
  g_ptr_array_free(rows, TRUE);
}

void
ctl_engine_inflight_fail_all(CtlEngine *e, const char *reason)
{
  GList *all = g_hash_table_get_values(e->inflight);
  for (GList *l = all; l; l = l->next) {
    CtlInflight *inf = l->data;
    if (inf->done)
      fail_command(e, inf, reason, NULL, EIO);
  }
  g_list_free(all);
}

void
ctl_inflight_free(gpointer p)
{
  inflight_free(p);
}

guint
ctl_engine_commands_pending(CtlEngine *e)
{
  return g_hash_table_size(e->inflight);
}

/* Our newest command on each resource of RT that is not placed in the topic
 * yet (and that no writer was told failed). UUIDv7 ids of this host sort in
 * issue order. */
GHashTable *
ctl_engine_unplaced_verbs(CtlEngine *e, CtlObject *rt)
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
  g_hash_table_iter_init(&it, newest);
  while (g_hash_table_iter_next(&it, NULL, &v))
    g_hash_table_iter_replace(&it, ((CtlInflight *) v)->verb);
  return newest;
}
