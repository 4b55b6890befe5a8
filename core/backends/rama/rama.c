/* The cluster backend: Rama modules and microbatch topologies through the
 * `rama` CLI (see rama.h). Lifecycle of a command: queued -> applied |
 * failed, like the Kafka path's, with the CLI's exit status and output as the
 * result. One command at a time per object: a second while one is queued or
 * running is EBUSY, as the CLI gives no way to order two calls on a topology.
 * Here: the commands (state, scale, options) and the outbox; running the CLI
 * is rama-cli.c's, a module's moduleStatus rama-status.c's. */
#include "rama.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "verb.h"
#include "message.h"
#include "rama-private.h"
#include "timefmt.h"

/* Settings of a module: the last scale applied, and a queued one (so that
 * the outbox can run it again after a restart). */
#define SCALE_SETTING        "scale"
#define SCALE_QUEUED_SETTING "scale.queued"
/* A scale that changes no number (Rama's "no-op scaling": the module moves
 * onto the isolation scheduler's nodes), as the command's args. */
#define SCALE_NOOP           "noop"
/* An option's last value applied (a setting of the option object), and a
 * module's queued setOption ("PATH VALUE", PATH the option's below the
 * module: `NAME` for options/NAME, else `topologies/T/options/NAME`, ...;
 * for the outbox). */
#define OPTION_VALUE_SETTING  "value"
#define OPTION_QUEUED_SETTING "option.queued"
#define SET_OPTION_VERB       "setOption"
/* The longest option value taken: Rama's dynamic options are numbers,
 * booleans and short strings; this leaves room for a small JSON object and
 * keeps the log's lines readable. */
#define OPTION_VALUE_MAX 256

/* A state or scale write being carried out. */
typedef struct {
  CtlRama       *rama;
  char          *id, *verb, *args, *by;
  char          *option;    /* setOption: the option's name (args: its JSON value) */
  gint64         option_key;  /* ... the option (rm may forget it meanwhile) */
  char          *level;     /* ... module, topology, depot or pstate */
  char          *object;    /* ... the topology, depot or PState; NULL for the module */
  gint64         key;       /* the object (it stays: rmdir is EBUSY meanwhile) */
  CtlCommandDone done;      /* the durable writer, NULL once answered */
  gpointer       user_data;
  gboolean       queued;    /* queued mode: the writer was answered at once */
} Command;

/* ---- commands ---- */

static void
command_free(Command *c)
{
  g_free(c->id);
  g_free(c->verb);
  g_free(c->args);
  g_free(c->by);
  g_free(c->option);
  g_free(c->level);
  g_free(c->object);
  g_free(c);
}

static CtlObject *
module_of(CtlObject *obj)
{
  return ctl_model_group_of(obj);
}

/* The option C set, if it is still declared (rm may have forgotten it). */
static CtlObject *
option_of(CtlEngine *e, const Command *c)
{
  return c->option_key ? ctl_model_by_key(ctl_engine_model(e), c->option_key) : NULL;
}

/* setOption's level for the owner of an options/. */
static const char *
option_level(CtlObject *owner)
{
  switch (owner->kind) {
  case CTL_KIND_TOPOLOGY: return "topology";
  case CTL_KIND_DEPOT:    return "depot";
  case CTL_KIND_PSTATE:   return "pstate";
  default:                return "module";
  }
}

/* C sets OPTION: what its argv and log lines name. */
static void
command_set_option(Command *c, CtlObject *option)
{
  CtlObject *owner = option->parent->parent;
  c->option = g_strdup(option->name);
  c->option_key = option->key;
  c->level = g_strdup(option_level(owner));
  c->object = owner->kind == CTL_KIND_MODULE ? NULL : g_strdup(owner->name);
}

/* OPTION's path below its module, as the outbox stores it: `NAME` for the
 * module's own (as before other levels existed), else
 * `topologies/T/options/NAME` and the like. Names hold neither `/` nor ` `. */
static char *
option_path(CtlObject *module, CtlObject *option)
{
  CtlObject *owner = option->parent->parent;
  if (owner == module)
    return g_strdup(option->name);
  return g_strdup_printf("%s/%s/options/%s", owner->parent->name, owner->name, option->name);
}

