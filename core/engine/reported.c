/* Metrics a runtime reports: feedback's optional "metrics" object (seed 003,
 * CDAP's runtime monitor keeps what its programs report beside their state).
 *
 * The latest value of each name is kept per resource, as a setting named
 * "metric.NAME" (so it is stored with the feedback's batch, in the same
 * transaction as its offset, and comes back after a restart), shown in the
 * resource's `metrics` file and exported in the root `metrics`. A name the
 * newest message does not carry keeps its last value: runtimes report what
 * changed. What a runtime may make us keep is bounded twice: names per
 * resource ([ctlfs] metrics-per-resource) and series exported
 * ([ctlfs] metrics-series-max), so a chatty or hostile runtime can neither
 * grow the database without end nor blow up a Prometheus server's label
 * cardinality. */
#include "engine-private.h"

#include <jansson.h>
#include <string.h>

#include "backend.h"

#define PREFIX "metric."
#define NAME_MAX_BYTES 64

static gboolean
is_metric_key(const char *key)
{
  return g_str_has_prefix(key, PREFIX);
}

/* Letters, digits and _ . : -, at most 64 bytes: a name that reads as one
 * word in `metrics` ("NAME VALUE" lines) and in a log line. */
static gboolean
name_valid(const char *name)
{
  gsize n = strlen(name);
  if (n == 0 || n > NAME_MAX_BYTES)
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!g_ascii_isalnum(*c) && !strchr("_.:-", *c))
      return FALSE;
  return TRUE;
}

static guint
count_metrics(CtlObject *obj)
{
  guint n = 0;
  if (!obj->settings)
    return 0;
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init(&it, obj->settings);
  while (g_hash_table_iter_next(&it, &key, NULL))
    n += is_metric_key(key);
  return n;
}

static void
on_removed(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlEngine *e = data;
  if (!(what & CTL_CHANGE_REMOVED))
    return;
  if (e->reported)
    g_hash_table_remove(e->reported, obj);
  if (e->reported_refusals)
    g_hash_table_remove(e->reported_refusals, obj);
}

void
ctl_engine_reported_init(CtlEngine *e)
{
  e->reported_refusals = g_hash_table_new_full(NULL, NULL, NULL, g_free);
  ctl_model_add_listener(e->model, on_removed, e);
}

/* The set of resources with metrics, made from what the store kept when it
 * is first needed (a report, a read of `metrics`) rather than at start: a
 * walk of every resource has no place on the way to the mount. */
static GHashTable *
reported_set(CtlEngine *e)
{
  if (e->reported)
    return e->reported;
  e->reported = g_hash_table_new(NULL, NULL);
  GHashTableIter rts, ress;
  gpointer rt, res;
  g_hash_table_iter_init(&rts, ctl_model_runtimes(e->model)->children);
  while (g_hash_table_iter_next(&rts, NULL, &rt)) {
    if (!((CtlObject *) rt)->children)
      continue;
    g_hash_table_iter_init(&ress, ((CtlObject *) rt)->children);
    while (g_hash_table_iter_next(&ress, NULL, &res))
      if (count_metrics(res) > 0)
        g_hash_table_add(e->reported, res);
  }
  return e->reported;
}

void
ctl_engine_reported_fini(CtlEngine *e)
{
  g_clear_pointer(&e->reported, g_hash_table_unref);
  g_clear_pointer(&e->reported_refusals, g_hash_table_unref);
}

/* VALUE as the file and the exposition show it: integers exactly, reals to
 * 15 significant digits (what a double holds); NULL when not a number. */
static char *
number_text(json_t *value)
{
  if (json_is_integer(value))
    return g_strdup_printf("%" JSON_INTEGER_FORMAT, json_integer_value(value));
  if (json_is_real(value)) {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_strdup(g_ascii_formatd(buf, sizeof buf, "%.15g", json_real_value(value)));
  }
  return NULL;
}

/* Why NAME = VALUE is not kept (g_free), or NULL; *TEXT its value's text. */
static char *
refusal(CtlEngine *e, CtlObject *res, const char *name, json_t *value, char **text)
{
  *text = NULL;
  if (!name_valid(name))
    return g_strdup_printf("%s: name not 1-%d letters, digits, _ . : -", name, NAME_MAX_BYTES);
  *text = number_text(value);
  if (!*text)
    return g_strdup_printf("%s: not a number", name);
  g_autofree char *key = g_strconcat(PREFIX, name, NULL);
  if (!ctl_model_setting(res, key) && count_metrics(res) >= (guint) e->cfg.metrics_per_resource) {
    g_clear_pointer(text, g_free);
    return g_strdup_printf("%s: the resource has %d metrics (metrics-per-resource)", name,
                           e->cfg.metrics_per_resource);
  }
  return NULL;
}

