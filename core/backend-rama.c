/* The cluster backend: Rama modules and microbatch topologies through the
 * `rama` CLI (see backend-rama.h). Lifecycle of a command: queued -> applied |
 * failed, like the Kafka path's, with the CLI's exit status and output as the
 * result. One command at a time per object: a second while one is queued or
 * running is EBUSY, as the CLI gives no way to order two calls on a topology. */
#include "backend-rama.h"

#include <errno.h>
#include <gio/gio.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "command.h"
#include "engine-private.h"
#include "message.h"
#include "timefmt.h"

/* After SIGTERM, a child has this long to go before SIGKILL. */
#define KILL_GRACE_MS 2000
/* Output kept in a log line; the whole of it goes to status or last_error. */
#define LOG_OUTPUT_MAX 1024
/* Settings of a module: the last scale applied, and a queued one (so that
 * the outbox can run it again after a restart). */
#define SCALE_SETTING        "scale"
#define SCALE_QUEUED_SETTING "scale.queued"
/* An option's last value applied (a setting of the option object), and a
 * module's queued setOption ("NAME VALUE", for the outbox). */
#define OPTION_VALUE_SETTING  "value"
#define OPTION_QUEUED_SETTING "option.queued"
#define SET_OPTION_VERB       "setOption"
/* The longest option value taken: Rama's dynamic options are numbers,
 * booleans and short strings; this leaves room for a small JSON object and
 * keeps the log's lines readable. */
#define OPTION_VALUE_MAX 256

typedef struct Run Run;
typedef void (*RunDone)(Run *run);

/* One CLI call. */
struct Run {
  CtlRama      *rama;
  char        **argv;
  GSubprocess  *proc;
  guint         timer, kill_timer;
  gboolean      timed_out;
  int           exit_status;   /* -1: no exit status (not run, killed) */
  char         *output;        /* stdout and stderr, valid UTF-8, trimmed */
  char         *error;         /* could not be run, or killed: why */
  RunDone       done;
  gpointer      data;          /* Command* or the module's key */
};

/* The last `rama moduleStatus MOD` of a module. */
typedef struct {
  gint64   checked_at;      /* ms, 0 never */
  int      exit_status;
  char    *error;
  char    *output;
  gboolean running, again;
} ModuleCheck;

/* A state or scale write being carried out. */
typedef struct {
  CtlRama       *rama;
  char          *id, *verb, *args, *by;
  char          *option;    /* setOption: the option's name (args: its JSON value) */
  gint64         key;       /* the object (it stays: rmdir is EBUSY meanwhile) */
  CtlCommandDone done;      /* the durable writer, NULL once answered */
  gpointer       user_data;
  gboolean       queued;    /* queued mode: the writer was answered at once */
} Command;

struct CtlRama {
  CtlEngine  *e;
  GHashTable *checks;       /* gint64* module key -> ModuleCheck* */
  GHashTable *runs;         /* Run* running */
  guint       refresh;
  gboolean    stopping;
};

static void check_module(CtlRama *r, CtlObject *module);

/* ---- running the CLI ---- */

static void
kill_group(Run *run, int sig)
{
  const char *pid = g_subprocess_get_identifier(run->proc);   /* NULL once reaped */
  if (pid)
    kill(-(pid_t) g_ascii_strtoll(pid, NULL, 10), sig);
}

/* Its own process group: a CLI that is a script starting a JVM is killed whole. */
static void
child_setup(gpointer data)
{
  setpgid(0, 0);
}

static gboolean
on_kill_grace(gpointer data)
{
  Run *run = data;
  run->kill_timer = 0;
  kill_group(run, SIGKILL);
  return G_SOURCE_REMOVE;
}

static gboolean
on_run_timeout(gpointer data)
{
  Run *run = data;
  run->timer = 0;
  run->timed_out = TRUE;
  kill_group(run, SIGTERM);
  run->kill_timer = g_timeout_add(KILL_GRACE_MS, on_kill_grace, run);
  /* The writer hears now; the child's end is awaited in the background. */
  if (run->done)
    run->done(run);
  return G_SOURCE_REMOVE;
}

static void
run_free(Run *run)
{
  if (run->timer)
    g_source_remove(run->timer);
  if (run->kill_timer)
    g_source_remove(run->kill_timer);
  g_strfreev(run->argv);
  g_clear_object(&run->proc);
  g_free(run->output);
  g_free(run->error);
  g_free(run);
}