static CtlObject *
option_at(CtlObject *module, const char *path)
{
  if (!strchr(path, '/'))
    return ctl_model_child(ctl_model_options(module), path);
  char **parts = g_strsplit(path, "/", -1);
  CtlObject *o = module;
  for (char **p = parts; o && *p; p++)
    o = ctl_model_child(o, *p);
  g_strfreev(parts);
  return o && o->kind == CTL_KIND_OPTION ? o : NULL;
}

/* A setOption's fields of a log line: `option=NAME`, and for a topology's,
 * depot's or PState's `level=topology object=T` too. */
static void
append_option(GString *d, const Command *c)
{
  if (!c->option)
    return;
  ctl_kv_append(d, "option", c->option);
  if (c->object) {
    ctl_kv_append(d, "level", c->level);
    ctl_kv_append(d, "object", c->object);
  }
}

/* What an applied command leaves to show: the scale, or the option's value. */
/* Other admin hosts are told the value (they show it, never run the CLI). */
static gboolean
remember_applied(CtlEngine *e, CtlObject *module, Command *c, GError **error)
{
  if (!c->option && strcmp(c->args, SCALE_NOOP) == 0)
    return TRUE;   /* no number changed: the last scale applied stands */
  if (!c->option)
    return ctl_model_set_setting(ctl_engine_model(e), module, SCALE_SETTING, c->args, error)
           && ctl_engine_announce_settings(e, module, c->by, error);
  CtlObject *option = option_of(e, c);
  if (!option)
    return TRUE;
  if (!ctl_model_set_setting(ctl_engine_model(e), option, OPTION_VALUE_SETTING, c->args, error)
      || !ctl_engine_announce_settings(e, option, c->by, error))
    return FALSE;
  ctl_model_changed(ctl_engine_model(e), option, CTL_CHANGE_STATE);
  return TRUE;
}

/* Records RESULT of command C on OBJ: the command row, the object's status,
 * the scale applied, and one log line, in one transaction. */
static void
record(CtlEngine *e, CtlObject *obj, Command *c, const char *result, const char *why,
       CtlRamaRun *run)
{
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "id", c->id);
  ctl_kv_append(d, "verb", c->verb);
  append_option(d, c);
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
    ctl_rama_append_output(d, run->output);
  }
  if (why)
    ctl_kv_append(d, "error", why);
  if (g_strcmp0(obj->last_cmd_id, c->id) == 0)
    ctl_set_str(&obj->last_cmd_result, result);
  GError *error = NULL;
  gboolean ok = ctl_model_begin(ctl_engine_model(e), &error);
  ok = ok && ctl_store_command_update(ctl_engine_store(e), c->id, result, -1, why, &error);
  if (ok && c->args && strcmp(result, "applied") == 0)
    ok = remember_applied(e, obj, c, &error);
  ok = ok && ctl_model_save(ctl_engine_model(e), obj, &error);
  ok = ok && ctl_model_log(ctl_engine_model(e), obj, "command", d->str, &error);
  if (!ctl_model_end(ctl_engine_model(e), ok, &error)) {
    g_warning("%s: cannot record command %s: %s", obj->name, c->id, error->message);
    g_error_free(error);
  }
  g_string_free(d, TRUE);
  ctl_engine_count_command(e, c->verb, result);
  ctl_model_changed(ctl_engine_model(e), obj, CTL_CHANGE_STATE);
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
applied(CtlEngine *e, CtlObject *obj, Command *c, CtlRamaRun *run)
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
  ctl_model_changed(ctl_engine_model(e), obj, what);
  answer(e, c, 0);
}

static void
failed(CtlEngine *e, CtlObject *obj, Command *c, const char *why, CtlRamaRun *run, int err)
{
  if (g_strcmp0(obj->pending, c->id) == 0)
    ctl_set_str(&obj->pending, NULL);
  ctl_set_str(&obj->last_error, why);
  record(e, obj, c, "failed", why, run);
  answer(e, c, err);
}

