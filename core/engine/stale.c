/* Staleness. Resources that reported are kept in a queue ordered by the time
 * of their last feedback (each report moves one to the tail, so the queue stays
 * sorted); one timer waits for the head's deadline. No scan of all resources.
 * Those that went stale are kept in a set until they report again, so that
 * `metrics` counts them without a scan either. */
#include "engine-private.h"

#include <string.h>

#include "timefmt.h"

/* Resources by last feedback, and those that went stale. */
struct CtlStaleness {
  GQueue      fresh;   /* resources by last feedback, oldest first */
  guint       timer;
  GHashTable *stale;   /* resources moved out of fresh: stale */
};

static gint64
deadline(CtlEngine *e, CtlObject *res)
{
  return res->feedback_at + e->cfg.stale_after_ms;
}

static gboolean on_stale_timer(gpointer data);

static void
schedule(CtlEngine *e)
{
  if (e->staleness->timer) {
    g_source_remove(e->staleness->timer);
    e->staleness->timer = 0;
  }
  CtlObject *head = g_queue_peek_head(&e->staleness->fresh);
  if (!head)
    return;
  gint64 wait = deadline(e, head) - ctl_now_ms() + 1;
  e->staleness->timer = g_timeout_add((guint) CLAMP(wait, 0, G_MAXINT), on_stale_timer, e);
}

static void
went_stale(CtlEngine *e, CtlObject *res)
{
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "last", res->observed);
  g_string_append_printf(d, " heartbeat_age_ms=%" G_GINT64_FORMAT, ctl_now_ms() - res->feedback_at);
  GError *error = NULL;
  if (!ctl_model_log(e->model, res, "stale", d->str, &error)) {
    g_warning("%s: %s", res->name, error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
  ctl_model_changed(e->model, res, CTL_CHANGE_STATE | CTL_CHANGE_OBSERVED);
}

static gboolean
on_stale_timer(gpointer data)
{
  CtlEngine *e = data;
  e->staleness->timer = 0;
  gint64 now = ctl_now_ms();
  CtlObject *head;
  while ((head = g_queue_peek_head(&e->staleness->fresh)) && deadline(e, head) < now) {
    g_queue_pop_head(&e->staleness->fresh);
    head->stale_link = NULL;
    g_hash_table_add(e->staleness->stale, head);
    went_stale(e, head);
  }
  schedule(e);
  return G_SOURCE_REMOVE;
}

static gint
by_feedback(gconstpointer a, gconstpointer b, gpointer unused)
{
  gint64 fa = ((const CtlObject *) a)->feedback_at, fb = ((const CtlObject *) b)->feedback_at;
  return fa < fb ? -1 : fa > fb;
}

static void
on_removed(CtlObject *obj, CtlChange what, gpointer data)
{
  if (what & CTL_CHANGE_REMOVED)
    ctl_engine_stale_forget(data, obj);
}

void
ctl_engine_stale_init(CtlEngine *e)
{
  e->staleness = g_new0(CtlStaleness, 1);
  g_queue_init(&e->staleness->fresh);
  e->staleness->stale = g_hash_table_new(NULL, NULL);
  ctl_model_add_listener(e->model, on_removed, e);
  gint64 now = ctl_now_ms();
  GHashTableIter rts, res;
  gpointer rt, o;
  g_hash_table_iter_init(&rts, ctl_model_runtimes(e->model)->children);
  while (g_hash_table_iter_next(&rts, NULL, &rt)) {
    g_hash_table_iter_init(&res, ((CtlObject *) rt)->children);
    while (g_hash_table_iter_next(&res, NULL, &o))
      if (((CtlObject *) o)->feedback_at > 0 && deadline(e, o) >= now)
        g_queue_push_tail(&e->staleness->fresh, o);
      else if (((CtlObject *) o)->feedback_at > 0)
        g_hash_table_add(e->staleness->stale, o);
  }
  g_queue_sort(&e->staleness->fresh, by_feedback, NULL);   /* the only order that matters here */
  for (GList *l = e->staleness->fresh.head; l; l = l->next)
    ((CtlObject *) l->data)->stale_link = l;
  schedule(e);
}

void
ctl_engine_stale_touch(CtlEngine *e, CtlObject *res)
{
  gboolean was_head = e->staleness->fresh.head && e->staleness->fresh.head->data == res;
  g_hash_table_remove(e->staleness->stale, res);
  if (res->stale_link)
    g_queue_unlink(&e->staleness->fresh, res->stale_link);
  else
    res->stale_link = g_list_alloc();
  res->stale_link->data = res;
  g_queue_push_tail_link(&e->staleness->fresh, res->stale_link);
  if (was_head || !e->staleness->timer)
    schedule(e);
}

void
ctl_engine_stale_forget(CtlEngine *e, CtlObject *res)
{
  if (!e->staleness)
    return;   /* stopped: every link was cleared */
  g_hash_table_remove(e->staleness->stale, res);
  if (!res->stale_link)
    return;
  g_queue_delete_link(&e->staleness->fresh, res->stale_link);
  res->stale_link = NULL;
  schedule(e);
}

void
ctl_engine_stale_fini(CtlEngine *e)
{
  if (!e->staleness)   /* a start that failed before it */
    return;
  if (e->staleness->timer)
    g_source_remove(e->staleness->timer);
  e->staleness->timer = 0;
  for (GList *l = e->staleness->fresh.head; l; l = l->next)
    ((CtlObject *) l->data)->stale_link = NULL;
  g_queue_clear(&e->staleness->fresh);
  g_clear_pointer(&e->staleness->stale, g_hash_table_unref);
  g_clear_pointer(&e->staleness, g_free);
}


/* What `observed` reads decides: the set, and the head of the queue whose
 * deadline passed a moment before the timer fires. */
guint
ctl_engine_stale_count(CtlEngine *e)
{
  guint n = 0;
  GHashTableIter it;
  gpointer o;
  if (e->staleness->stale) {
    g_hash_table_iter_init(&it, e->staleness->stale);
    while (g_hash_table_iter_next(&it, &o, NULL))
      n += strcmp(ctl_engine_observed(e, o), "stale") == 0;
  }
  for (GList *l = e->staleness->fresh.head; l && strcmp(ctl_engine_observed(e, l->data), "stale") == 0;
       l = l->next)
    n++;
  return n;
}