static void
on_communicated(GObject *source, GAsyncResult *res, gpointer data)
{
  Run *run = data;
  GBytes *out = NULL;
  GError *error = NULL;
  if (!g_subprocess_communicate_finish(run->proc, res, &out, NULL, &error)) {
    run->error = g_strdup(error->message);
    g_error_free(error);
  }
  /* communicate returns once the child exited and closed its output. */
  if (g_subprocess_get_if_exited(run->proc))
    run->exit_status = g_subprocess_get_exit_status(run->proc);
  else if (g_subprocess_get_if_signaled(run->proc) && !run->timed_out && !run->error)
    run->error = g_strdup_printf("killed by signal %d", g_subprocess_get_term_sig(run->proc));
  gsize len = 0;
  const char *bytes = out ? g_bytes_get_data(out, &len) : NULL;
  char *text = g_strndup(bytes ? bytes : "", len);
  run->output = g_strstrip(g_utf8_make_valid(text, -1));
  g_free(text);
  if (out)
    g_bytes_unref(out);
  g_hash_table_remove(run->rama->runs, run);
  /* A timed-out run was told at the timeout; its end is told too (the
   * object stays busy until the child is gone). */
  run->done(run);
  run_free(run);
}

/* Has RUN's child ended (or never started)? FALSE only for a timed-out run
 * told at its timeout. */
static gboolean
run_ended(Run *run)
{
  return !g_hash_table_contains(run->rama->runs, run);
}

/* Starts ARGV (taken). DONE is called at the end (at once, with error set,
 * when the CLI cannot be started), and before that at the timeout too
 * (timed_out set, run_ended() FALSE). */
static void
run_start(CtlRama *r, char **argv, RunDone done, gpointer data)
{
  Run *run = g_new0(Run, 1);
  run->rama = r;
  run->argv = argv;
  run->exit_status = -1;
  run->done = done;
  run->data = data;
  GSubprocessLauncher *l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                                     | G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_set_stdin_file_path(l, "/dev/null");   /* never the daemon's */
  g_subprocess_launcher_set_child_setup(l, child_setup, NULL, NULL);
  GError *error = NULL;
  run->proc = g_subprocess_launcher_spawnv(l, (const char *const *) argv, &error);
  g_object_unref(l);
  if (!run->proc) {
    run->error = g_strdup_printf("cannot run %s: %s", argv[0], error->message);
    g_error_free(error);
    run->output = g_strdup("");
    done(run);
    run_free(run);
    return;
  }
  g_hash_table_add(r->runs, run);
  if (r->e->cfg.rama_timeout_ms > 0)
    run->timer = g_timeout_add(r->e->cfg.rama_timeout_ms, on_run_timeout, run);
  g_subprocess_communicate_async(run->proc, NULL, NULL, on_communicated, run);
}

static char **
cli_argv(CtlRama *r, const char *first, ...)
{
  GPtrArray *a = g_ptr_array_new();
  g_ptr_array_add(a, g_strdup(r->e->cfg.rama_cli));
  va_list ap;
  va_start(ap, first);
  for (const char *s = first; s; s = va_arg(ap, const char *))
    g_ptr_array_add(a, g_strdup(s));
  va_end(ap);
  g_ptr_array_add(a, NULL);
  return (char **) g_ptr_array_free(a, FALSE);
}

/* What a finished run says, for logs and last_error. */
static char *
run_failure(Run *run)
{
  if (run->timed_out)
    return g_strdup_printf("%s %s did not finish within %d ms (killed)", run->argv[0],
                           run->argv[1], run->rama->e->cfg.rama_timeout_ms);
  if (run->error)
    return g_strdup(run->error);
  if (run->exit_status != 0)
    return g_strdup_printf("%s %s exited %d%s%s", run->argv[0], run->argv[1], run->exit_status,
                           *run->output ? ": " : "", run->output);
  return NULL;
}

static void
append_output(GString *d, const char *output)
{
  if (strlen(output) <= LOG_OUTPUT_MAX) {
    ctl_kv_append(d, "output", output);
    return;
  }
  char *cut = g_utf8_make_valid(output, LOG_OUTPUT_MAX);
  char *shown = g_strdup_printf("%s...", cut);
  ctl_kv_append(d, "output", shown);
  g_free(shown);
  g_free(cut);
}

/* ---- module status ---- */

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
log_on(CtlEngine *e, CtlObject *obj, const char *event, const char *details)
{
  GError *error = NULL;
  if (!ctl_store_begin(e->store, &error) || !ctl_model_log(e->model, obj, event, details, &error)
      || !ctl_store_commit(e->store, &error)) {
    ctl_model_rollback(e->model);
    g_warning("%s: cannot log %s: %s", obj->name, event, error->message);
    g_error_free(error);
  }
}

