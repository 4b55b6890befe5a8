/* The text of `metrics`: Prometheus text exposition format 0.0.4. Families in
 * name order, each with # HELP and # TYPE; series of a family in label order,
 * histogram buckets in ascending order. A read walks no tree: counters, the
 * stale set (stale.c) and the outbox's rows in the store (indexed). The only
 * cost on the write path is timing each write: two clock reads, one small
 * allocation. */
#include "engine-private.h"

#include <string.h>

/* Upper bounds of ctlfs_write_duration_seconds, in microseconds: a durable
 * write's median is about 0.5 ms on a local broker, a queued one's less;
 * ETIMEDOUT comes at --ack-timeout-ms (5 s by default). */
static const gint64 write_bounds_us[CTL_WRITE_BUCKETS] = {
  100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
  1000000, 2500000, 5000000, 10000000,
};

/* ---- timing a write ---- */

typedef struct {
  CtlEngine     *engine;
  CtlCommandDone done;
  gpointer       user_data;
  gint64         start_us;
} TimedWrite;

static void
observe(CtlWriteHistogram *h, gint64 us)
{
  us = MAX(us, 0);
  guint i = 0;
  while (i < CTL_WRITE_BUCKETS && us > write_bounds_us[i])
    i++;
  h->count[i]++;
  h->sum_us += (guint64) us;
}

static void
timed_done(int err, gpointer data)
{
  TimedWrite *t = data;
  observe(&t->engine->writes[err ? 1 : 0], g_get_monotonic_time() - t->start_us);
  t->done(err, t->user_data);
  g_free(t);
}

void
ctl_engine_time_write(CtlEngine *e, CtlCommandDone *done, gpointer *user_data)
{
  TimedWrite *t = g_new(TimedWrite, 1);
  t->engine = e;
  t->done = *done;
  t->user_data = *user_data;
  t->start_us = g_get_monotonic_time();
  *done = timed_done;
  *user_data = t;
}

/* ---- the outbox ---- */

/* Queued-mode commands in the store that the broker has not acknowledged:
 * what the outbox still has to deliver (its rows with result=queued whose
 * object is still there: those are the ones a restart sends again). -1 when
 * the store cannot be read. */
static void
count_outbox_row(const CtlCommandRow *row, gpointer data)
{
  gpointer *ctx = data;
  CtlEngine *e = ctx[0];
  if (ctl_model_by_key(e->model, row->object_id + CTL_KEY_FIRST_STORED - 1))
    (*(gint64 *) ctx[1])++;
}

static gint64
outbox_size(CtlEngine *e)
{
  gint64 n = 0;
  gpointer ctx[2] = { e, &n };
  GError *error = NULL;
  if (!ctl_store_queued_commands(e->store, "queued", count_outbox_row, ctx, &error)) {
    g_warning("metrics: cannot count the outbox: %s", error->message);
    g_error_free(error);
    return -1;
  }
  return n;
}

/* ---- the text ---- */

/* A label value as the exposition format wants it: \\, \" and \n escaped. */
static void
append_label(GString *out, const char *name, const char *value)
{
  g_string_append_printf(out, "%s=\"", name);
  for (const char *p = value ? value : ""; *p; p++) {
    switch (*p) {
    case '\\': g_string_append(out, "\\\\"); break;
    case '"':  g_string_append(out, "\\\""); break;
    case '\n': g_string_append(out, "\\n"); break;
    default:   g_string_append_c(out, *p);
    }
  }
  g_string_append_c(out, '"');
}

