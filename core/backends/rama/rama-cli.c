/* Running the `rama` CLI (see rama-cli.h). A call is a GSubprocess in a
 * process group of its own; nothing here blocks the main loop. The runs
 * going are kept in cli->runs: a stopping daemon kills them, and a run's end is
 * told from its timeout by leaving it. */
#include "rama-cli.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"


/* After SIGTERM, a child has this long to go before SIGKILL. */
#define KILL_GRACE_MS 2000
/* Output kept in a log line; the whole of it goes to status or last_error. */
#define LOG_OUTPUT_MAX 1024

static void
kill_group(CtlRamaRun *run, int sig)
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
  CtlRamaRun *run = data;
  run->kill_timer = 0;
  kill_group(run, SIGKILL);
  return G_SOURCE_REMOVE;
}

static gboolean
on_run_timeout(gpointer data)
{
  CtlRamaRun *run = data;
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
run_free(CtlRamaRun *run)
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
  CtlRamaRun *run = data;
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
  g_hash_table_remove(run->cli->runs, run);
  /* A timed-out run was told at the timeout; its end is told too (the
   * object stays busy until the child is gone). */
  run->done(run);
  run_free(run);
}

gboolean
ctl_rama_run_ended(CtlRamaRun *run)
{
  return !g_hash_table_contains(run->cli->runs, run);
}

void
ctl_rama_run_start(CtlRamaCli *cli, CtlRama *owner, char **argv, CtlRamaRunDone done,
                   gpointer data)
{
  CtlRamaRun *run = g_new0(CtlRamaRun, 1);
  run->cli = cli;
  run->rama = owner;
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
  g_hash_table_add(cli->runs, run);
  if (cli->timeout_ms > 0)
    run->timer = g_timeout_add(cli->timeout_ms, on_run_timeout, run);
  g_subprocess_communicate_async(run->proc, NULL, NULL, on_communicated, run);
}

void
ctl_rama_runs_end(CtlRamaCli *cli)
{
  GList *runs = g_hash_table_get_keys(cli->runs);
  for (GList *l = runs; l; l = l->next)
    kill_group(l->data, SIGKILL);
  g_list_free(runs);
  gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
  while (g_hash_table_size(cli->runs) > 0 && g_get_monotonic_time() < deadline)
    g_main_context_iteration(NULL, TRUE);
  if (g_hash_table_size(cli->runs) > 0)
    g_warning("rama: %u CLI calls did not end", g_hash_table_size(cli->runs));
}

/* The commands that take --useInternalHostnames (seed 002's CLI reference;
 * scaleExecutors does not). */
static gboolean
takes_internal_hostnames(const char *command)
{
  static const char *const takers[] = {
    "destroy", "moduleStatus", "pauseTopology", "resumeTopology", "setOption",
    "taskGroupsStatus", NULL,
  };
  return g_strv_contains(takers, command);
}

char **
ctl_rama_cli_argv(CtlRamaCli *cli, const char *first, ...)
{
  GPtrArray *a = g_ptr_array_new();
  g_ptr_array_add(a, g_strdup(cli->path));
  va_list ap;
  va_start(ap, first);
  for (const char *s = first; s; s = va_arg(ap, const char *))
    g_ptr_array_add(a, g_strdup(s));
  va_end(ap);
  if (cli->internal_hostnames && takes_internal_hostnames(first))
    g_ptr_array_add(a, g_strdup("--useInternalHostnames"));
  g_ptr_array_add(a, NULL);
  return (char **) g_ptr_array_free(a, FALSE);
}

char *
ctl_rama_run_failure(CtlRamaRun *run)
{
  if (run->timed_out)
    return g_strdup_printf("%s %s did not finish within %d ms (killed)", run->argv[0],
                           run->argv[1], run->cli->timeout_ms);
  if (run->error)
    return g_strdup(run->error);
  if (run->exit_status != 0)
    return g_strdup_printf("%s %s exited %d%s%s", run->argv[0], run->argv[1], run->exit_status,
                           *run->output ? ": " : "", run->output);
  return NULL;
}

void
ctl_rama_append_output(GString *d, const char *output)
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
