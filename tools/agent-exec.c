/* ctlfs-agent's exec hook (agent-exec.h). Its log lines are ctlfs-agent's:
 * the tests read them. */
#define G_LOG_DOMAIN "ctlfs-agent"
#include "agent-exec.h"
#include "timefmt.h"

#include <errno.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define REASON_MAX 512   /* bytes of a reason kept: one line of last_error */

/* Every variable the hook may get: unset first, so that one the agent
 * inherited never passes for the command's. */
static const char *const hook_vars[] = {
  "CTLFS_RUNTIME", "CTLFS_RESOURCE", "CTLFS_SCOPE", "CTLFS_DIALECT", "CTLFS_COMMAND_ID",
  "CTLFS_VERB", "CTLFS_ISSUED_AT", "CTLFS_EXPIRES_AT", "CTLFS_MODE", "CTLFS_BY",
  "CTLFS_BY_UID", "CTLFS_BY_USER", "CTLFS_BY_PID", "CTLFS_BY_COMM", "CTLFS_BY_HOST",
  "CTLFS_COMMAND_JSON", "CTLFS_COMMAND_FILE", NULL,
};

struct AgentExec {
  char     **argv;      /* not owned */
  int        timeout_ms;
  GQueue    *waiting;   /* Job*, in order of arrival */
  GHashTable *busy;     /* key -> its running Job* */
  guint      running;
};

typedef struct Job Job;

/* One of the hook's output streams, read as it comes. */
typedef struct {
  Job     *job;
  const char *name;     /* stdout | stderr */
  int      fd;          /* -1: closed */
  GSource *source;
  GString *line;        /* the line so far */
  gboolean cut;         /* the line went over AGENT_EXEC_LINE_MAX: drop the rest */
} Stream;

struct Job {
  AgentExec   *x;
  char        *key;      /* the resource, "" for runtime-wide */
  char        *id;       /* the command's, for the log */
  char       **argv;
  char       **env;
  char        *file;     /* CTLFS_COMMAND_FILE, removed with the job */
  AgentExecCallbacks cb;
  gpointer     data;
  GDestroyNotify destroy;
  GMainContext *ctx;     /* NULL: the default one */

  GPid         pid;
  GSource     *child;
  GSource     *timer;
  gboolean     timed_out;
  gboolean     finished;
  Stream       out, err;
  char        *error_text;   /* the last `error` line */
  char        *last_err;     /* the last non-blank stderr line */
};

/* ---- the environment ---------------------------------------------------- */

static char **
set_int(char **env, const char *name, gint64 value)
{
  g_autofree char *text = g_strdup_printf("%" G_GINT64_FORMAT, value);
  return g_environ_setenv(env, name, text, TRUE);
}

static char **
set_time(char **env, const char *name, gint64 ms)
{
  char when[CTL_TIME_LEN];
  return g_environ_setenv(env, name, ctl_time_format(ms, when), TRUE);
}

static char **
set_opt(char **env, const char *name, const char *value)
{
  return value ? g_environ_setenv(env, name, value, TRUE) : env;
}

/* Who issued it: CTLFS_BY as the daemon's log writes it, and each part. */
static char **
set_issuer(char **env, const CtlCommandMsg *c)
{
  if (c->uid >= 0) {
    g_autofree char *by = g_strdup_printf("uid:%" G_GINT64_FORMAT "(%s)", c->uid,
                                          c->user ? c->user : "?");
    env = g_environ_setenv(env, "CTLFS_BY", by, TRUE);
    env = set_int(env, "CTLFS_BY_UID", c->uid);
  } else {
    env = set_opt(env, "CTLFS_BY", c->user);
  }
  env = set_opt(env, "CTLFS_BY_USER", c->user);
  if (c->pid > 0)
    env = set_int(env, "CTLFS_BY_PID", c->pid);
  env = set_opt(env, "CTLFS_BY_COMM", c->comm);
  return set_opt(env, "CTLFS_BY_HOST", c->host);
}