static void
on_command_run(CtlRamaRun *run)
{
  CtlRama *r = run->rama;
  CtlEngine *e = r->e;
  Command *c = run->data;
  CtlObject *obj = ctl_model_by_key(ctl_engine_model(e), c->key);   /* kept by obj->inflight */
  char *why = ctl_rama_run_failure(run);
  if (!ctl_rama_run_ended(run)) {
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
    ctl_engine_log(e, obj, "cli-ended", d->str);
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
  ctl_rama_check_module(r, module);
}

static char **
command_argv(CtlRama *r, CtlObject *obj, const Command *c)
{
  if (obj->kind == CTL_KIND_TOPOLOGY)
    return ctl_rama_cli_argv(&r->cli,
                             strcmp(c->verb, "pause") == 0 ? "pauseTopology" : "resumeTopology",
                             module_of(obj)->name, obj->name, NULL);
  if (c->option && c->object)
    return ctl_rama_cli_argv(&r->cli, "setOption", c->level, obj->name, c->object, c->option,
                             c->args, NULL);
  if (c->option)
    return ctl_rama_cli_argv(&r->cli, "setOption", "module", obj->name, c->option, c->args, NULL);
  /* scale: `workers=2 threads=4` -> --workers 2 --threads 4; no-op: no flag */
  GStrvBuilder *b = g_strv_builder_new();
  g_strv_builder_add_many(b, r->cli.path, "scaleExecutors", "--module", obj->name, NULL);
  char **pairs = g_strsplit(strcmp(c->args, SCALE_NOOP) == 0 ? "" : c->args, " ", 0);
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
  ctl_rama_run_start(&r->cli, r, command_argv(r, obj, c), on_command_run, c);
}

/* The CLI runs only once the command's row is committed: a command whose
 * store failed (the writer hears EIO) never reaches the cluster. */
static void
command_committed(gpointer data, gboolean ok, const char *reason)
{
  Command *c = data;
  CtlRama *r = c->rama;
  CtlObject *obj = ctl_model_by_key(ctl_engine_model(r->e), c->key);
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
    ctl_model_changed(ctl_engine_model(e), obj, CTL_CHANGE_DESIRED);
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "id", c->id);
  ctl_kv_append(d, "verb", c->verb);
  append_option(d, c);
  if (c->args)
    ctl_kv_append(d, "args", c->args);
  g_string_append_printf(d, " %s", c->by);
  ctl_kv_append(d, "result", "queued");
  gboolean ok = ctl_model_begin(ctl_engine_model(e), error);
  ok = ok && ctl_store_command_insert(ctl_engine_store(e), &row, error);
  /* The outbox needs a queued scale's values after a restart. */
  if (ok && c->args && c->queued && !c->option)
    ok = ctl_model_set_setting(ctl_engine_model(e), obj, SCALE_QUEUED_SETTING, c->args, error);
  CtlObject *option = c->option ? option_of(e, c) : NULL;
  if (ok && c->queued && option) {
    char *path = option_path(obj, option);
    char *queued = g_strdup_printf("%s %s", path, c->args);
    g_free(path);
    ok = ctl_model_set_setting(ctl_engine_model(e), obj, OPTION_QUEUED_SETTING, queued, error);
    g_free(queued);
  }
  ok = ok && ctl_model_save(ctl_engine_model(e), obj, error);
  ok = ok && ctl_model_log(ctl_engine_model(e), obj, "command", d->str, error);
  ok = ctl_model_end(ctl_engine_model(e), ok, error);
  g_string_free(d, TRUE);
  return ok;
}

/* A valid, allowed command: EBUSY while the object has one, else stored and
 * run once stored. */
