/* The feedback path: runtime reports update observed state. Each consumed batch
 * is one transaction holding the state changes and the partition's next offset
 * together (seed 003), so a restart neither loses nor re-applies feedback. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "engine-private.h"
#include "message.h"
#include "timefmt.h"
#include "verb.h"

void
ctl_engine_feedback_begin(gpointer user_data)
{
  CtlEngine *e = user_data;
  GError *error = NULL;
  if (!ctl_model_begin(e->model, &error)) {
    g_warning("feedback: %s", error->message);
    g_error_free(error);
  }
}

void
ctl_engine_consumed(CtlEngine *e, const char *topic, int partition, gint64 next)
{
  char *k = g_strdup_printf("%s\037%d", topic, partition);
  gint64 *at = g_hash_table_lookup(e->batch_offsets, k);
  if (!at) {
    at = g_new(gint64, 1);
    g_hash_table_insert(e->batch_offsets, k, at);
  } else {
    g_free(k);
  }
  *at = next;
}

void
ctl_engine_append_position(CtlEngine *e, GString *d, gint64 offset)
{
  g_string_append_printf(d, "%soffset=%" G_GINT64_FORMAT, d->len ? " " : "", offset);
  if (e->msg_partition >= 0)
    g_string_append_printf(d, " partition=%d", e->msg_partition);
}

/* Positions are stored once per batch (one row per partition, not per
 * message), in the batch's transaction: never ahead of the state they
 * produced. A topic no longer read (its runtime removed in the batch) keeps
 * no row. */
static void
store_positions(CtlEngine *e)
{
  GHashTableIter it;
  gpointer key, next;
  g_hash_table_iter_init(&it, e->batch_offsets);
  while (g_hash_table_iter_next(&it, &key, &next)) {
    const char *sep = strchr(key, '\037');
    g_autofree char *topic = g_strndup(key, sep - (const char *) key);
    int partition = atoi(sep + 1);
    gboolean read = g_hash_table_contains(e->by_topic, topic) || ctl_engine_peers_reads(e, topic);
    GError *error = NULL;
    if (read && !ctl_store_offset_set(e->store, topic, partition, *(gint64 *) next, &error)) {
      g_warning("consumer: %s", error->message);
      g_error_free(error);
    }
  }
  g_hash_table_remove_all(e->batch_offsets);
}

void
ctl_engine_feedback_end(gpointer user_data)
{
  CtlEngine *e = user_data;
  GError *error = NULL;
  store_positions(e);
  if (!ctl_model_end(e->model, TRUE, &error)) {
    /* The offsets rolled back with the state: the batch is consumed again
     * after a restart. */
    g_warning("feedback: cannot commit: %s", error->message);
    g_error_free(error);
  }
}

