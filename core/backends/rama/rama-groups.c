/* A module's task groups: `rama taskGroupsStatus MOD INSTANCE`, run in the
 * background after each moduleStatus that named the module's instance id,
 * never on read. The CLI needs that id, and only moduleStatus prints it. */
#include <string.h>

#include "rama-private.h"
#include "timefmt.h"

/* The last taskGroupsStatus of a module. */
typedef struct {
  char    *instance;        /* from the last moduleStatus, NULL: none printed */
  gint64   checked_at;      /* ms, 0 never */
  int      exit_status;
  char    *error;
  char    *output;
  gboolean running, again;
} Groups;

static void
groups_free(Groups *g)
{
  g_free(g->instance);
  g_free(g->error);
  g_free(g->output);
  g_free(g);
}

/* The module instance id in moduleStatus OUTPUT: the first "instance id"
 * followed by an optional `:` or `=` and a token (g_free), or NULL. The
 * seed does not show moduleStatus's output; this takes "Module instance id:
 * 3" and "instance id = 3" alike, whatever the case. */
char *
ctl_rama_instance_id(const char *output)
{
  static GRegex *re;
  if (g_once_init_enter(&re))
    g_once_init_leave(&re, g_regex_new("instance\\s*id\\s*[:=]?\\s*([A-Za-z0-9._-]+)",
                                       G_REGEX_CASELESS, 0, NULL));
  GMatchInfo *m = NULL;
  char *id = g_regex_match(re, output, 0, &m) ? g_match_info_fetch(m, 1) : NULL;
  g_match_info_free(m);
  return id;
}

static Groups *
groups_of(CtlRama *r, CtlObject *module)
{
  Groups *g = g_hash_table_lookup(r->groups, &module->key);
  if (!g) {
    g = g_new0(Groups, 1);
    g->exit_status = -1;
    gint64 *key = g_new(gint64, 1);
    *key = module->key;
    g_hash_table_insert(r->groups, key, g);
  }
  return g;
}

static void run_check(CtlRama *r, CtlObject *module, Groups *g);

static void
on_listed(CtlRamaRun *run)
{
  CtlRama *r = run->rama;
  gint64 key = GPOINTER_TO_SIZE(run->data);
  if (!ctl_rama_run_ended(run))
    return;   /* the timeout: wait for the child's end */
  CtlObject *module = ctl_model_by_key(ctl_engine_model(r->e), key);
  Groups *g = module ? g_hash_table_lookup(r->groups, &key) : NULL;
  if (!g || r->stopping)
    return;   /* removed meanwhile */
  g->running = FALSE;
  g->checked_at = ctl_now_ms();
  char *why = ctl_rama_run_failure(run);
  gboolean changed = g->exit_status != run->exit_status || g_strcmp0(g->error, why);
  g->exit_status = run->exit_status;
  ctl_set_str(&g->output, run->output);
  ctl_set_str(&g->error, why);
  if (changed) {
    /* The table itself stays out of the log: it has a line per task group. */
    GString *d = g_string_new(NULL);
    ctl_kv_append(d, "instance", g->instance);
    if (run->exit_status >= 0)
      g_string_append_printf(d, " exit=%d", run->exit_status);
    else
      ctl_kv_append(d, "exit", NULL);
    if (why)
      ctl_kv_append(d, "error", why);
    ctl_engine_log(r->e, module, "task-groups", d->str);
    g_string_free(d, TRUE);
  }
  g_free(why);
  ctl_model_changed(ctl_engine_model(r->e), module, CTL_CHANGE_STATE);
  if (g->again) {
    g->again = FALSE;
    run_check(r, module, g);
  }
}

static void
run_check(CtlRama *r, CtlObject *module, Groups *g)
{
  if (r->stopping || !g->instance)
    return;
  if (g->running) {
    g->again = TRUE;
    return;
  }
  g->running = TRUE;
  ctl_rama_run_start(&r->cli, r,
                     ctl_rama_cli_argv(&r->cli, "taskGroupsStatus", module->name, g->instance,
                                       NULL),
                     on_listed, GSIZE_TO_POINTER(module->key));
}

void
ctl_rama_groups_check(CtlRama *r, CtlObject *module, const char *status_output)
{
  if (!status_output)
    return;   /* moduleStatus failed: the last listing stands, as it says when */
  Groups *g = groups_of(r, module);
  char *id = ctl_rama_instance_id(status_output);
  if (!id && g->instance) {
    /* A moduleStatus that names no instance: what was listed was another's. */
    g_clear_pointer(&g->output, g_free);
    g->exit_status = -1;
    g->checked_at = 0;
  }
  ctl_set_str(&g->instance, id);
  g_free(id);
  run_check(r, module, g);
}

void
ctl_rama_groups_forget(CtlRama *r, CtlObject *module)
{
  g_hash_table_remove(r->groups, &module->key);
}

void
ctl_rama_groups_init(CtlRama *r)
{
  r->groups = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                    (GDestroyNotify) groups_free);
}

void
ctl_rama_groups_free(CtlRama *r)
{
  g_hash_table_unref(r->groups);
}

/* ---- the module's `task-groups` file ---- */

void
ctl_rama_show_groups(CtlEngine *e, CtlObject *module, GString *out)
{
  CtlRama *r = ctl_rama_of(e);
  Groups *g = r ? g_hash_table_lookup(r->groups, &module->key) : NULL;
  char ts[CTL_TIME_LEN];
  g_string_append_printf(out, "module_instance: %s\n", g && g->instance ? g->instance : "-");
  g_string_append_printf(out, "checked_at: %s\n",
                         g && g->checked_at ? ctl_time_format(g->checked_at, ts) : "-");
  if (g && g->exit_status >= 0)
    g_string_append_printf(out, "exit_status: %d\n", g->exit_status);
  else
    g_string_append(out, "exit_status: -\n");
  const char *err = g && g->error ? g->error
                    : !g || !g->instance ? "no module instance id known: moduleStatus has not"
                                           " printed one (yet)"
                    : NULL;
  char *flat = err ? g_strdelimit(g_strdup(err), "\n\r", ' ') : NULL;
  g_string_append_printf(out, "error: %s\n", flat ? flat : "-");
  g_free(flat);
  g_string_append(out, "output:\n");
  if (g && g->output && *g->output) {
    char **lines = g_strsplit(g->output, "\n", -1);
    for (char **l = lines; *l; l++)
      g_string_append_printf(out, "  %s\n", *l);
    g_strfreev(lines);
  }
}