static void
submit(CtlEngine *e, CtlObject *obj, const char *verb, CtlObject *option, const char *args,
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
  Command *c = command_new(ctl_rama_of(e), id, verb, args, by, obj->key);
  if (option)
    command_set_option(c, option);
  g_free(by);
  c->queued = ctl_engine_config(e)->write_mode == CTL_WRITE_QUEUED;
  GError *error = NULL;
  if (!store_command(e, obj, c, who, &error)) {
    ctl_set_str(&obj->last_error, error->message);
    g_warning("%s: cannot store command: %s", obj->name, error->message);
    g_error_free(error);
    command_free(c);
    done(EIO, user_data);
    return;
  }
  ctl_model_changed(ctl_engine_model(e), obj, CTL_CHANGE_STATE);
  obj->inflight++;
  if (c->queued) {
    ctl_engine_reply(e, 0, done, user_data);   /* once stored, the outbox takes it */
  } else {
    c->done = done;
    c->user_data = user_data;
  }
  ctl_store_after_commit(ctl_engine_store(e), command_committed, c);
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

static void
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
  /* An empty line or `noop`: Rama's no-op scaling (every number as it is). */
  if (len == 0 || (len == strlen(SCALE_NOOP) && memcmp(input, SCALE_NOOP, len) == 0))
    return g_strdup(SCALE_NOOP);
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

static void
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
  CtlObject *obj = ctl_model_by_key(ctl_engine_model(s->r->e), row->object_id + CTL_KEY_FIRST_STORED - 1);
  if (!obj || (obj->kind != CTL_KIND_TOPOLOGY && obj->kind != CTL_KIND_MODULE))
    return;   /* the Kafka outbox's (command.c) */
  gboolean set_option = strcmp(row->verb, SET_OPTION_VERB) == 0;
  Command *c = command_new(s->r, row->id, row->verb,
                           obj->kind == CTL_KIND_MODULE && !set_option
                           ? ctl_model_setting(obj, SCALE_QUEUED_SETTING) : NULL,
                           NULL, obj->key);
  c->queued = strcmp(row->mode, "queued") == 0;
  /* "PATH VALUE": a path has no space, a JSON value may. An option
   * forgotten meanwhile is not set again. */
  const char *queued = set_option ? ctl_model_setting(obj, OPTION_QUEUED_SETTING) : NULL;
  const char *space = queued ? strchr(queued, ' ') : NULL;
  char *path = space ? g_strndup(queued, space - queued) : NULL;
  CtlObject *option = path ? option_at(obj, path) : NULL;
  g_free(path);
  if (option) {
    command_set_option(c, option);
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
  if (!ctl_store_queued_commands(ctl_engine_store(e), "durable", collect, &s, &error)
      || !ctl_store_queued_commands(ctl_engine_store(e), "queued", collect, &s, &error)) {
    g_warning("rama outbox: %s", error->message);
    g_clear_error(&error);
  }
  for (guint i = 0; i < s.rows->len; i++) {
    Command *c = s.rows->pdata[i];
    CtlObject *obj = ctl_model_by_key(ctl_engine_model(e), c->key);
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
ctl_rama_of(CtlEngine *e)
{
  return ctl_engine_backend_data(e, &ctl_backend_rama);
}

/* Made by the engine once its model is loaded: runs the commands queued
 * before a restart (queued mode) and fails the durable ones that died with
 * the previous daemon. */
static void
start(CtlEngine *e)
{
  CtlRama *r = g_new0(CtlRama, 1);
  r->e = e;
  r->cli.path = ctl_engine_config(e)->rama_cli;
  r->cli.timeout_ms = ctl_engine_config(e)->rama_timeout_ms;
  r->cli.internal_hostnames = ctl_engine_config(e)->rama_internal_hostnames;
  r->cli.runs = g_hash_table_new(NULL, NULL);
  ctl_engine_set_backend_data(e, &ctl_backend_rama, r);
  ctl_rama_status_init(r);
  outbox_restart(r);
  ctl_rama_status_start(r);
}

/* Kills the children still running; their durable writers hear EIO. */
static void
stop(CtlEngine *e)
{
  CtlRama *r = ctl_rama_of(e);
  if (!r)
    return;
  r->stopping = TRUE;
  ctl_rama_status_stop(r);
  /* Commands waiting for their commit are answered now (EIO; a queued one
   * stays in the outbox), not after this is gone. */
  GError *error = NULL;
  if (!ctl_store_flush(ctl_engine_store(r->e), &error)) {
    g_warning("rama: last commit failed: %s", error->message);
    g_error_free(error);
  }
  /* Children are killed and their ends awaited (briefly): their writers are
   * answered and nothing is left to call back into a freed engine. */
  ctl_rama_runs_end(&r->cli);
  g_hash_table_unref(r->cli.runs);
  ctl_rama_status_free(r);
  ctl_engine_set_backend_data(e, &ctl_backend_rama, NULL);
  g_free(r);
}

const char *
ctl_rama_scale_value(CtlObject *module)
{
  return ctl_model_setting(module, SCALE_SETTING);
}

/* ---- dynamic options (rama setOption module MOD NAME VALUEJSON) ---- */

/* Declaring an option (create in options/; WHO was authorised by the
 * engine's command rule): EINVAL name, EEXIST. Rama has no unset:
 * forgetting the file (unlink) runs nothing. */
static int
ctl_rama_declare_option(CtlEngine *e, CtlObject *options, const char *name,
                        const CtlCaller *who, CtlObject **out)
{
  char *by = ctl_caller_describe(who);
  int err = 0;
  *out = ctl_model_create_option(ctl_engine_model(e), options, name, by, &err);
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

static void
ctl_rama_set_option(CtlEngine *e, CtlObject *option, const char *input, gsize len,
                    gint64 offset, const CtlCaller *who, CtlCommandDone done,
                    gpointer user_data)
{
  ctl_engine_time_write(e, &done, &user_data);
  CtlObject *module = module_of(option);
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
  submit(e, module, SET_OPTION_VERB, option, value, input, len, who, done, user_data);
  g_free(value);
}

static const char *
ctl_rama_option_value(CtlObject *option)
{
  return ctl_model_setting(option, OPTION_VALUE_SETTING);
}

/* ---- the backend: files and types ---- */

static void
show_scale(CtlEngine *e, CtlObject *module, GString *out)
{
  const char *scale = ctl_rama_scale_value(module);
  g_string_append_printf(out, "%s\n", scale ? scale : "-");
}

/* A module's dynamic option: the file is the option object itself. */
static void
show_option(CtlEngine *e, CtlObject *option, GString *out)
{
  const char *value = ctl_rama_option_value(option);
  if (value)
    g_string_append_printf(out, "%s\n", value);
}

static const CtlAttr module_attrs[] = {
  { .name = "status", .mode = S_IFREG | 0444, .show = ctl_rama_show_module },
  CTL_ATTR_LOG,
  /* set once the CLI is done (queued mode too) */
  { .name = "scale",  .mode = S_IFREG | 0664, .show = show_scale, .store = ctl_rama_scale,
    .wakes = CTL_CHANGE_STATE },
  /* rama taskGroupsStatus, after each moduleStatus that names an instance */
  { .name = "task-groups", .mode = S_IFREG | 0444, .show = ctl_rama_show_groups,
    .wakes = CTL_CHANGE_STATE },
};

static const CtlAttr topology_attrs[] = {
  { .name = "state", .mode = S_IFREG | 0664, .show = ctl_attr_show_desired,
    .store = ctl_rama_topology_command },
  CTL_ATTR_OBSERVED,
  CTL_ATTR_LEAF_STATUS,
  CTL_ATTR_LOG,
};

static const CtlAttr option_self =
  { .name = "", .mode = S_IFREG | 0664, .show = show_option, .store = ctl_rama_set_option };

/* What other admin hosts are told along with the object (peers-objects.c):
 * the last value applied. */
static const char *const module_shared[] = { SCALE_SETTING, NULL };
static const char *const option_shared[] = { OPTION_VALUE_SETTING, NULL };

static const CtlType types[CTL_KIND_COUNT] = {
  [CTL_KIND_MODULES]    = { .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_MODULE]     = { .attrs = module_attrs, .n_attrs = G_N_ELEMENTS(module_attrs),
                            .shared = module_shared },
  [CTL_KIND_TOPOLOGIES] = { .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_TOPOLOGY]   = { .attrs = topology_attrs, .n_attrs = G_N_ELEMENTS(topology_attrs) },
  [CTL_KIND_OPTIONS]    = { .children = CTL_CHILDREN_CREATE },
  [CTL_KIND_OPTION]     = { .self = &option_self, .shared = option_shared },
  /* a depot or a PState is declared for its options/ only: Rama has no
   * command on one but setOption */
  [CTL_KIND_DEPOTS]     = { .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_DEPOT]      = { 0 },
  [CTL_KIND_PSTATES]    = { .children = CTL_CHILDREN_MKDIR },
  [CTL_KIND_PSTATE]     = { 0 },
};

static const CtlType *
type(CtlObject *obj)
{
  return &types[obj->kind];
}

static const char *const verbs[] = { "pause", "resume", NULL };

static const CtlUnderway underway[] = { { NULL, NULL } };

const CtlBackend ctl_backend_rama = {
  .name = "rama",
  .kinds = 1u << CTL_KIND_MODULES | 1u << CTL_KIND_MODULE | 1u << CTL_KIND_TOPOLOGIES
         | 1u << CTL_KIND_TOPOLOGY | 1u << CTL_KIND_OPTIONS | 1u << CTL_KIND_OPTION
         | 1u << CTL_KIND_DEPOTS | 1u << CTL_KIND_DEPOT | 1u << CTL_KIND_PSTATES
         | 1u << CTL_KIND_PSTATE,
  .verbs = verbs,
  .underway = underway,
  .type = type,
  .create = ctl_rama_declare_option,
  .start = start,
  .stop = stop,
};
