/* A module's status: its last `rama moduleStatus MOD`, run in the background
 * (at declaration, after each command on the module, every [rama] refresh-ms)
 * and never on read. What changed is logged; every check wakes the module's
 * watchers. */
#include "rama-private.h"
#include "timefmt.h"

/* The last `rama moduleStatus MOD` of a module. */
typedef struct {
  gint64   checked_at;      /* ms, 0 never */
  int      exit_status;
  char    *error;
  char    *output;
  gboolean running, again;
} ModuleCheck;

static void
check_free(ModuleCheck *c)
{
  g_free(c->error);
  g_free(c->output);
  g_free(c);
}

static ModuleCheck *
check_of(CtlRama *r, CtlObject *module)
{
  ModuleCheck *c = g_hash_table_lookup(r->checks, &module->key);
  if (!c) {
    c = g_new0(ModuleCheck, 1);
    c->exit_status = -1;
    gint64 *key = g_new(gint64, 1);
    *key = module->key;
    g_hash_table_insert(r->checks, key, c);
  }
  return c;
}

static void
on_checked(CtlRamaRun *run)
{
  CtlRama *r = run->rama;
  gint64 key = GPOINTER_TO_SIZE(run->data);
  if (!ctl_rama_run_ended(run))
    return;   /* the timeout: wait for the child's end */
  CtlObject *module = ctl_model_by_key(ctl_engine_model(r->e), key);
  ModuleCheck *c = module ? g_hash_table_lookup(r->checks, &key) : NULL;
  if (!c || r->stopping)
    return;   /* removed meanwhile */
  c->running = FALSE;
  c->checked_at = ctl_now_ms();
  char *why = ctl_rama_run_failure(run);
  gboolean changed = c->exit_status != run->exit_status || g_strcmp0(c->output, run->output)
                     || g_strcmp0(c->error, run->error ? why : NULL);
  c->exit_status = run->exit_status;
  ctl_set_str(&c->output, run->output);
  ctl_set_str(&c->error, run->error || run->timed_out ? why : NULL);
  if (changed) {
    GString *d = g_string_new(NULL);
    if (run->exit_status >= 0)
      g_string_append_printf(d, "exit=%d", run->exit_status);
    else
      ctl_kv_append(d, "exit", NULL);
    if (c->error)
      ctl_kv_append(d, "error", c->error);
    ctl_rama_append_output(d, run->output);
    ctl_engine_log(r->e, module, "module-status", d->str);
    g_string_free(d, TRUE);
  }
  /* checked_at moves on every check: its watchers are woken each time, so a
   * script can wait for a fresh status after a command. */
  ctl_model_changed(ctl_engine_model(r->e), module, CTL_CHANGE_STATE);
  g_free(why);
  ctl_rama_groups_check(r, module, run->exit_status == 0 ? run->output : NULL);
  if (c->again) {
    c->again = FALSE;
    ctl_rama_check_module(r, module);
  }
}

void
ctl_rama_check_module(CtlRama *r, CtlObject *module)
{
  if (r->stopping)
    return;
  ModuleCheck *c = check_of(r, module);
  if (c->running) {
    c->again = TRUE;
    return;
  }
  c->running = TRUE;
  ctl_rama_run_start(&r->cli, r, ctl_rama_cli_argv(&r->cli, "moduleStatus", module->name, NULL), on_checked,
                     GSIZE_TO_POINTER(module->key));
}

static void
check_new_modules(CtlRama *r)
{
  GPtrArray *modules = ctl_model_children_array(ctl_model_modules(ctl_engine_model(r->e)));
  for (guint i = 0; modules && i < modules->len; i++) {
    CtlObject *module = modules->pdata[i];
    if (!g_hash_table_contains(r->checks, &module->key))
      ctl_rama_check_module(r, module);
  }
}

static gboolean
on_refresh(gpointer data)
{
  CtlRama *r = data;
  GPtrArray *modules = ctl_model_children_array(ctl_model_modules(ctl_engine_model(r->e)));
  for (guint i = 0; modules && i < modules->len; i++)
    ctl_rama_check_module(r, modules->pdata[i]);
  return G_SOURCE_CONTINUE;
}

/* A module declared is checked at once; one removed is forgotten. */
static void
on_model_change(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlRama *r = data;
  if ((what & CTL_CHANGE_REMOVED) && obj->kind == CTL_KIND_MODULE) {
    g_hash_table_remove(r->checks, &obj->key);
    ctl_rama_groups_forget(r, obj);
  }
  else if ((what & CTL_CHANGE_CHILDREN) && obj->kind == CTL_KIND_MODULES)
    check_new_modules(r);
}

/* ---- life ---- */

void
ctl_rama_status_init(CtlRama *r)
{
  r->checks = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                    (GDestroyNotify) check_free);
  ctl_rama_groups_init(r);
  ctl_model_add_listener(ctl_engine_model(r->e), on_model_change, r);
}

void
ctl_rama_status_start(CtlRama *r)
{
  check_new_modules(r);
  if (ctl_engine_config(r->e)->rama_refresh_ms > 0)
    r->refresh = g_timeout_add(ctl_engine_config(r->e)->rama_refresh_ms, on_refresh, r);
}

void
ctl_rama_status_stop(CtlRama *r)
{
  if (r->refresh)
    g_source_remove(r->refresh);
}

void
ctl_rama_status_free(CtlRama *r)
{
  g_hash_table_unref(r->checks);
  ctl_rama_groups_free(r);
}

/* ---- the module's `status` file ---- */

void
ctl_rama_show_module(CtlEngine *e, CtlObject *module, GString *out)
{
  CtlRama *r = ctl_rama_of(e);
  ModuleCheck *c = r ? g_hash_table_lookup(r->checks, &module->key) : NULL;
  char ts[CTL_TIME_LEN];
  g_string_append_printf(out, "module: %s\n", module->name);
  char *last = module->last_cmd_id
               ? g_strdup_printf("%s %s %s", module->last_cmd_id, module->last_cmd_verb,
                                 module->last_cmd_result)
               : NULL;
  g_string_append_printf(out, "last_command: %s\n", last ? last : "-");
  g_free(last);
  char *err = module->last_error ? g_strdelimit(g_strdup(module->last_error), "\n\r", ' ')
                                 : NULL;
  g_string_append_printf(out, "last_error: %s\n", err ? err : "-");
  g_free(err);
  const char *scale = ctl_rama_scale_value(module);
  g_string_append_printf(out, "scale: %s\n", scale ? scale : "-");
  g_string_append_printf(out, "checked_at: %s\n",
                         c && c->checked_at ? ctl_time_format(c->checked_at, ts) : "-");
  if (c && c->exit_status >= 0)
    g_string_append_printf(out, "exit_status: %d\n", c->exit_status);
  else
    g_string_append(out, "exit_status: -\n");
  char *cerr = c && c->error ? g_strdelimit(g_strdup(c->error), "\n\r", ' ') : NULL;
  g_string_append_printf(out, "error: %s\n", cerr ? cerr : "-");
  g_free(cerr);
  g_string_append(out, "output:\n");
  if (c && c->output && *c->output) {
    char **lines = g_strsplit(c->output, "\n", -1);
    for (char **l = lines; *l; l++)
      g_string_append_printf(out, "  %s\n", *l);
    g_strfreev(lines);
  }
}