static void
on_checked(Run *run)
{
  CtlRama *r = run->rama;
  gint64 key = GPOINTER_TO_SIZE(run->data);
  if (!run_ended(run))
    return;   /* the timeout: wait for the child's end */
  CtlObject *module = ctl_model_by_key(r->e->model, key);
  ModuleCheck *c = module ? g_hash_table_lookup(r->checks, &key) : NULL;
  if (!c || r->stopping)
    return;   /* removed meanwhile */
  c->running = FALSE;
  c->checked_at = ctl_now_ms();
  char *why = run_failure(run);
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
    append_output(d, run->output);
    log_on(r->e, module, "module-status", d->str);
    g_string_free(d, TRUE);
  }
  /* checked_at moves on every check: its watchers are woken each time, so a
   * script can wait for a fresh status after a command. */
  ctl_model_changed(r->e->model, module, CTL_CHANGE_STATE);
  g_free(why);
  if (c->again) {
    c->again = FALSE;
    check_module(r, module);
  }
}

/* Runs `rama moduleStatus MOD` unless one is running (then once more after it). */
static void
check_module(CtlRama *r, CtlObject *module)
{
  if (r->stopping)
    return;
  ModuleCheck *c = check_of(r, module);
  if (c->running) {
    c->again = TRUE;
    return;
  }
  c->running = TRUE;
  run_start(r, cli_argv(r, "moduleStatus", module->name, NULL), on_checked,
            GSIZE_TO_POINTER(module->key));
}

static void
check_new_modules(CtlRama *r)
{
  GPtrArray *modules = ctl_model_children_array(ctl_model_modules(r->e->model));
  for (guint i = 0; modules && i < modules->len; i++) {
    CtlObject *module = modules->pdata[i];
    if (!g_hash_table_contains(r->checks, &module->key))
      check_module(r, module);
  }
}

static gboolean
on_refresh(gpointer data)
{
  CtlRama *r = data;
  GPtrArray *modules = ctl_model_children_array(ctl_model_modules(r->e->model));
  for (guint i = 0; modules && i < modules->len; i++)
    check_module(r, modules->pdata[i]);
  return G_SOURCE_CONTINUE;
}

/* A module declared is checked at once; one removed is forgotten. */
static void
on_model_change(CtlObject *obj, CtlChange what, gpointer data)
{
  CtlRama *r = data;
  if ((what & CTL_CHANGE_REMOVED) && obj->kind == CTL_KIND_MODULE)
    g_hash_table_remove(r->checks, &obj->key);
  else if ((what & CTL_CHANGE_CHILDREN) && obj->kind == CTL_KIND_MODULES)
    check_new_modules(r);
}

/* ---- commands ---- */

static void
command_free(Command *c)
{
  g_free(c->id);
  g_free(c->verb);
  g_free(c->args);
  g_free(c->by);
  g_free(c->option);
  g_free(c);
}

static CtlObject *
module_of(CtlObject *obj)
{
  return obj->kind == CTL_KIND_TOPOLOGY ? obj->parent->parent : obj;
}

/* The option C set, if it is still declared (rm may have forgotten it). */
static CtlObject *
option_of(CtlObject *module, const Command *c)
{
  return c->option ? ctl_model_child(ctl_model_options(module), c->option) : NULL;
}

/* What an applied command leaves to show: the scale, or the option's value. */
static gboolean
remember_applied(CtlEngine *e, CtlObject *module, Command *c, GError **error)
{
  if (!c->option)
    return ctl_model_set_setting(e->model, module, SCALE_SETTING, c->args, error);
  CtlObject *option = option_of(module, c);
  if (!option)
    return TRUE;
  if (!ctl_model_set_setting(e->model, option, OPTION_VALUE_SETTING, c->args, error))
    return FALSE;
  ctl_model_changed(e->model, option, CTL_CHANGE_STATE);
  return TRUE;
}

/* Records RESULT of command C on OBJ: the command row, the object's status,
 * the scale applied, and one log line, in one transaction. */