/* The message itself, when it can be an environment string: not too long,
 * no NUL byte (a file is used otherwise, see job_new). */
static gboolean
json_fits_env(const AgentExecRequest *req)
{
  return req->json != NULL && req->json_len <= AGENT_EXEC_ENV_JSON_MAX
      && memchr(req->json, '\0', req->json_len) == NULL;
}

char **
agent_exec_environ(const AgentExecRequest *req)
{
  const CtlCommandMsg *c = req->cmd;
  char **env = g_get_environ();
  for (const char *const *v = hook_vars; *v; v++)
    env = g_environ_unsetenv(env, *v);
  env = g_environ_setenv(env, "CTLFS_RUNTIME", c->runtime, TRUE);
  env = set_opt(env, "CTLFS_RESOURCE", req->resource);
  env = g_environ_setenv(env, "CTLFS_SCOPE", req->resource ? "resource" : "runtime", TRUE);
  env = g_environ_setenv(env, "CTLFS_DIALECT", req->dialect, TRUE);
  env = g_environ_setenv(env, "CTLFS_COMMAND_ID", c->id, TRUE);
  env = g_environ_setenv(env, "CTLFS_VERB", req->verb, TRUE);
  if (c->issued_at_ms != 0)
    env = set_time(env, "CTLFS_ISSUED_AT", c->issued_at_ms);
  if (c->expires_at_ms != 0)
    env = set_time(env, "CTLFS_EXPIRES_AT", c->expires_at_ms);
  env = set_opt(env, "CTLFS_MODE", c->mode);
  env = set_issuer(env, c);
  if (json_fits_env(req)) {
    g_autofree char *json = g_strndup(req->json, req->json_len);
    env = g_environ_setenv(env, "CTLFS_COMMAND_JSON", json, TRUE);
  }
  return env;
}

/* ---- text --------------------------------------------------------------- */

/* TEXT as one line of valid UTF-8 (control characters made spaces), at most
 * MAX bytes, cut on a character boundary: it ends up in JSON and in a log
 * line. */
static char *
clean_text(const char *text, gsize max)
{
  char *s = g_utf8_make_valid(text, -1);
  for (char *p = s; *p; p++)
    if ((guchar) *p < 0x20 || *p == 0x7f)
      *p = ' ';
  if (strlen(s) > max)
    *g_utf8_find_prev_char(s, s + max + 1) = '\0';
  g_strstrip(s);
  return s;
}

/* ---- reading the hook's output ------------------------------------------ */

static void
on_stdout_line(Job *j, const char *line)
{
  if (g_str_has_prefix(line, "state ")) {
    g_autofree char *state = g_strstrip(g_strdup(line + 6));
    if (ctl_observed_state_valid(state) && !g_str_equal(state, "unknown")) {
      if (j->cb.progress)
        j->cb.progress(state, j->data);
      return;
    }
    g_message("exec id=%s ignored: \"%s\" is not a state a runtime may report", j->id, state);
  } else if (g_str_has_prefix(line, "error ")) {
    g_free(j->error_text);
    j->error_text = clean_text(line + 6, REASON_MAX);
  } else {
    g_message("exec id=%s ignored: not a line of the protocol (state STATE, error TEXT)", j->id);
  }
}

/* One whole line (or the first AGENT_EXEC_LINE_MAX bytes of one). Every
 * line is logged, escaped, so that the hook's output never reaches our
 * stdout (which carries only "ready"). */
static void
on_line(Stream *s, gboolean cut)
{
  Job *j = s->job;
  if (s->line->len > 0 && s->line->str[s->line->len - 1] == '\r')
    g_string_truncate(s->line, s->line->len - 1);
  g_autofree char *esc = g_strescape(s->line->str, NULL);
  g_message("exec id=%s %s%s: %s", j->id, s->name, cut ? " (line cut)" : "", esc);
  if (s == &j->out) {
    on_stdout_line(j, s->line->str);
  } else {
    g_autofree char *text = clean_text(s->line->str, REASON_MAX);
    if (*text != '\0') {
      g_free(j->last_err);
      j->last_err = g_steal_pointer(&text);
    }
  }
  g_string_truncate(s->line, 0);
}