void
ctl_engine_feedback_reject(CtlEngine *e, CtlObject *rt, gint64 offset, const char *reason)
{
  e->feedback_rejected++;
  e->unused[CTL_UNUSED_FEEDBACK]++;
  GString *d = g_string_new(NULL);
  ctl_engine_append_position(e, d, offset);
  ctl_kv_append(d, "reason", reason);
  GError *error = NULL;
  if (!ctl_model_log(e->model, rt, "feedback-rejected", d->str, &error)) {
    g_warning("feedback: %s", error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
}

/* Feedback is a few hundred bytes; anything far bigger is hostile or broken
 * and is refused before it is parsed. */
#define FEEDBACK_MAX_BYTES 65536
/* The runtime's free text, as far as the log keeps it. */
#define MESSAGE_LOG_MAX 512

static CtlObject *
resource_for(CtlEngine *e, CtlObject *rt, const char *name, gint64 offset)
{
  CtlObject *res = ctl_model_child(rt, name);
  if (res)
    return res;
  /* Whoever can produce to the feedback topic could otherwise fill memory
   * and the disk with made-up resources. */
  guint have = rt->children ? g_hash_table_size(rt->children) : 0;
  if (have >= (guint) e->cfg.discover_max) {
    char *why = g_strdup_printf("not creating resource %s: the runtime has %u resources"
                                " (discover-max)", name, have);
    ctl_engine_feedback_reject(e, rt, offset, why);
    g_free(why);
    return NULL;
  }
  GString *where = g_string_new("by=feedback");
  ctl_engine_append_position(e, where, offset);
  char *by = g_string_free(where, FALSE);
  int err = 0;
  res = ctl_model_create(e->model, rt, name, "discovered", by, &err);
  g_free(by);
  if (res) {
    e->feedback_discovered++;
  } else {
    char *why = g_strdup_printf("cannot create resource %s: %s", name,
                                err == EEXIST ? "name reserved" : g_strerror(err));
    ctl_engine_feedback_reject(e, rt, offset, why);
    g_free(why);
  }
  return res;
}

/* What a report says of command VERB: TRUE with *OK (and *WHY when not, to
 * g_free), or FALSE while the runtime is on its way there. */
static gboolean
outcome(CtlEngine *e, CtlObject *res, const char *verb, const CtlFeedbackMsg *fb, gboolean *ok,
        char **why)
{
  if (ctl_backend_underway(ctl_engine_backend(e, res), verb, fb->state))
    return FALSE;   /* starting, stopping...: the runtime is on its way */
  /* inherit asks for the runtime's state */
  const char *target = verb ? ctl_engine_desired_after(e, res, verb) : NULL;
  *ok = !target || g_strcmp0(target, fb->state) == 0;
  *why = *ok ? NULL
       : fb->message ? g_strdup(fb->message)
       : g_strdup_printf("runtime reports %s, not %s", fb->state, target);
  return TRUE;
}

/* A report on a command of RES older than its newest, still open in the
 * store (a newer command was issued before this one was reported on). */
static void
settle_older(CtlEngine *e, CtlObject *res, const CtlFeedbackMsg *fb)
{
  gint64 object_id = 0;
  char *verb = NULL, *result = NULL, *why = NULL;
  gboolean ok = FALSE;
  if (ctl_store_command_get(e->store, fb->command_id, &object_id, &verb, &result)
      && object_id == res->id
      && (g_strcmp0(result, "sent") == 0 || g_strcmp0(result, "queued") == 0)
      && outcome(e, res, verb, fb, &ok, &why))
    ctl_engine_command_settle_older(e, res, fb->command_id, verb, ok, why);
  g_free(verb);
  g_free(result);
  g_free(why);
}

/* A report that names a command settles it: applied when the runtime reached
 * the state the verb asks for, failed (with the runtime's message) otherwise;
 * a state on the way there (starting for start) leaves it pending. */
static void
settle_command(CtlEngine *e, CtlObject *res, const CtlFeedbackMsg *fb)
{
  if (!fb->command_id)
    return;
  gboolean mine = g_strcmp0(res->pending, fb->command_id) == 0;
  if (!mine && g_strcmp0(res->last_cmd_id, fb->command_id) != 0) {
    settle_older(e, res, fb);   /* or an old one repeated by a heartbeat */
    return;
  }
  if (!mine && g_strcmp0(res->last_cmd_result, "queued") != 0
      && g_strcmp0(res->last_cmd_result, "sent") != 0)
    return;   /* already settled */
  const char *verb = g_strcmp0(res->last_cmd_id, fb->command_id) == 0 ? res->last_cmd_verb
                   : ctl_engine_runtime_command_verb(res, fb->command_id);
  gboolean ok;
  char *why = NULL;
  if (!outcome(e, res, verb, fb, &ok, &why))
    return;
  ctl_engine_command_applied(e, res, fb->command_id, ok, why);
  g_free(why);
}

/* A report that names no command: RES's pending command counts as applied
 * once the runtime reports STATE, the state that command asked for. */
static void
settle_by_state(CtlEngine *e, CtlObject *res, const char *state)
{
  /* its own command, or its runtime's that it follows */
  const char *verb = !res->pending ? NULL
                   : g_strcmp0(res->pending, res->last_cmd_id) == 0 ? res->last_cmd_verb
                   : ctl_engine_runtime_command_verb(res, res->pending);
  if (!verb || g_strcmp0(ctl_engine_desired_after(e, res, verb), state) != 0)
    return;   /* (inherit asks for the runtime's state) */
  char *id = g_strdup(res->pending);
  ctl_engine_command_applied(e, res, id, TRUE, NULL);
  g_free(id);
}

void
ctl_engine_report(CtlEngine *e, CtlObject *rt, gint64 offset, const CtlFeedbackMsg *fb,
                  gboolean by_state)
{
  CtlObject *res = resource_for(e, rt, fb->resource, offset);
  if (!res)
    return;
  gint64 now = ctl_now_ms();
  char *was = g_strdup(ctl_engine_observed(e, res));
  gboolean changed = ctl_set_str(&res->observed, fb->state) || g_strcmp0(was, "stale") == 0;
  res->observed_at = fb->ts_ms > 0 ? fb->ts_ms : now;
  res->feedback_at = now;
  rt->feedback_at = now;
  ctl_janitor_heard(e->janitor, rt);
  ctl_engine_stale_touch(e, res);
  GError *error = NULL;
  if (changed) {
    GString *d = g_string_new(NULL);
    ctl_kv_append(d, "state", fb->state);
    ctl_kv_append(d, "was", g_strcmp0(was, "unknown") == 0 ? NULL : was);
    if (fb->command_id)
      ctl_kv_append(d, "command", fb->command_id);
    if (fb->message) {
      /* cut at a character boundary; the runtime's full text is not ours to keep */
      char *cut = g_utf8_substring(fb->message, 0, MESSAGE_LOG_MAX);
      ctl_kv_append(d, "message", cut);
      g_free(cut);
    }
    ctl_engine_append_position(e, d, offset);
    if (!ctl_model_log(e->model, res, "observed", d->str, &error)) {
      g_warning("feedback: %s", error->message);
      g_clear_error(&error);
    }
    g_string_free(d, TRUE);
  }
  if (fb->metrics_json)
    ctl_engine_reported(e, res, fb->metrics_json, offset);
  settle_command(e, res, fb);
  if (by_state)
    settle_by_state(e, res, fb->state);
  ctl_engine_drift_report(e, res, offset);
  if (!ctl_model_save(e->model, res, &error) || !ctl_model_save(e->model, rt, &error)) {
    g_warning("feedback: %s", error->message);
    g_clear_error(&error);
  }
  /* A heartbeat that changes nothing wakes nobody. */
  if (changed)
    ctl_model_changed(e->model, res, CTL_CHANGE_STATE | CTL_CHANGE_OBSERVED);
  g_free(was);
}

void
ctl_engine_feedback_ctlfs(CtlEngine *e, CtlObject *rt, gint64 offset, const char *value,
                          gsize len)
{
  CtlFeedbackMsg fb = { 0 };
  GError *error = NULL;
  if (ctl_feedback_msg_decode(value, len, &fb, &error)) {
    ctl_engine_report(e, rt, offset, &fb, FALSE);
  } else {
    ctl_engine_feedback_reject(e, rt, offset, error->message);
    g_error_free(error);
  }
  ctl_feedback_msg_clear(&fb);
}

const char *
ctl_engine_message_key(CtlEngine *e, gsize *len)
{
  *len = e->msg_key ? e->msg_key_len : 0;
  return e->msg_key;
}

/* The runtime's backend decodes; the engine applies what it reports. */
void
ctl_engine_feedback_message(const char *topic, int partition, gint64 offset, const char *key,
                            gsize key_len,
                            const char *value, gsize value_len, gpointer user_data)
{
  CtlEngine *e = user_data;
  CtlObject *rt = g_hash_table_lookup(e->by_topic, topic);
  if (!rt) {
    /* Queued before its runtime was removed: nothing to apply it to. */
    e->unused[CTL_UNUSED_OTHER]++;
    g_info("%s: message at offset %" G_GINT64_FORMAT " partition %d not used: the topic is"
           " no longer read", topic, offset, partition);
    return;
  }
  e->feedback_total++;
  if (value_len > FEEDBACK_MAX_BYTES) {
    char *why = g_strdup_printf("message of %" G_GSIZE_FORMAT " bytes, over the %d-byte limit",
                                value_len, FEEDBACK_MAX_BYTES);
    ctl_engine_feedback_reject(e, rt, offset, why);
    g_free(why);
  } else {
    ctl_engine_runtime_backend(e, rt->name)->feedback(e, rt, offset, value, value_len);
  }
  ctl_engine_consumed(e, topic, partition, offset + 1);
}