static void
record(CtlEngine *e, CtlObject *obj, Command *c, const char *result, const char *why, Run *run)
{
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "id", c->id);
  ctl_kv_append(d, "verb", c->verb);
  if (c->option)
    ctl_kv_append(d, "option", c->option);
  if (c->args)
    ctl_kv_append(d, "args", c->args);
  if (c->by)
    g_string_append_printf(d, " %s", c->by);
  ctl_kv_append(d, "result", result);
  if (run && run->output) {
    if (run->exit_status >= 0)
      g_string_append_printf(d, " exit=%d", run->exit_status);
    else
      ctl_kv_append(d, "exit", NULL);
    append_output(d, run->output);
  }
  if (why)
    ctl_kv_append(d, "error", why);
  if (g_strcmp0(obj->last_cmd_id, c->id) == 0)
    ctl_set_str(&obj->last_cmd_result, result);
  GError *error = NULL;
  gboolean ok = ctl_store_begin(e->store, &error);
  ok = ok && ctl_store_command_update(e->store, c->id, result, -1, why, &error);
  if (ok && c->args && strcmp(result, "applied") == 0)
    ok = remember_applied(e, obj, c, &error);
  ok = ok && ctl_model_save(e->model, obj, &error);
  ok = ok && ctl_model_log(e->model, obj, "command", d->str, &error);
  ok = ok && ctl_store_commit(e->store, &error);
  if (!ok) {
    ctl_model_rollback(e->model);
    g_warning("%s: cannot record command %s: %s", obj->name, c->id, error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
  ctl_engine_count_command(e, c->verb, result);
  ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
}

/* The writer hears once the outcome is committed. */
static void
answer(CtlEngine *e, Command *c, int err)
{
  CtlCommandDone done = c->done;
  c->done = NULL;
  if (done)
    ctl_engine_reply(e, err, done, c->user_data);
}

static void
applied(CtlEngine *e, CtlObject *obj, Command *c, Run *run)
{
  CtlChange what = CTL_CHANGE_STATE;
  if (obj->kind == CTL_KIND_TOPOLOGY) {
    /* Rama has no topology-status command: what the last successful call
     * left is all that is known. */
    const char *target = ctl_verb_target(c->verb);
    if (ctl_set_str(&obj->desired, target))
      what |= CTL_CHANGE_DESIRED | (c->queued ? CTL_CHANGE_ELSEWHERE : 0);
    if (ctl_set_str(&obj->observed, target))
      what |= CTL_CHANGE_OBSERVED;
    obj->observed_at = ctl_now_ms();
  }
  if (g_strcmp0(obj->pending, c->id) == 0)
    ctl_set_str(&obj->pending, NULL);
  if (g_strcmp0(obj->last_cmd_id, c->id) == 0)
    ctl_set_str(&obj->last_error, NULL);
  record(e, obj, c, "applied", NULL, run);
  ctl_model_changed(e->model, obj, what);
  answer(e, c, 0);
}

static void
failed(CtlEngine *e, CtlObject *obj, Command *c, const char *why, Run *run, int err)
{
  if (g_strcmp0(obj->pending, c->id) == 0)
    ctl_set_str(&obj->pending, NULL);
  ctl_set_str(&obj->last_error, why);
  record(e, obj, c, "failed", why, run);
  answer(e, c, err);
}

static void
on_command_run(Run *run)
{
  CtlRama *r = run->rama;
  CtlEngine *e = r->e;
  Command *c = run->data;
  CtlObject *obj = ctl_model_by_key(e->model, c->key);   /* kept by obj->inflight */
  char *why = run_failure(run);
  if (!run_ended(run)) {
    failed(e, obj, c, why, run, ETIMEDOUT);
    g_free(why);
    return;
  }
  if (run->timed_out) {
    /* Answered at the timeout; the object is free again now. */
    GString *d = g_string_new(NULL);
    ctl_kv_append(d, "id", c->id);
    ctl_kv_append(d, "verb", c->verb);
    ctl_kv_append(d, "error", why);
    log_on(e, obj, "cli-ended", d->str);
    g_string_free(d, TRUE);
  } else if (r->stopping) {
    /* Killed because the daemon stops: a queued command stays queued and
     * runs again at the next start (pause and resume are idempotent). */
    if (!c->queued)
      failed(e, obj, c, "daemon stopping", run, EIO);
  } else if (why) {
    failed(e, obj, c, why, run, EIO);
  } else {
    applied(e, obj, c, run);
  }
  g_free(why);
  obj->inflight--;
  CtlObject *module = module_of(obj);
  command_free(c);
  check_module(r, module);
}

static char **
command_argv(CtlRama *r, CtlObject *obj, const Command *c)
{
  if (obj->kind == CTL_KIND_TOPOLOGY)
    return cli_argv(r, strcmp(c->verb, "pause") == 0 ? "pauseTopology" : "resumeTopology",
                    module_of(obj)->name, obj->name, NULL);
  if (c->option)
    return cli_argv(r, "setOption", "module", obj->name, c->option, c->args, NULL);
  /* scale: `workers=2 threads=4` -> --workers 2 --threads 4 */
  GStrvBuilder *b = g_strv_builder_new();
  g_strv_builder_add_many(b, r->e->cfg.rama_cli, "scaleExecutors", "--module", obj->name, NULL);
  char **pairs = g_strsplit(c->args, " ", -1);
  for (char **p = pairs; *p; p++) {
    char *eq = strchr(*p, '=');
    char *flag = g_strdup_printf("--%.*s", (int) (eq - *p), *p);
    g_strv_builder_add_many(b, flag, eq + 1, NULL);
    g_free(flag);
  }
  g_strfreev(pairs);
  char **argv = g_strv_builder_end(b);
  g_strv_builder_unref(b);
  return argv;
}

static void
command_start(CtlRama *r, CtlObject *obj, Command *c)
{
  run_start(r, command_argv(r, obj, c), on_command_run, c);
}

/* The CLI runs only once the command's row is committed: a command whose
 * store failed (the writer hears EIO) never reaches the cluster. */
static void
command_committed(gpointer data, gboolean ok, const char *reason)
{
  Command *c = data;
  CtlRama *r = c->rama;
  CtlObject *obj = ctl_model_by_key(r->e->model, c->key);
  if (ok && obj && !r->stopping) {
    command_start(r, obj, c);
    return;
  }
  if (!ok)
    g_warning("%s: command %s not stored, never run: %s", obj ? obj->name : "?", c->id, reason);
  /* Daemon stopping: a durable one is recorded failed at the next start. */
  answer(r->e, c, EIO);
  if (obj)
    obj->inflight--;
  command_free(c);
}

static Command *
command_new(CtlRama *r, const char *id, const char *verb, const char *args, const char *by, gint64 key)
{
  Command *c = g_new0(Command, 1);
  c->rama = r;
  c->id = g_strdup(id);
  c->verb = g_strdup(verb);
  c->args = g_strdup(args);
  c->by = g_strdup(by);
  c->key = key;
  return c;
}

/* Stores command C on OBJ (in queued mode with the new desired state: once
 * this commits, a queued write has succeeded) and logs it as queued. */
static gboolean
store_command(CtlEngine *e, CtlObject *obj, Command *c, const CtlCaller *who, GError **error)
{
  CtlCommandRow row = {
    .id = c->id, .object_id = obj->id, .runtime = module_of(obj)->name,
    .resource = obj->kind == CTL_KIND_TOPOLOGY ? obj->name : "",
    .verb = c->verb, .mode = c->queued ? "queued" : "durable",
    .uid = who->uid, .user = who->user, .pid = who->pid, .comm = who->comm,
    .host = who->host, .issued_at = ctl_now_ms(), .result = "queued", .offset = -1,
  };
  ctl_set_str(&obj->pending, c->id);
  ctl_set_str(&obj->last_cmd_id, c->id);
  ctl_set_str(&obj->last_cmd_verb, c->verb);
  ctl_set_str(&obj->last_cmd_result, "queued");
  ctl_set_str(&obj->last_error, NULL);
  if (c->queued && obj->kind == CTL_KIND_TOPOLOGY
      && ctl_set_str(&obj->desired, ctl_verb_target(c->verb)))
    ctl_model_changed(e->model, obj, CTL_CHANGE_DESIRED);
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "id", c->id);
  ctl_kv_append(d, "verb", c->verb);
  if (c->option)
    ctl_kv_append(d, "option", c->option);
  if (c->args)
    ctl_kv_append(d, "args", c->args);
  g_string_append_printf(d, " %s", c->by);
  ctl_kv_append(d, "result", "queued");
  gboolean ok = ctl_store_begin(e->store, error);
  ok = ok && ctl_store_command_insert(e->store, &row, error);
  /* The outbox needs a queued scale's values after a restart. */
  if (ok && c->args && c->queued && !c->option)
    ok = ctl_model_set_setting(e->model, obj, SCALE_QUEUED_SETTING, c->args, error);
  if (ok && c->queued && c->option) {
    char *queued = g_strdup_printf("%s %s", c->option, c->args);
    ok = ctl_model_set_setting(e->model, obj, OPTION_QUEUED_SETTING, queued, error);
    g_free(queued);
  }
  ok = ok && ctl_model_save(e->model, obj, error);
  ok = ok && ctl_model_log(e->model, obj, "command", d->str, error);
  ok = ok && ctl_store_commit(e->store, error);
  if (!ok)
    ctl_model_rollback(e->model);
  g_string_free(d, TRUE);
  return ok;
}