static void
head(GString *out, const char *name, const char *type, const char *help)
{
  g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
plain(GString *out, const char *name, const char *type, const char *help, guint64 value)
{
  head(out, name, type, help);
  g_string_append_printf(out, "%s %" G_GUINT64_FORMAT "\n", name, value);
}

static gint
compare_strings(gconstpointer a, gconstpointer b)
{
  return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Series with one label, sorted by its value. */
static void
labelled(GString *out, const char *name, const char *label, const char *const *values,
         const guint64 *counts, guint n)
{
  GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
  for (guint i = 0; i < n; i++) {
    GString *l = g_string_new(name);
    g_string_append_c(l, '{');
    append_label(l, label, values[i]);
    g_string_append_printf(l, "} %" G_GUINT64_FORMAT "\n", counts[i]);
    g_ptr_array_add(lines, g_string_free(l, FALSE));
  }
  g_ptr_array_sort(lines, compare_strings);
  for (guint i = 0; i < lines->len; i++)
    g_string_append(out, lines->pdata[i]);
  g_ptr_array_free(lines, TRUE);
}

static void
commands_total(CtlEngine *e, GString *out)
{
  head(out, "ctlfs_commands_total", "counter", "Commands by verb and result.");
  guint n = 0;
  char **keys = (char **) g_hash_table_get_keys_as_array(e->commands, &n);
  qsort(keys, n, sizeof *keys, compare_strings);   /* "verb\037result": by verb, then result */
  for (guint i = 0; i < n; i++) {
    char **vr = g_strsplit(keys[i], "\037", 2);
    guint64 *count = g_hash_table_lookup(e->commands, keys[i]);
    g_string_append(out, "ctlfs_commands_total{");
    append_label(out, "verb", vr[0]);
    g_string_append_c(out, ',');
    append_label(out, "result", vr[1]);
    g_string_append_printf(out, "} %" G_GUINT64_FORMAT "\n", *count);
    g_strfreev(vr);
  }
  g_free(keys);
}

static void
reported_series(const char *runtime, const char *resource, const char *name, const char *value,
                gpointer data)
{
  GString *out = data;
  g_string_append(out, "ctlfs_reported_metric{");
  append_label(out, "runtime", runtime);
  g_string_append_c(out, ',');
  append_label(out, "resource", resource);
  g_string_append_c(out, ',');
  append_label(out, "name", name);
  g_string_append_printf(out, "} %s\n", value);
}

/* What the runtimes reported (reported.c), bounded by metrics-series-max. */
static void
reported(CtlEngine *e, GString *out)
{
  head(out, "ctlfs_reported_metric", "gauge",
       "The latest value of each metric a resource's feedback carried, by runtime, resource"
       " and name (at most metrics-series-max series, by runtime, resource and name).");
  guint dropped = ctl_engine_reported_foreach(e, reported_series, out);
  plain(out, "ctlfs_reported_metric_series_dropped", "gauge",
        "Reported metrics kept but not exported here: over metrics-series-max.", dropped);
  plain(out, "ctlfs_reported_metrics_rejected_total", "counter",
        "Reported metrics not kept: a bad name, not a number, or over metrics-per-resource.",
        e->reported_rejected);
}

static void
write_duration(CtlEngine *e, GString *out)
{
  const char *name = "ctlfs_write_duration_seconds";
  head(out, name, "histogram",
       "Time from a state write's arrival to its answer, by write mode and result"
       " (ok: write() succeeded; error: it failed).");
  const char *mode = e->cfg.write_mode == CTL_WRITE_QUEUED ? "queued" : "durable";
  static const struct { const char *result; int slot; } series[] = {
    { "error", 1 }, { "ok", 0 },   /* label order */
  };
  for (gsize s = 0; s < G_N_ELEMENTS(series); s++) {
    const CtlWriteHistogram *h = &e->writes[series[s].slot];
    guint64 cumulative = 0;
    for (guint i = 0; i <= CTL_WRITE_BUCKETS; i++) {
      cumulative += h->count[i];
      char le[G_ASCII_DTOSTR_BUF_SIZE];
      if (i < CTL_WRITE_BUCKETS)
        g_ascii_formatd(le, sizeof le, "%g", write_bounds_us[i] / 1e6);
      else
        g_strlcpy(le, "+Inf", sizeof le);
      g_string_append_printf(out, "%s_bucket{mode=\"%s\",result=\"%s\",le=\"%s\"} %"
                             G_GUINT64_FORMAT "\n", name, mode, series[s].result, le, cumulative);
    }
    g_string_append_printf(out, "%s_sum{mode=\"%s\",result=\"%s\"} %" G_GUINT64_FORMAT ".%06u\n",
                           name, mode, series[s].result, h->sum_us / G_USEC_PER_SEC,
                           (guint) (h->sum_us % G_USEC_PER_SEC));
    g_string_append_printf(out, "%s_count{mode=\"%s\",result=\"%s\"} %" G_GUINT64_FORMAT "\n",
                           name, mode, series[s].result, cumulative);
  }
}

void
ctl_engine_show_metrics(CtlEngine *e, GString *out)
{
  plain(out, "ctlfs_broker_up", "gauge", "1 while the broker link is up, else 0.",
        ctl_bus_link_up(e->bus) ? 1 : 0);

  head(out, "ctlfs_build_info", "gauge", "Always 1; the version of ctlfs in a label.");
  g_string_append(out, "ctlfs_build_info{");
  append_label(out, "version", CTLFS_VERSION);
  g_string_append(out, "} 1\n");

  commands_total(e, out);

  plain(out, "ctlfs_drift_objects", "gauge",
        "Resources whose runtime reports a settled state other than the desired one,"
        " with nothing pending (drift).", ctl_engine_drift_count(e));

  plain(out, "ctlfs_feedback_discovered_total", "counter",
        "Resources created because feedback named them.", e->feedback_discovered);
  plain(out, "ctlfs_feedback_messages_total", "counter", "Feedback messages consumed.",
        e->feedback_total);
  plain(out, "ctlfs_feedback_rejected_total", "counter", "Malformed feedback messages skipped.",
        e->feedback_rejected);

  head(out, "ctlfs_messages_unused_total", "counter",
       "Consumed messages ctlfs did not use (each has a log line saying why), by topic:"
       " command, feedback, tree, or other (a topic no longer read).");
  const char *topics[CTL_UNUSED_COUNT] = { "command", "feedback", "other", "tree" };
  labelled(out, "ctlfs_messages_unused_total", "topic", topics, e->unused, CTL_UNUSED_COUNT);

  head(out, "ctlfs_objects", "gauge", "Objects in the tree by kind.");
  const char *kinds[] = { "resource", "runtime" };
  guint64 objects[] = { ctl_model_count(e->model, CTL_KIND_RESOURCE),
                        ctl_model_count(e->model, CTL_KIND_RUNTIME) };
  labelled(out, "ctlfs_objects", "kind", kinds, objects, G_N_ELEMENTS(kinds));

  head(out, "ctlfs_outbox_commands", "gauge",
       "Queued-mode commands stored and not yet acknowledged by the broker.");
  gint64 outbox = outbox_size(e);
  if (outbox >= 0)
    g_string_append_printf(out, "ctlfs_outbox_commands %" G_GINT64_FORMAT "\n", outbox);
  else
    g_string_append(out, "ctlfs_outbox_commands NaN\n");

  plain(out, "ctlfs_pending_commands", "gauge",
        "Commands awaiting the broker's acknowledgement.", g_hash_table_size(e->inflight));

  head(out, "ctlfs_refused_total", "counter",
       "Requests refused by the access policy (EACCES), by action.");
  const char *actions[CTL_ACCESS_COUNT];
  for (int a = 0; a < CTL_ACCESS_COUNT; a++)
    actions[a] = ctl_access_name(a);
  labelled(out, "ctlfs_refused_total", "action", actions, e->refused, CTL_ACCESS_COUNT);

  plain(out, "ctlfs_rejected_writes_total", "counter",
        "Writes refused as invalid input (EINVAL, EOPNOTSUPP).", e->rejected_writes);

  reported(e, out);

  plain(out, "ctlfs_stale_objects", "gauge",
        "Resources whose observed state reads stale (no feedback for --stale-after-ms).",
        ctl_engine_stale_count(e));

  head(out, "ctlfs_start_time_seconds", "gauge", "When the daemon started, in seconds since the epoch.");
  g_string_append_printf(out, "ctlfs_start_time_seconds %" G_GINT64_FORMAT ".%03d\n",
                         e->started_real_us / G_USEC_PER_SEC,
                         (int) (e->started_real_us % G_USEC_PER_SEC / 1000));

  write_duration(e, out);
}