static void
stream_feed(Stream *s, const char *buf, gssize n)
{
  for (gssize i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      if (!s->cut)
        on_line(s, FALSE);
      s->cut = FALSE;
    } else if (!s->cut) {
      g_string_append_c(s->line, buf[i] ? buf[i] : ' ');
      if (s->line->len >= AGENT_EXEC_LINE_MAX) {
        on_line(s, TRUE);
        s->cut = TRUE;
      }
    }
  }
}

static void
stream_close(Stream *s)
{
  if (s->source) {
    g_source_destroy(s->source);
    g_clear_pointer(&s->source, g_source_unref);
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

/* Reads what is there; at the end (or an error) the last partial line
 * counts as a line, and the stream is closed. */
static void
stream_read(Stream *s)
{
  char buf[4096];
  while (s->fd >= 0) {
    gssize n = read(s->fd, buf, sizeof buf);
    if (n > 0) {
      stream_feed(s, buf, n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (s->line->len > 0 && !s->cut)
      on_line(s, FALSE);
    stream_close(s);
  }
}

static gboolean
on_readable(gint fd, GIOCondition cond, gpointer data)
{
  Stream *s = data;
  stream_read(s);
  return s->fd >= 0 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
stream_open(Stream *s, Job *j, const char *name, int fd)
{
  s->job = j;
  s->name = name;
  s->fd = fd;
  s->line = g_string_new(NULL);
  g_unix_set_fd_nonblocking(fd, TRUE, NULL);
  s->source = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_callback(s->source, (GSourceFunc) (void (*)(void)) on_readable, s, NULL);
  g_source_attach(s->source, j->ctx);
}

static void
stream_clear(Stream *s)
{
  stream_close(s);
  if (s->line)
    g_string_free(s->line, TRUE);
}

/* ---- a run -------------------------------------------------------------- */

static void
job_free(Job *j)
{
  if (j->pid > 0) {
    /* Still running: the agent is going away. */
    kill(-j->pid, SIGTERM);
    g_spawn_close_pid(j->pid);
  }
  if (j->child) {
    g_source_destroy(j->child);
    g_source_unref(j->child);
  }
  if (j->timer) {
    g_source_destroy(j->timer);
    g_source_unref(j->timer);
  }
  stream_clear(&j->out);
  stream_clear(&j->err);
  if (j->file) {
    g_unlink(j->file);
    g_free(j->file);
  }
  if (j->destroy)
    j->destroy(j->data);
  g_free(j->key);
  g_free(j->id);
  g_strfreev(j->argv);
  g_strfreev(j->env);
  g_free(j->error_text);
  g_free(j->last_err);
  g_free(j);
}

/* A command too large for the environment goes in a file of its own. */
static void
job_command_file(Job *j, const AgentExecRequest *req)
{
  if (req->json == NULL || json_fits_env(req))
    return;
  g_autoptr(GError) error = NULL;
  int fd = g_file_open_tmp("ctlfs-command-XXXXXX.json", &j->file, &error);
  if (fd < 0 || !g_file_set_contents(j->file, req->json, (gssize) req->json_len, &error)) {
    g_message("exec id=%s: command file: %s", j->id, error->message);
    if (fd >= 0)
      close(fd);
    if (j->file)
      g_unlink(j->file);
    g_clear_pointer(&j->file, g_free);
    return;
  }
  close(fd);
  j->env = g_environ_setenv(j->env, "CTLFS_COMMAND_FILE", j->file, TRUE);
}

static Job *
job_new(AgentExec *x, const AgentExecRequest *req, const AgentExecCallbacks *cb,
        gpointer data, GDestroyNotify destroy)
{
  Job *j = g_new0(Job, 1);
  j->x = x;
  j->key = g_strdup(req->resource ? req->resource : "");
  j->id = g_strdup(req->cmd->id);
  g_autoptr(GStrvBuilder) b = g_strv_builder_new();
  g_strv_builder_addv(b, (const char **) x->argv);
  g_strv_builder_add(b, req->verb);
  j->argv = g_strv_builder_end(b);
  j->env = agent_exec_environ(req);
  job_command_file(j, req);
  if (cb)
    j->cb = *cb;
  j->data = data;
  j->destroy = destroy;
  j->out.fd = j->err.fd = -1;
  return j;
}

static void dispatch(AgentExec *x);

/* The reason a finished run failed, or NULL. */
static char *
job_reason(Job *j, int wait_status)
{
  const char *why = j->error_text ? j->error_text : j->last_err;
  if (j->timed_out)
    return why ? g_strdup_printf("timed out after %d ms, killed (%s)", j->x->timeout_ms, why)
               : g_strdup_printf("timed out after %d ms, killed", j->x->timeout_ms);
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)
    return NULL;
  g_autofree char *how = WIFEXITED(wait_status)
      ? g_strdup_printf("exit status %d", WEXITSTATUS(wait_status))
      : g_strdup_printf("killed by signal %d", WTERMSIG(wait_status));
  /* The hook's own last words are what an operator wants in last_error. */
  return why ? g_strdup_printf("%s (%s)", why, how) : g_steal_pointer(&how);
}

static void
job_finish(Job *j, const char *reason)
{
  j->finished = TRUE;
  if (j->cb.done)
    j->cb.done(reason, j->data);
  if (j->ctx != NULL)   /* run_sync's: freed by its caller */
    return;
  AgentExec *x = j->x;
  g_hash_table_remove(x->busy, j->key);
  x->running--;
  job_free(j);
  dispatch(x);
}

static void
on_child_exit(GPid pid, gint wait_status, gpointer data)
{
  Job *j = data;
  g_spawn_close_pid(pid);
  j->pid = 0;
  g_clear_pointer(&j->child, g_source_unref);   /* it goes away as we return */
  /* What it wrote before it ended is in the pipes: read it now. A child it
   * left behind may hold them open; it is not waited for. */
  stream_read(&j->out);
  stream_read(&j->err);
  stream_close(&j->out);
  stream_close(&j->err);
  if (j->timer) {
    g_source_destroy(j->timer);
    g_clear_pointer(&j->timer, g_source_unref);
  }
  g_autofree char *reason = job_reason(j, wait_status);
  g_message("exec id=%s ended: %s", j->id, reason ? reason : "ok");
  job_finish(j, reason);
}

static gboolean
on_timeout(gpointer data)
{
  Job *j = data;
  j->timed_out = TRUE;
  g_message("exec id=%s: still running after %d ms: killed", j->id, j->x->timeout_ms);
  /* Its process group: the hook is setpgid'd, so a shell's curl goes too. */
  if (kill(-j->pid, SIGKILL) != 0)
    kill(j->pid, SIGKILL);
  g_clear_pointer(&j->timer, g_source_unref);
  return G_SOURCE_REMOVE;
}

/* In the child, before exec: a process group of its own, to be killed whole. */
static void
child_setup(gpointer data)
{
  setpgid(0, 0);
}

static gboolean
job_spawn(Job *j, GError **error)
{
  int out, err;
  if (!g_spawn_async_with_pipes(NULL, j->argv, j->env,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD
                                | G_SPAWN_STDIN_FROM_DEV_NULL,
                                child_setup, NULL, &j->pid, NULL, &out, &err, error))
    return FALSE;
  g_message("exec id=%s pid=%d: %s %s", j->id, (int) j->pid, j->argv[0],
            j->argv[g_strv_length(j->argv) - 1]);
  stream_open(&j->out, j, "stdout", out);
  stream_open(&j->err, j, "stderr", err);
  j->child = g_child_watch_source_new(j->pid);
  g_source_set_callback(j->child, (GSourceFunc) (void (*)(void)) on_child_exit, j, NULL);
  g_source_attach(j->child, j->ctx);
  j->timer = g_timeout_source_new(j->x->timeout_ms);
  g_source_set_callback(j->timer, on_timeout, j, NULL);
  g_source_attach(j->timer, j->ctx);
  return TRUE;
}

/* Starts a waiting run: its turn has come. */
static void
job_start(AgentExec *x, Job *j)
{
  if (j->cb.begin && !j->cb.begin(j->data)) {
    job_free(j);
    return;
  }
  g_hash_table_insert(x->busy, j->key, j);
  x->running++;
  g_autoptr(GError) error = NULL;
  if (!job_spawn(j, &error)) {
    g_autofree char *reason = clean_text(error->message, REASON_MAX);
    g_message("exec id=%s: %s", j->id, reason);
    job_finish(j, reason);
  }
}

/* Starts the runs whose key is free, in order of arrival, up to the limit. */
static void
dispatch(AgentExec *x)
{
  GList *l = x->waiting->head;
  while (l != NULL && x->running < AGENT_EXEC_MAX_RUNNING) {
    GList *next = l->next;
    Job *j = l->data;
    if (!g_hash_table_contains(x->busy, j->key)) {
      g_queue_delete_link(x->waiting, l);
      job_start(x, j);
      next = x->waiting->head;   /* a callback may have queued more */
    }
    l = next;
  }
}

/* ---- the API ------------------------------------------------------------ */

AgentExec *
agent_exec_new(char **argv, int timeout_ms)
{
  AgentExec *x = g_new0(AgentExec, 1);
  x->argv = argv;
  x->timeout_ms = timeout_ms;
  x->waiting = g_queue_new();
  x->busy = g_hash_table_new(g_str_hash, g_str_equal);   /* keys are the jobs' */
  return x;
}

void
agent_exec_free(AgentExec *x)
{
  if (x == NULL)
    return;
  g_queue_free_full(x->waiting, (GDestroyNotify) job_free);
  GHashTableIter it;
  gpointer job;
  g_hash_table_iter_init(&it, x->busy);
  while (g_hash_table_iter_next(&it, NULL, &job)) {
    g_hash_table_iter_steal(&it);
    job_free(job);
  }
  g_hash_table_unref(x->busy);
  g_free(x);
}

void
agent_exec_submit(AgentExec *x, const AgentExecRequest *req, const AgentExecCallbacks *cb,
                  gpointer data, GDestroyNotify destroy)
{
  g_queue_push_tail(x->waiting, job_new(x, req, cb, data, destroy));
  dispatch(x);
}

typedef struct {
  char *reason;
} SyncResult;

static void
sync_done(const char *reason, gpointer data)
{
  SyncResult *r = data;
  r->reason = g_strdup(reason);
}

static void
sync_progress(const char *state, gpointer data)
{
  g_message("exec: state %s noted (applied before any report)", state);
}

gboolean
agent_exec_run_sync(AgentExec *x, const AgentExecRequest *req, GError **error)
{
  static const AgentExecCallbacks cb = { .progress = sync_progress, .done = sync_done };
  SyncResult r = { NULL };
  Job *j = job_new(x, req, &cb, &r, NULL);
  j->ctx = g_main_context_new();
  g_main_context_push_thread_default(j->ctx);
  gboolean spawned = job_spawn(j, error);
  while (spawned && !j->finished)
    g_main_context_iteration(j->ctx, TRUE);
  g_main_context_pop_thread_default(j->ctx);
  GMainContext *ctx = j->ctx;
  job_free(j);
  g_main_context_unref(ctx);
  if (!spawned)
    return FALSE;
  if (r.reason == NULL)
    return TRUE;
  g_set_error(error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED, "%s", r.reason);
  g_free(r.reason);
  return FALSE;
}