/* A valid, allowed command: EBUSY while the object has one, else stored and
 * run once stored. */
static void
submit(CtlEngine *e, CtlObject *obj, const char *verb, const char *option, const char *args,
       const char *input, gsize len, const CtlCaller *who, CtlCommandDone done,
       gpointer user_data)
{
  if (obj->inflight > 0) {
    ctl_engine_refuse(e, obj, CTL_ACCESS_COMMAND, EBUSY, input, len,
                      "a command on this object is still queued or running", who);
    done(EBUSY, user_data);
    return;
  }
  char id[37];
  ctl_uuid7(id);
  char *by = ctl_caller_describe(who);
  Command *c = command_new(e->rama, id, verb, args, by, obj->key);
  c->option = g_strdup(option);
  g_free(by);
  c->queued = e->cfg.write_mode == CTL_WRITE_QUEUED;
  GError *error = NULL;
  if (!store_command(e, obj, c, who, &error)) {
    ctl_set_str(&obj->last_error, error->message);
    g_warning("%s: cannot store command: %s", obj->name, error->message);
    g_error_free(error);
    command_free(c);
    done(EIO, user_data);
    return;
  }
  ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
  obj->inflight++;
  if (c->queued) {
    ctl_engine_reply(e, 0, done, user_data);   /* once stored, the outbox takes it */
  } else {
    c->done = done;
    c->user_data = user_data;
  }
  ctl_store_after_commit(e->store, command_committed, c);
}

