/* The janitor (CDAP's runtime monitor, seed 003): a runtime whose feedback
 * has been silent for --expire-after-ms is inactive. Inactive is shown in its
 * status and logged; with expire=remove the runtime, its resources and its
 * topics' stored offsets are removed, as CDAP cleans up the offsets of a
 * runtime that became inactive.
 *
 * Silence is measured from the runtime's last feedback, or, for one that has
 * not reported since, from when this daemon began watching it (its start, or
 * the declaration): a daemon that was down does not count its own downtime
 * against the runtimes. Activity is not stored: after a restart every runtime
 * gets a whole period again.
 *
 * Nor does a broker outage count: silence is counted only while the broker
 * link is up and the consumer has read every partition to its end once (a
 * runtime cannot report through a broker that is down, and a backlog from
 * before the start may still be unread). Once both hold again the clocks
 * restart: every runtime gets a whole period from then. */
#include "engine-private.h"
#include "timefmt.h"

struct CtlJanitor {
  CtlEngine  *engine;
  GHashTable *watched;    /* runtime key -> gint64* ms when watching began */
  GHashTable *inactive;   /* runtime keys found inactive */
  guint       timer;
  gboolean    counting;   /* link up and consumer caught up at the last tick */
  gint64      counting_since;  /* ms when that last became true */
};

static gint64 *
key_copy(gint64 key)
{
  return g_memdup2(&key, sizeof key);
}

static gint64
quiet_since(CtlJanitor *j, CtlObject *rt)
{
  gint64 *since = g_hash_table_lookup(j->watched, &rt->key);
  return MAX(MAX(rt->feedback_at, since ? *since : 0), j->counting_since);
}

static void
log_line(CtlEngine *e, CtlObject *obj, const char *event, const char *details)
{
  GError *error = NULL;
  if (!ctl_model_log(e->model, obj, event, details, &error)) {
    g_warning("janitor: %s: %s", obj->name, error->message);
    g_error_free(error);
  }
}

static void
set_inactive(CtlJanitor *j, CtlObject *rt, gint64 silent_ms)
{
  CtlEngine *e = j->engine;
  g_hash_table_add(j->inactive, key_copy(rt->key));
  char *d = g_strdup_printf("silent_ms=%" G_GINT64_FORMAT " expire_after_ms=%d action=%s",
                            silent_ms, e->cfg.expire_after_ms,
                            e->cfg.expire_remove ? "remove" : "mark");
  log_line(e, rt, "inactive", d);
  g_free(d);
  ctl_model_changed(e->model, rt, CTL_CHANGE_STATE);
}

static gboolean
busy(CtlObject *rt)
{
  GHashTableIter it;
  gpointer res;
  g_hash_table_iter_init(&it, rt->children);
  while (g_hash_table_iter_next(&it, NULL, &res))
    if (((CtlObject *) res)->inflight > 0)
      return TRUE;
  return rt->inflight > 0;
}

/* Resources first (a runtime with children cannot go), then the runtime; its
 * offsets go with it (ctl_model_remove). A runtime with a command in flight
 * is left for a later round. Removals are not announced to other admin hosts:
 * each host's janitor follows its own configuration. */
static void
expire(CtlJanitor *j, CtlObject *rt)
{
  CtlEngine *e = j->engine;
  if (busy(rt))
    return;
  char *by = g_strdup_printf("by=janitor expire_after_ms=%d", e->cfg.expire_after_ms);
  GList *children = g_hash_table_get_values(rt->children);
  int err = 0;
  for (GList *l = children; l && !err; l = l->next)
    err = ctl_model_remove(e->model, l->data, by);
  g_list_free(children);
  char *name = g_strdup(rt->name);
  if (!err)
    err = ctl_model_remove(e->model, rt, by);   /* unwatched by the engine's listener */
  if (err) {
    g_debug("janitor: %s not removed yet: %s", name, g_strerror(err));
  } else {
    char *d = g_strdup_printf("runtime=%s %s", name, by);
    log_line(e, ctl_model_root(e->model), "expired", d);
    g_free(d);
  }
  g_free(name);
  g_free(by);
}

static gboolean
tick(gpointer data)
{
  CtlJanitor *j = data;
  CtlEngine *e = j->engine;
  gint64 now = ctl_now_ms();
  gboolean counting = ctl_bus_caught_up(e->bus);
  if (counting != j->counting) {
    j->counting = counting;
    if (counting)
      j->counting_since = now;
    log_line(e, ctl_model_root(e->model), "janitor",
             counting ? "silence=counted reason=\"broker link up, feedback read to its end\""
                      : "silence=not-counted reason=\"broker link down, or feedback not yet read"
                        " to its end\"");
  }
  if (!counting)
    return G_SOURCE_CONTINUE;
  /* A copy: expiring removes runtimes from the table. */
  GList *rts = g_hash_table_get_values(ctl_model_runtimes(e->model)->children);
  for (GList *l = rts; l; l = l->next) {
    CtlObject *rt = l->data;
    gint64 silent = now - quiet_since(j, rt);
    if (silent < e->cfg.expire_after_ms)
      continue;
    if (!g_hash_table_contains(j->inactive, &rt->key))
      set_inactive(j, rt, silent);
    if (e->cfg.expire_remove)
      expire(j, rt);
  }
  g_list_free(rts);
  return G_SOURCE_CONTINUE;
}

static void
on_removed(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlJanitor *j = data;
  if ((what & CTL_CHANGE_REMOVED) && obj->kind == CTL_KIND_RUNTIME) {
    g_hash_table_remove(j->watched, &obj->key);
    g_hash_table_remove(j->inactive, &obj->key);
  }
}

CtlJanitor *
ctl_janitor_new(CtlEngine *e)
{
  if (e->cfg.expire_after_ms <= 0)
    return NULL;
  CtlJanitor *j = g_new0(CtlJanitor, 1);
  j->engine = e;
  j->watched = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
  j->inactive = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
  /* A quarter of the period, within [20 ms, 1 s]: inactive is seen at most
   * that late. */
  guint interval = (guint) CLAMP(e->cfg.expire_after_ms / 4, 20, 1000);
  j->timer = g_timeout_add(interval, tick, j);
  ctl_model_add_listener(e->model, on_removed, j);
  return j;
}

void
ctl_janitor_free(CtlJanitor *j)
{
  if (!j)
    return;
  g_source_remove(j->timer);
  g_hash_table_unref(j->watched);
  g_hash_table_unref(j->inactive);
  g_free(j);
}

void
ctl_janitor_watch(CtlJanitor *j, CtlObject *rt)
{
  if (j && !g_hash_table_contains(j->watched, &rt->key))
    g_hash_table_insert(j->watched, key_copy(rt->key), key_copy(ctl_now_ms()));
}

void
ctl_janitor_heard(CtlJanitor *j, CtlObject *rt)
{
  if (!j || !g_hash_table_remove(j->inactive, &rt->key))
    return;
  log_line(j->engine, rt, "active", "reason=feedback");
  ctl_model_changed(j->engine->model, rt, CTL_CHANGE_STATE);
}

const char *
ctl_janitor_activity(CtlJanitor *j, CtlObject *rt)
{
  if (!j)
    return NULL;
  return g_hash_table_contains(j->inactive, &rt->key) ? "inactive" : "active";
}

gint64
ctl_janitor_silent_ms(CtlJanitor *j, CtlObject *rt)
{
  if (!j)
    return -1;
  return j->counting ? MAX(0, ctl_now_ms() - quiet_since(j, rt)) : 0;
}