/* One line per change of what is refused: a runtime that sends the same
 * bad metric with every heartbeat does not fill the log. */
static void
log_refused(CtlEngine *e, CtlObject *res, GString *why, gint64 offset)
{
  const char *last = g_hash_table_lookup(e->reported_refusals, res);
  if (why->len == 0) {
    g_hash_table_remove(e->reported_refusals, res);
    return;
  }
  if (g_strcmp0(last, why->str) == 0)
    return;
  g_hash_table_insert(e->reported_refusals, res, g_strdup(why->str));
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "reason", why->str);
  ctl_engine_append_position(e, d, offset);
  GError *error = NULL;
  if (!ctl_model_log(e->model, res, "metrics-rejected", d->str, &error)) {
    g_warning("feedback: %s", error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
}

void
ctl_engine_reported(CtlEngine *e, CtlObject *res, const char *metrics_json, gint64 offset)
{
  json_t *metrics = json_loads(metrics_json, 0, NULL);
  if (!json_is_object(metrics)) {   /* message.c passed it as an object */
    json_decref(metrics);
    return;
  }
  GString *why = g_string_new(NULL);
  gboolean changed = FALSE;
  const char *name;
  json_t *value;
  json_object_foreach(metrics, name, value) {
    char *text = NULL;
    char *no = refusal(e, res, name, value, &text);
    if (no) {
      e->reported_rejected++;
      g_string_append_printf(why, "%s%s", why->len ? "; " : "", no);
      g_free(no);
      continue;
    }
    g_autofree char *key = g_strconcat(PREFIX, name, NULL);
    GError *error = NULL;
    if (g_strcmp0(ctl_model_setting(res, key), text) != 0) {
      if (ctl_model_set_setting(e->model, res, key, text, &error))
        changed = TRUE;
      else
        g_warning("feedback: %s: cannot keep metric %s: %s", res->name, name, error->message);
      g_clear_error(&error);
    }
    g_free(text);
  }
  log_refused(e, res, why, offset);
  g_string_free(why, TRUE);
  json_decref(metrics);
  if (changed) {
    g_hash_table_add(reported_set(e), res);
    ctl_model_changed(e->model, res, CTL_CHANGE_METRICS);
  }
}

static gint
by_name(gconstpointer a, gconstpointer b)
{
  return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* OBJ's metric setting keys, sorted (g_ptr_array_unref; the keys are OBJ's). */
static GPtrArray *
sorted_keys(CtlObject *obj)
{
  GPtrArray *keys = g_ptr_array_new();
  if (obj->settings) {
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, obj->settings);
    while (g_hash_table_iter_next(&it, &key, NULL))
      if (is_metric_key(key))
        g_ptr_array_add(keys, key);
  }
  g_ptr_array_sort(keys, by_name);
  return keys;
}

void
ctl_attr_show_reported(CtlEngine *e, CtlObject *obj, GString *out)
{
  GPtrArray *keys = sorted_keys(obj);
  for (guint i = 0; i < keys->len; i++) {
    const char *key = keys->pdata[i];
    g_string_append_printf(out, "%s %s\n", key + strlen(PREFIX), ctl_model_setting(obj, key));
  }
  g_ptr_array_unref(keys);
}

static gint
by_path(gconstpointer a, gconstpointer b)
{
  const CtlObject *x = *(CtlObject *const *) a, *y = *(CtlObject *const *) b;
  int c = strcmp(x->parent->name, y->parent->name);
  return c ? c : strcmp(x->name, y->name);
}

guint
ctl_engine_reported_foreach(CtlEngine *e, CtlReportedFn fn, gpointer user_data)
{
  GPtrArray *objs = g_ptr_array_new();
  GHashTableIter it;
  gpointer obj;
  g_hash_table_iter_init(&it, reported_set(e));
  while (g_hash_table_iter_next(&it, &obj, NULL))
    g_ptr_array_add(objs, obj);
  g_ptr_array_sort(objs, by_path);   /* the same series are cut every time */
  guint shown = 0, dropped = 0;
  for (guint i = 0; i < objs->len; i++) {
    CtlObject *res = objs->pdata[i];
    GPtrArray *keys = sorted_keys(res);
    for (guint k = 0; k < keys->len; k++) {
      if (shown >= (guint) e->cfg.metrics_series_max) {
        dropped++;
        continue;
      }
      const char *key = keys->pdata[k];
      fn(res->parent->name, res->name, key + strlen(PREFIX), ctl_model_setting(res, key),
         user_data);
      shown++;
    }
    g_ptr_array_unref(keys);
  }
  g_ptr_array_unref(objs);
  return dropped;
}