/* Input checks shared by both writes: whole, at offset 0, short. */
static char *
input_problem(const char *input, gsize len, gint64 offset)
{
  char *shape = ctl_write_shape_problem(len, offset, CTL_WRITE_MAX);
  if (shape)
    return shape;
  if (memchr(input, '\0', len))
    return g_strdup("the value holds a NUL byte");
  return NULL;
}

static gboolean
refused(CtlEngine *e, CtlObject *obj, const char *input, gsize len, char *reason, int err,
        const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  if (!reason)
    return FALSE;
  ctl_engine_refuse(e, obj, CTL_ACCESS_COMMAND, err, input, MIN(len, CTL_WRITE_MAX), reason, who);
  g_free(reason);
  done(err, user_data);
  return TRUE;
}

void
ctl_rama_topology_command(CtlEngine *e, CtlObject *topo, const char *input, gsize len,
                          gint64 offset, const CtlCaller *who, CtlCommandDone done,
                          gpointer user_data)
{
  ctl_engine_time_write(e, &done, &user_data);
  char *reason = input_problem(input, len, offset);
  const char *verb = reason ? NULL : ctl_verb_parse(input, len, &reason);
  if (refused(e, topo, input, len, reason, EINVAL, who, done, user_data))
    return;
  if (!ctl_engine_allows(e, CTL_ACCESS_COMMAND, topo, who)) {
    refused(e, topo, input, len,
            g_strdup("the access policy does not allow this caller to issue commands"),
            EACCES, who, done, user_data);
    return;
  }
  if (strcmp(verb, "pause") != 0 && strcmp(verb, "resume") != 0) {
    refused(e, topo, input, len,
            g_strdup("a Rama topology takes pause and resume only (rama pauseTopology,"
                     " resumeTopology)"),
            EOPNOTSUPP, who, done, user_data);
    return;
  }
  submit(e, topo, verb, NULL, NULL, input, len, who, done, user_data);
}

/* `workers=N threads=N replicationFactor=N`, any of them, once each, in any
 * order, separated by single spaces, optionally ending in one newline. The
 * canonical text (that order) or NULL with *REASON. */
static char *
scale_parse(const char *input, gsize len, char **reason)
{
  static const char *const keys[] = { "workers", "threads", "replicationFactor" };
  if (len > 0 && input[len - 1] == '\n')
    len--;
  char *text = g_strndup(input, len);
  char **tokens = g_strsplit(text, " ", -1);
  char *values[G_N_ELEMENTS(keys)] = { NULL };
  for (char **t = tokens; *t && !*reason; t++) {
    char *eq = strchr(*t, '=');
    gsize i = 0;
    while (eq && i < G_N_ELEMENTS(keys)
           && !(strlen(keys[i]) == (gsize) (eq - *t) && strncmp(*t, keys[i], eq - *t) == 0))
      i++;
    guint64 n = 0;
    if (!eq || i == G_N_ELEMENTS(keys))
      *reason = g_strdup("expected workers=N, threads=N, replicationFactor=N"
                         " separated by single spaces");
    else if (values[i])
      *reason = g_strdup_printf("%s given twice", keys[i]);
    else if (strspn(eq + 1, "0123456789") != strlen(eq + 1)
             || !g_ascii_string_to_unsigned(eq + 1, 10, 1, G_MAXINT, &n, NULL))
      *reason = g_strdup_printf("%s must be a positive integer", keys[i]);
    else
      values[i] = g_strdup_printf("%s=%" G_GUINT64_FORMAT, keys[i], n);
  }
  GString *canon = g_string_new(NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(keys); i++) {
    if (values[i])
      g_string_append_printf(canon, "%s%s", canon->len ? " " : "", values[i]);
    g_free(values[i]);
  }
  if (!*reason && canon->len == 0)
    *reason = g_strdup("expected at least one of workers=N, threads=N, replicationFactor=N");
  g_strfreev(tokens);
  g_free(text);
  return g_string_free(canon, *reason != NULL);
}

void
ctl_rama_scale(CtlEngine *e, CtlObject *module, const char *input, gsize len, gint64 offset,
               const CtlCaller *who, CtlCommandDone done, gpointer user_data)
{
  ctl_engine_time_write(e, &done, &user_data);
  char *reason = input_problem(input, len, offset);
  char *args = reason ? NULL : scale_parse(input, len, &reason);
  if (refused(e, module, input, len, reason, EINVAL, who, done, user_data))
    return;
  if (!ctl_engine_allows(e, CTL_ACCESS_COMMAND, module, who))
    refused(e, module, input, len,
            g_strdup("the access policy does not allow this caller to issue commands"),
            EACCES, who, done, user_data);
  else
    submit(e, module, "scale", NULL, args, input, len, who, done, user_data);
  g_free(args);
}

/* ---- restart: the outbox ---- */

typedef struct {
  CtlRama   *r;
  GPtrArray *rows;   /* Command*, oldest first, with .queued from the row's mode */
} Saved;

static void
collect(const CtlCommandRow *row, gpointer data)
{
  Saved *s = data;
  CtlObject *obj = ctl_model_by_key(s->r->e->model, row->object_id + CTL_KEY_FIRST_STORED - 1);
  if (!obj || (obj->kind != CTL_KIND_TOPOLOGY && obj->kind != CTL_KIND_MODULE))
    return;   /* the Kafka outbox's (command.c) */
  gboolean set_option = strcmp(row->verb, SET_OPTION_VERB) == 0;
  Command *c = command_new(s->r, row->id, row->verb,
                           obj->kind == CTL_KIND_MODULE && !set_option
                           ? ctl_model_setting(obj, SCALE_QUEUED_SETTING) : NULL,
                           NULL, obj->key);
  c->queued = strcmp(row->mode, "queued") == 0;
  /* "NAME VALUE": a name has no space, a JSON value may. */
  const char *queued = set_option ? ctl_model_setting(obj, OPTION_QUEUED_SETTING) : NULL;
  const char *space = queued ? strchr(queued, ' ') : NULL;
  if (space) {
    c->option = g_strndup(queued, space - queued);
    c->args = g_strdup(space + 1);
  }
  g_ptr_array_add(s->rows, c);
}

/* Durable commands whose CLI call died with the previous daemon failed for
 * their writers; queued ones run now, in the order they were issued. */
static void
outbox_restart(CtlRama *r)
{
  CtlEngine *e = r->e;
  Saved s = { r, g_ptr_array_new() };
  GError *error = NULL;
  if (!ctl_store_commands_by_result(e->store, "durable", "queued", collect, &s, &error)
      || !ctl_store_commands_by_result(e->store, "queued", "queued", collect, &s, &error)) {
    g_warning("rama outbox: %s", error->message);
    g_clear_error(&error);
  }
  for (guint i = 0; i < s.rows->len; i++) {
    Command *c = s.rows->pdata[i];
    CtlObject *obj = ctl_model_by_key(e->model, c->key);
    if (!c->queued || (obj->kind == CTL_KIND_MODULE && !c->args) || obj->inflight > 0) {
      failed(e, obj, c, c->queued ? "cannot be run again after a restart"
                                  : "daemon stopped before the CLI finished (outcome unknown)",
             NULL, 0);
      command_free(c);
      continue;
    }
    obj->inflight++;
    command_start(r, obj, c);
  }
  g_ptr_array_free(s.rows, TRUE);
}

/* ---- life ---- */

CtlRama *
ctl_rama_new(CtlEngine *e)
{
  CtlRama *r = g_new0(CtlRama, 1);
  r->e = e;
  r->checks = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                    (GDestroyNotify) check_free);
  r->runs = g_hash_table_new(NULL, NULL);
  e->rama = r;
  ctl_model_add_listener(e->model, on_model_change, r);
  outbox_restart(r);
  check_new_modules(r);
  if (e->cfg.rama_refresh_ms > 0)
    r->refresh = g_timeout_add(e->cfg.rama_refresh_ms, on_refresh, r);
  return r;
}

void
ctl_rama_free(CtlRama *r)
{
  if (!r)
    return;
  r->stopping = TRUE;
  if (r->refresh)
    g_source_remove(r->refresh);
  /* Commands waiting for their commit are answered now (EIO; a queued one
   * stays in the outbox), not after this is gone. */
  GError *error = NULL;
  if (!ctl_store_flush(r->e->store, &error)) {
    g_warning("rama: last commit failed: %s", error->message);
    g_error_free(error);
  }
  /* Children are killed and their ends awaited (briefly): their writers are
   * answered and nothing is left to call back into a freed engine. */
  GList *runs = g_hash_table_get_keys(r->runs);
  for (GList *l = runs; l; l = l->next)
    kill_group(l->data, SIGKILL);
  g_list_free(runs);
  gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
  while (g_hash_table_size(r->runs) > 0 && g_get_monotonic_time() < deadline)
    g_main_context_iteration(NULL, TRUE);
  if (g_hash_table_size(r->runs) > 0)
    g_warning("rama: %u CLI calls did not end", g_hash_table_size(r->runs));
  g_hash_table_unref(r->runs);
  g_hash_table_unref(r->checks);
  r->e->rama = NULL;
  g_free(r);
}

void
ctl_rama_show_module(CtlEngine *e, CtlObject *module, GString *out)
{
  ModuleCheck *c = e->rama ? g_hash_table_lookup(e->rama->checks, &module->key) : NULL;
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

const char *
ctl_rama_scale_value(CtlObject *module)
{
  return ctl_model_setting(module, SCALE_SETTING);
}

/* ---- dynamic options (rama setOption module MOD NAME VALUEJSON) ---- */

int
ctl_rama_declare_option(CtlEngine *e, CtlObject *options, const char *name,
                        const CtlCaller *who, CtlObject **out)
{
  if (!ctl_engine_allows(e, CTL_ACCESS_COMMAND, options->parent, who))
    return EACCES;
  char *by = ctl_caller_describe(who);
  int err = 0;
  *out = ctl_model_create_option(e->model, options, name, by, &err);
  g_free(by);
  return err;
}

/* Whole at offset 0, valid JSON of any kind (a trailing newline is echo's). */
static char *
option_problem(const char *input, gsize len, gint64 offset)
{
  if (len > 0 && input[len - 1] == '\n')
    len--;
  char *shape = ctl_write_shape_problem(len, offset, OPTION_VALUE_MAX);
  if (shape)
    return shape;
  if (memchr(input, '\0', len))
    return g_strdup("the value holds a NUL byte");
  /* The file shows it as one line, the log too. */
  if (memchr(input, '\n', len) || memchr(input, '\r', len))
    return g_strdup("the value must be one line");
  json_error_t jerr;
  json_t *v = json_loadb(input, len, JSON_DECODE_ANY, &jerr);
  if (!v)
    return g_strdup_printf("the value is not JSON: %s", jerr.text);
  json_decref(v);
  return NULL;
}

void
ctl_rama_set_option(CtlEngine *e, CtlObject *option, const char *input, gsize len,
                    gint64 offset, const CtlCaller *who, CtlCommandDone done,
                    gpointer user_data)
{
  ctl_engine_time_write(e, &done, &user_data);
  CtlObject *module = option->parent->parent;
  char *reason = option_problem(input, len, offset);
  if (reason) {
    char *why = g_strdup_printf("option %s: %s", option->name, reason);
    g_free(reason);
    refused(e, module, input, MIN(len, OPTION_VALUE_MAX + 1), why, EINVAL, who, done, user_data);
    return;
  }
  if (!ctl_engine_allows(e, CTL_ACCESS_COMMAND, module, who)) {
    refused(e, module, input, len,
            g_strdup("the access policy does not allow this caller to issue commands"),
            EACCES, who, done, user_data);
    return;
  }
  if (input[len - 1] == '\n')
    len--;
  char *value = g_strndup(input, len);
  submit(e, module, SET_OPTION_VERB, option->name, value, input, len, who, done, user_data);
  g_free(value);
}

const char *
ctl_rama_option_value(CtlObject *option)
{
  return ctl_model_setting(option, OPTION_VALUE_SETTING);
}
