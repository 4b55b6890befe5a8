/* ctlfs-agent: the reference runtime side of the contract (SPEC.md, "Messages").
 * Consumes every partition of PREFIX.RT.commands, applies each command once,
 * and reports the state of its resources on PREFIX.RT.feedback, on change and
 * as a heartbeat, keyed by resource and partitioned as Java clients and
 * kafkajs do (murmur2 of the key).
 *
 * stdout carries one line, "ready", once the consumer is assigned and the
 * initial feedback is delivered; everything else is logged on stderr. */
#define G_LOG_DOMAIN "ctlfs-agent"
#include "agent-flow.h"
#include "agent-partitions.h"
#include "agent-restore.h"
#include "verb.h"
#include "dialect-mia.h"
#include "message.h"
#include "name.h"
#include "kafka-close.h"
#include "queue-wake.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define START_TIMEOUT_MS 5000   /* bounds the one blocking call at start */
/* What a stop may wait for a broker (the last commit, feedback still queued):
 * SIGTERM must end the agent promptly even when the broker is gone (a ctlfs
 * with its embedded broker unmounted first); feedback lost then is sent again
 * as the initial state at the next start. */
#define STOP_TIMEOUT_MS     1000
#define KAFKA_TOPIC_MAX     249

typedef enum { APPLY_SIMULATE, APPLY_SIGNAL, APPLY_EXEC } ApplyKind;

typedef struct {
  char   *brokers;
  char   *runtime;
  char  **resources;       /* NULL: handle whatever commands name */
  int     heartbeat_ms;    /* 0: no heartbeats */
  char   *apply;
  char   *topic_prefix;
  char   *group;
  char   *initial_state;
  char   *dialect;         /* ctlfs | mia */
  char   *mia_pipeline_id; /* --dialect=mia: the pipeline's id (default: derived) */
  int     warmup_ms;       /* a flow's start: starting this long, then running */
  int     idle_ms;         /* an ordinary flow running this long sleeps (0: never) */
  int     refresh_ms;      /* how often the command topic's partitions are counted */
  gboolean quiet;          /* warnings only, and no "ready" */
  char   *log_file;        /* messages appended here instead of stderr */
  gboolean no_restore;     /* start from --initial-state, not the newest commands */
} Options;

/* Where the agent is in one partition of its command topic. The broker keeps
 * it, under the group, per partition: commands in different partitions come
 * in no particular order between them. */
typedef struct {
  gint64 next;        /* offset after the last handled command, -1: none */
  gint64 requested;   /* last offset sent in an async commit, -1: none */
  gint64 committed;   /* last offset the broker confirmed, -1: none */
} Position;

typedef struct {
  Options     opt;
  ApplyKind   apply;
  pid_t       signal_pid;
  char      **exec_argv;
  gboolean    mia;             /* --dialect=mia: Mia-Platform Fast Data messages */

  char       *cmd_topic;
  char       *fb_topic;
  GHashTable *states;          /* resource -> state, both owned */
  /* The runtime's own state (runtime-wide commands), and the resources with
   * a state of their own that runtime-wide commands leave alone. */
  char       *runtime_state;
  GHashTable *overrides;       /* resource names (a set) */
  GHashTable *seen;            /* command ids met by this process (a set) */
  AgentFlows *flows;           /* --apply=simulate: the lifecycle runtime's flows */
  GArray     *positions;       /* Position per partition of cmd_topic assigned */

  rd_kafka_t *consumer;
  rd_kafka_t *producer;
  CtlQueueWake *cwake;
  CtlQueueWake *pwake;
  AgentPartitions *partitions; /* counts cmd_topic's partitions */
  gboolean    assigned;        /* the command topic's partitions are assigned */
  guint       initial_pending; /* initial feedback not yet delivered */
  gboolean    ready;

  GMainLoop  *loop;
  guint       heartbeat;
  guint       sigterm;
  guint       sigint;
  int         exit_status;
} Agent;

/* Marks initial feedback in delivery reports (msg_opaque). */
static char initial_marker;

/* ---- options ------------------------------------------------------------ */

/* --dialect=mia: a stable id as Fast Data gives its pipelines and artifacts,
 * a name-based UUID (version 5 layout) of KIND and NAME, the same at every
 * start. */
static char *
mia_uuid(const char *kind, const char *name)
{
  g_autofree char *text = g_strdup_printf("ctlfs-agent/%s/%s", kind, name);
  g_autofree char *hex = g_compute_checksum_for_string(G_CHECKSUM_SHA1, text, -1);
  hex[12] = '5';                                     /* version */
  hex[16] = "89ab"[g_ascii_xdigit_value(hex[16]) & 3];   /* variant */
  return g_strdup_printf("%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static gboolean
usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static gboolean
usage_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  fprintf(stderr, "ctlfs-agent: %s\n", msg);
  return FALSE;
}

static void
default_string(char **field, const char *value)
{
  if (*field == NULL)
    *field = g_strdup(value);
}

static gboolean
parse_apply(Agent *a)
{
  const char *spec = a->opt.apply;
  if (g_str_equal(spec, "simulate")) {
    a->apply = APPLY_SIMULATE;
    return TRUE;
  }
  if (g_str_has_prefix(spec, "signal:")) {
    gint64 pid;
    if (!g_ascii_string_to_signed(spec + 7, 10, 1, G_MAXINT32, &pid, NULL))
      return usage_error("--apply=signal:PID needs a positive process id, not \"%s\"", spec + 7);
    a->apply = APPLY_SIGNAL;
    a->signal_pid = (pid_t) pid;
    return TRUE;
  }
  if (g_str_has_prefix(spec, "exec:")) {
    g_autoptr(GError) error = NULL;
    if (!g_shell_parse_argv(spec + 5, NULL, &a->exec_argv, &error))
      return usage_error("--apply=exec:CMD: %s", error->message);
    a->apply = APPLY_EXEC;
    return TRUE;
  }
  return usage_error("--apply must be simulate, signal:PID or exec:CMD, not \"%s\"", spec);
}

static gboolean
check_options(Agent *a)
{
  Options *o = &a->opt;
  if (o->brokers == NULL || *o->brokers == '\0')
    return usage_error("--brokers is required");
  if (o->runtime == NULL)
    return usage_error("--runtime is required");
  if (!ctl_name_valid(o->runtime))
    return usage_error("--runtime: not a valid name (1-128 bytes of [A-Za-z0-9._-], not . or ..)");
  for (char **r = o->resources; r != NULL && *r != NULL; r++)
    if (!ctl_name_valid(*r))
      return usage_error("--resource: not a valid name (1-128 bytes of [A-Za-z0-9._-], not . or ..)");
  if (o->heartbeat_ms < 0)
    return usage_error("--heartbeat-ms must not be negative");
  if (o->warmup_ms < 0)
    return usage_error("--warmup-ms must not be negative");
  if (o->idle_ms < 0)
    return usage_error("--idle-ms must not be negative");
  if (o->refresh_ms <= 0)
    return usage_error("--partition-refresh-ms must be positive");
  if (!ctl_name_valid(o->topic_prefix))
    return usage_error("--topic-prefix: not a valid topic prefix ([A-Za-z0-9._-])");
  if (*o->group == '\0')
    return usage_error("--group must not be empty");
  if (!ctl_observed_state_valid(o->initial_state))
    return usage_error("--initial-state: not a state a runtime may report");
  if (!g_str_equal(o->dialect, "ctlfs") && !g_str_equal(o->dialect, "mia"))
    return usage_error("--dialect must be ctlfs or mia, not \"%s\"", o->dialect);
  a->mia = g_str_equal(o->dialect, "mia");
  /* the runtime is in the state its resources start in, when that is one a
   * runtime-wide command can ask for */
  a->runtime_state = g_strdup(g_str_equal(o->initial_state, "paused") ? "paused" : "running");
  if (o->mia_pipeline_id && !ctl_name_valid(o->mia_pipeline_id))
    return usage_error("--mia-pipeline-id: not a valid id ([A-Za-z0-9._-], 1-128 bytes)");
  if (!o->mia_pipeline_id)
    o->mia_pipeline_id = mia_uuid("pipeline", o->runtime);
  a->cmd_topic = ctl_topic_commands(o->topic_prefix, o->runtime);
  a->fb_topic = ctl_topic_feedback(o->topic_prefix, o->runtime);
  if (strlen(a->cmd_topic) > KAFKA_TOPIC_MAX || strlen(a->fb_topic) > KAFKA_TOPIC_MAX)
    return usage_error("--topic-prefix and --runtime make a topic name over %d bytes",
                       KAFKA_TOPIC_MAX);
  return parse_apply(a);
}

static gboolean
parse_options(Agent *a, int *argc, char ***argv)
{
  Options *o = &a->opt;
  o->heartbeat_ms = 2500;
  o->warmup_ms = 200;
  o->refresh_ms = 10000;
  GOptionEntry entries[] = {
    { "brokers", 0, 0, G_OPTION_ARG_STRING, &o->brokers, "Kafka bootstrap servers (required)", "HOST:PORT,..." },
    { "runtime", 0, 0, G_OPTION_ARG_STRING, &o->runtime, "Runtime name (required)", "RT" },
    { "resource", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->resources, "A resource to handle (repeatable; none: any named in a command)", "NAME" },
    { "heartbeat-ms", 0, 0, G_OPTION_ARG_INT, &o->heartbeat_ms, "Feedback interval, 0 for none (default 2500)", "MS" },
    { "apply", 0, 0, G_OPTION_ARG_STRING, &o->apply, "How to apply a verb (default simulate)", "simulate|signal:PID|exec:CMD" },
    { "topic-prefix", 0, 0, G_OPTION_ARG_STRING, &o->topic_prefix, "Topic prefix (default ctlfs)", "PREFIX" },
    { "group", 0, 0, G_OPTION_ARG_STRING, &o->group, "Consumer group for offset commits (default ctlfs-agent.RT)", "ID" },
    { "initial-state", 0, 0, G_OPTION_ARG_STRING, &o->initial_state, "State reported at start (default running)", "STATE" },
    { "dialect", 0, 0, G_OPTION_ARG_STRING, &o->dialect, "Message shapes (default ctlfs)", "ctlfs|mia" },
    { "mia-pipeline-id", 0, 0, G_OPTION_ARG_STRING, &o->mia_pipeline_id, "With --dialect=mia, the pipeline's id (default: a UUID derived from the runtime's name)", "ID" },
    { "warmup-ms", 0, 0, G_OPTION_ARG_INT, &o->warmup_ms, "With --apply=simulate, a flow's start: starting this long, then running (default 200)", "MS" },
    { "idle-ms", 0, 0, G_OPTION_ARG_INT, &o->idle_ms, "With --apply=simulate, an ordinary flow running this long sleeps; 0 never (default 0)", "MS" },
    { "partition-refresh-ms", 0, 0, G_OPTION_ARG_INT, &o->refresh_ms, "How often partitions added to the command topic are looked for (default 10000)", "MS" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "Print warnings and errors only (no \"ready\")", NULL },
    { "log-file", 0, 0, G_OPTION_ARG_FILENAME, &o->log_file, "Append messages to FILE instead of stderr", "FILE" },
    { "no-restore", 0, 0, G_OPTION_ARG_NONE, &o->no_restore, "Do not take up each resource's newest command from the command topic at start: report --initial-state (a runtime without memory)", NULL },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
  g_option_context_set_summary(ctx, "The reference runtime side of ctlfs: applies commands, publishes feedback.");
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, argc, argv, &error))
    return usage_error("%s", error->message);
  if (*argc > 1)
    return usage_error("unexpected argument %s", (*argv)[1]);

  default_string(&o->apply, "simulate");
  default_string(&o->topic_prefix, "ctlfs");
  default_string(&o->initial_state, "running");
  default_string(&o->dialect, "ctlfs");
  if (o->group == NULL && o->runtime != NULL)
    o->group = g_strdup_printf("ctlfs-agent.%s", o->runtime);
  return check_options(a);
}

/* ---- feedback ----------------------------------------------------------- */

static void
maybe_ready(Agent *a)
{
  if (a->ready || !a->assigned || a->initial_pending > 0)
    return;
  a->ready = TRUE;
  g_message("ready runtime=%s commands=%s feedback=%s", a->opt.runtime, a->cmd_topic, a->fb_topic);
  if (a->opt.quiet)
    return;
  printf("ready\n");
  fflush(stdout);
}

static void
publish(Agent *a, const char *resource, const char *command_id, const char *message,
        gboolean initial)
{
  CtlFeedbackMsg fb = {
    .resource = (char *) resource,
    .state = g_hash_table_lookup(a->states, resource),
    .command_id = (char *) command_id,
    .ts_ms = ctl_now_ms(),
    .message = (char *) message,
  };
  g_autofree char *json = ctl_feedback_msg_encode(&fb);
  rd_kafka_resp_err_t err = rd_kafka_producev(a->producer,
      RD_KAFKA_V_TOPIC(a->fb_topic),
      RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),   /* murmur2 of the key */
      RD_KAFKA_V_KEY(resource, strlen(resource)),
      RD_KAFKA_V_VALUE(json, strlen(json)),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER(CTL_MSG_HEADER_NAME, CTL_MSG_HEADER_VALUE, -1),
      RD_KAFKA_V_OPAQUE(initial ? &initial_marker : NULL),
      RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    /* Only a full local queue gets here; the next heartbeat says it again. */
    g_message("feedback resource=%s not queued: %s", resource, rd_kafka_err2str(err));
    return;
  }
  if (initial)
    a->initial_pending++;
}

/* The id of artifact NAME: derived from the pipeline's id and its name. */
static char *
mia_artifact_id(Agent *a, const char *name)
{
  g_autofree char *scoped = g_strdup_printf("%s/%s", a->opt.mia_pipeline_id, name);
  return mia_uuid("artifact", scoped);
}

/* --dialect=mia: one Fast Data heartbeat with an edge per resource. */
static void
publish_mia(Agent *a, gboolean initial)
{
  g_autofree gpointer *names = g_hash_table_get_keys_as_array(a->states, NULL);
  guint n = g_hash_table_size(a->states);
  g_autofree const char **states = g_new0(const char *, n + 1);
  char **ids = g_new0(char *, n + 1);
  for (guint i = 0; i < n; i++) {
    states[i] = g_hash_table_lookup(a->states, names[i]);
    ids[i] = mia_artifact_id(a, names[i]);
  }
  g_autofree char *json = ctl_mia_feedback_encode((const char *const *) names,
                                                  (const char *const *) ids, states, n,
                                                  "ctlfs-agent");
  g_strfreev(ids);
  g_autofree char *key = ctl_mia_feedback_key(a->opt.mia_pipeline_id, a->opt.runtime);
  rd_kafka_resp_err_t err = rd_kafka_producev(a->producer,
      RD_KAFKA_V_TOPIC(a->fb_topic),
      RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),   /* murmur2 of the key */
      RD_KAFKA_V_KEY(key, strlen(key)),
      RD_KAFKA_V_VALUE(json, strlen(json)),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER(CTL_MSG_HEADER_NAME, CTL_MSG_HEADER_VALUE, -1),
      RD_KAFKA_V_HEADER("version", "1", -1),   /* Mia's feedback header */
      RD_KAFKA_V_OPAQUE(initial ? &initial_marker : NULL),
      RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    g_message("feedback not queued: %s", rd_kafka_err2str(err));
    return;
  }
  if (initial)
    a->initial_pending++;
}

static gboolean
on_heartbeat(gpointer data)
{
  Agent *a = data;
  if (a->mia) {
    publish_mia(a, FALSE);
    return G_SOURCE_CONTINUE;
  }
  GHashTableIter it;
  gpointer name;
  g_hash_table_iter_init(&it, a->states);
  while (g_hash_table_iter_next(&it, &name, NULL))
    publish(a, name, NULL, NULL, FALSE);
  g_debug("heartbeat resources=%u", g_hash_table_size(a->states));
  return G_SOURCE_CONTINUE;
}

/* ---- applying commands -------------------------------------------------- */

static gboolean
apply_signal(Agent *a, const char *verb, GError **error)
{
  int sig = SIGCONT;
  const char *name = "SIGCONT";
  if (g_str_equal(verb, "pause")) {
    sig = SIGSTOP;
    name = "SIGSTOP";
  } else if (g_str_equal(verb, "stop")) {
    sig = SIGTERM;
    name = "SIGTERM";
  } else if (g_str_equal(verb, "kill")) {
    sig = SIGKILL;   /* no chance to shut down gracefully: that is the point */
    name = "SIGKILL";
  }
  if (kill(a->signal_pid, sig) == 0)
    return TRUE;
  int saved = errno;
  g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved), "kill(%d, %s): %s",
              (int) a->signal_pid, name, g_strerror(saved));
  return FALSE;
}

static char **
exec_environ(const CtlCommandMsg *cmd)
{
  char **env = g_get_environ();
  env = g_environ_setenv(env, "CTLFS_RUNTIME", cmd->runtime, TRUE);
  env = g_environ_setenv(env, "CTLFS_RESOURCE", cmd->resource, TRUE);
  env = g_environ_setenv(env, "CTLFS_COMMAND_ID", cmd->id, TRUE);
  env = g_environ_setenv(env, "CTLFS_VERB", cmd->verb, TRUE);
  return env;
}

/* Logs what the child printed, one line per line, so that its output never
 * reaches our stdout (which carries only "ready"). */
static void
log_child_output(const char *stream, const char *text)
{
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (char **l = lines; *l != NULL; l++)
    if (**l != '\0') {
      g_autofree char *esc = g_strescape(*l, NULL);
      g_message("exec %s: %s", stream, esc);
    }
}

/* The last non-blank line of TEXT, escaped and cut short, or NULL. */
static char *
last_line(const char *text)
{
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (guint i = g_strv_length(lines); i-- > 0;) {
    g_strstrip(lines[i]);
    if (*lines[i] != '\0') {
      char *esc = g_strescape(lines[i], NULL);
      if (strlen(esc) > 200)
        esc[200] = '\0';
      return esc;
    }
  }
  return NULL;
}

/* Runs CMD VERB synchronously: commands are applied strictly in order, so
 * nothing else could be applied meanwhile anyway. */
static gboolean
apply_exec(Agent *a, const CtlCommandMsg *cmd, GError **error)
{
  g_autoptr(GStrvBuilder) b = g_strv_builder_new();
  g_strv_builder_addv(b, (const char **) a->exec_argv);
  g_strv_builder_add(b, cmd->verb);
  g_auto(GStrv) argv = g_strv_builder_end(b);
  g_auto(GStrv) env = exec_environ(cmd);
  g_autofree char *out = NULL, *err = NULL;
  int status;
  if (!g_spawn_sync(NULL, argv, env, G_SPAWN_SEARCH_PATH | G_SPAWN_STDIN_FROM_DEV_NULL,
                    NULL, NULL, &out, &err, &status, error))
    return FALSE;
  log_child_output("stdout", out);
  log_child_output("stderr", err);
  g_autoptr(GError) local = NULL;
  if (g_spawn_check_wait_status(status, &local))
    return TRUE;
  /* The command's own last words are what an operator wants in last_error. */
  g_autofree char *why = last_line(err);
  if (why != NULL)
    g_set_error(error, local->domain, local->code, "%s: %s", local->message, why);
  else
    g_propagate_error(error, g_steal_pointer(&local));
  return FALSE;
}

static gboolean
apply_verb(Agent *a, const CtlCommandMsg *cmd, GError **error)
{
  switch (a->apply) {
  case APPLY_SIGNAL:
    return apply_signal(a, cmd->verb, error);
  case APPLY_EXEC:
    return apply_exec(a, cmd, error);
  case APPLY_SIMULATE:
  default:
    return TRUE;
  }
}

/* Applies CMD to its resource (known to exist) and reports the outcome; TRUE
 * when the resource is then in the verb's state. */
static gboolean
apply_to(Agent *a, const CtlCommandMsg *cmd)
{
  const char *state = g_hash_table_lookup(a->states, cmd->resource);
  const char *target = ctl_verb_target(cmd->verb);
  if (g_str_equal(state, target)) {
    /* Already there: nothing to do, but ctlfs still needs to see the id. */
    g_message("applied id=%s resource=%s verb=%s state=%s (no change)",
              cmd->id, cmd->resource, cmd->verb, state);
    publish(a, cmd->resource, cmd->id, NULL, FALSE);
    return TRUE;
  }
  g_autoptr(GError) error = NULL;
  if (!apply_verb(a, cmd, &error)) {
    /* One line in the log and in last_error, whatever the reason says. */
    g_autofree char *why = g_strdelimit(g_strdup(error->message), "\r\n", ' ');
    g_autofree char *text = g_strdup_printf("apply failed: %s", why);
    g_message("failed id=%s resource=%s verb=%s state=%s: %s",
              cmd->id, cmd->resource, cmd->verb, state, text);
    publish(a, cmd->resource, cmd->id, text, FALSE);
    return FALSE;
  }
  g_hash_table_insert(a->states, g_strdup(cmd->resource), g_strdup(target));
  g_message("applied id=%s resource=%s verb=%s state=%s", cmd->id, cmd->resource, cmd->verb, target);
  publish(a, cmd->resource, cmd->id, NULL, FALSE);
  return TRUE;
}

static void
apply_command(Agent *a, const CtlCommandMsg *cmd)
{
  if (a->flows == NULL || !agent_flows_apply(a->flows, cmd))
    apply_to(a, cmd);
}

/* The flows' way to the agent (agent-flow.h). */
static void
publish_flow(const char *resource, const char *command_id, const char *message, gpointer data)
{
  publish(data, resource, command_id, message, FALSE);
}

static gboolean
apply_flow_verb(const CtlCommandMsg *cmd, gpointer data)
{
  return apply_to(data, cmd);
}

/* Flows are simulated only when everything is: with signal or exec, a flow's
 * verbs are applied as any resource's. */
static void
start_flows(Agent *a)
{
  static const AgentFlowCallbacks cb = { .publish = publish_flow, .apply = apply_flow_verb };
  if (a->apply == APPLY_SIMULATE)
    a->flows = agent_flows_new(a->states, a->opt.warmup_ms, a->opt.idle_ms, &cb, a);
}

/* Is this resource ours? With no --resource, every resource is, and is
 * created in the initial state the first time a command names it. */
static gboolean
claim_resource(Agent *a, const char *resource)
{
  if (g_hash_table_contains(a->states, resource))
    return TRUE;
  if (a->opt.resources != NULL)
    return FALSE;
  g_hash_table_insert(a->states, g_strdup(resource), g_strdup(a->opt.initial_state));
  g_message("resource=%s added state=%s", resource, a->opt.initial_state);
  return TRUE;
}

/* CMD applied to RESOURCE as VERB (a copy: the id and issuer are CMD's). */
static void
apply_as(Agent *a, const CtlCommandMsg *cmd, const char *resource, const char *verb)
{
  CtlCommandMsg one = *cmd;
  one.resource = (char *) resource;
  one.verb = (char *) verb;
  apply_command(a, &one);
}

/* A runtime-wide command: the runtime's state, applied to every resource
 * that has none of its own; each reports with the command's id. */
static void
apply_runtime_wide(Agent *a, const CtlCommandMsg *cmd)
{
  g_free(a->runtime_state);
  a->runtime_state = g_strdup(ctl_verb_target(cmd->verb));
  g_autofree gpointer *names = g_hash_table_get_keys_as_array(a->states, NULL);
  guint followers = 0;
  for (guint i = 0; names[i]; i++)
    if (!g_hash_table_contains(a->overrides, names[i])) {
      apply_as(a, cmd, names[i], cmd->verb);
      followers++;
    }
  g_message("runtime-wide id=%s verb=%s state=%s resources=%u", cmd->id, cmd->verb,
            a->runtime_state, followers);
}

/* A command to one resource: inherit makes it follow the runtime's state
 * again; any other verb gives it a state of its own. */
static void
apply_resource(Agent *a, const CtlCommandMsg *cmd)
{
  if (g_strcmp0(cmd->verb, CTL_VERB_INHERIT) != 0) {
    g_hash_table_add(a->overrides, g_strdup(cmd->resource));
    apply_command(a, cmd);
    return;
  }
  g_hash_table_remove(a->overrides, cmd->resource);
  apply_as(a, cmd, cmd->resource, g_strcmp0(a->runtime_state, "paused") == 0 ? "pause" : "resume");
}

static void
handle_command(Agent *a, const CtlCommandMsg *cmd)
{
  if (!g_str_equal(cmd->runtime, a->opt.runtime)) {
    g_message("skipped id=%s: runtime %s is not %s", cmd->id, cmd->runtime, a->opt.runtime);
    return;
  }
  if (cmd->resource && !claim_resource(a, cmd->resource)) {
    g_message("skipped id=%s: resource %s is not handled here", cmd->id, cmd->resource);
    return;
  }
  const char *resource = cmd->resource ? cmd->resource : "*";
  if (g_hash_table_contains(a->seen, cmd->id)) {
    g_message("duplicate id=%s resource=%s verb=%s: not applied again", cmd->id, resource, cmd->verb);
    return;
  }
  g_hash_table_add(a->seen, g_strdup(cmd->id));

  if (cmd->expires_at_ms != 0 && ctl_now_ms() > cmd->expires_at_ms) {
    char when[CTL_TIME_LEN];
    g_message("expired id=%s resource=%s verb=%s expires_at=%s: not applied", cmd->id,
              resource, cmd->verb, ctl_time_format(cmd->expires_at_ms, when));
    if (cmd->resource)
      publish(a, cmd->resource, cmd->id, "command expired before it was received", FALSE);
    return;
  }
  if (cmd->resource)
    apply_resource(a, cmd);
  else
    apply_runtime_wide(a, cmd);
}

/* A version we do not know may mean a format we do not know; no header at all
 * is accepted so that a plain kcat can drive the agent. */
static gboolean
version_ok(const rd_kafka_message_t *m)
{
  rd_kafka_headers_t *hdrs;
  const void *value;
  size_t size;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR
      || rd_kafka_header_get_last(hdrs, CTL_MSG_HEADER_NAME, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return TRUE;
  return value != NULL && size == strlen(CTL_MSG_HEADER_VALUE)
      && memcmp(value, CTL_MSG_HEADER_VALUE, size) == 0;
}

static gboolean claim_resource(Agent *a, const char *resource);
static gboolean apply_verb(Agent *a, const CtlCommandMsg *cmd, GError **error);

/* --dialect=mia: a state message is the runtime's whole desired state. Each
 * of our resources goes where the override puts it, as a Fast Data workload
 * would: the artifact's own override (by its id, or its name), else the
 * pipeline's state (by id or name), else the runtime-wide top state. The
 * ctlfs command riding along only names the id to dedup by. */
static void
apply_mia_state(Agent *a, const CtlMiaState *s, const char *id)
{
  g_autofree gpointer *names = g_hash_table_get_keys_as_array(a->states, NULL);
  for (guint i = 0; names[i] != NULL; i++) {
    const char *state = g_hash_table_lookup(a->states, names[i]);
    g_autofree char *aid = mia_artifact_id(a, names[i]);
    gboolean pause = ctl_mia_state_pauses_by_id(s, a->opt.mia_pipeline_id, a->opt.runtime, aid,
                                                names[i]);
    CtlCommandMsg cmd = { .id = (char *) id, .runtime = a->opt.runtime, .resource = names[i],
                          .verb = pause ? "pause" : "resume" };
    const char *target = ctl_verb_target(cmd.verb);
    if (g_str_equal(state, target))
      continue;
    g_autoptr(GError) error = NULL;
    if (!apply_verb(a, &cmd, &error)) {
      g_message("failed id=%s resource=%s verb=%s state=%s: apply failed: %s", id,
                (char *) names[i], cmd.verb, state, error->message);
      continue;
    }
    g_message("applied id=%s resource=%s verb=%s state=%s", id, (char *) names[i], cmd.verb, target);
    g_hash_table_insert(a->states, g_strdup(names[i]), g_strdup(target));
  }
}

static void
handle_mia_message(Agent *a, const rd_kafka_message_t *m)
{
  CtlMiaState s;
  g_autoptr(GError) error = NULL;
  if (!ctl_mia_state_decode(m->payload, m->len, FALSE, &s, &error)) {
    g_message("malformed command offset=%" G_GINT64_FORMAT " partition=%d: %s",
              (gint64) m->offset, (int) m->partition, error->message);
    return;
  }
  /* Without a ctlfs id (a Mia Control Plane's own message) the place is the
   * identity: the consumer never reads one offset of a partition twice in a
   * process. */
  g_autofree char *id = s.has_ctlfs ? g_strdup(s.ctlfs.id)
                                    : g_strdup_printf("offset-%" G_GINT64_FORMAT "-partition-%d",
                                                      (gint64) m->offset, (int) m->partition);
  if (s.has_ctlfs && !g_str_equal(s.ctlfs.runtime, a->opt.runtime)) {
    g_message("skipped id=%s: runtime %s is not %s", id, s.ctlfs.runtime, a->opt.runtime);
  } else if (g_hash_table_contains(a->seen, id)) {
    g_message("duplicate id=%s: not applied again", id);
  } else if (s.pipelines == NULL) {
    g_message("skipped id=%s: not a Fast Data state message", id);
  } else if (s.ctlfs.expires_at_ms != 0 && ctl_now_ms() > s.ctlfs.expires_at_ms) {
    g_hash_table_add(a->seen, g_strdup(id));
    g_message("expired id=%s: not applied", id);
  } else {
    g_hash_table_add(a->seen, g_strdup(id));
    const CtlMiaNode *p = ctl_mia_state_pipeline(&s, a->opt.mia_pipeline_id, a->opt.runtime);
    GHashTableIter it;
    gpointer v;
    if (p && p->override) {
      g_hash_table_iter_init(&it, p->override);
      while (g_hash_table_iter_next(&it, NULL, &v))
        if (ctl_name_valid(((CtlMiaNode *) v)->name))
          claim_resource(a, ((CtlMiaNode *) v)->name);
    }
    apply_mia_state(a, &s, id);
    publish_mia(a, FALSE);   /* also when nothing changed: ctlfs settles by state */
  }
  ctl_mia_state_clear(&s);
}

static void
handle_message(Agent *a, const rd_kafka_message_t *m)
{
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
      g_message("consumer: %s", rd_kafka_message_errstr(m));
    return;
  }
  /* Whatever becomes of it, this offset is done: a restart resumes after it. */
  if (m->partition >= 0 && (guint) m->partition < a->positions->len)
    g_array_index(a->positions, Position, m->partition).next = m->offset + 1;
  if (!version_ok(m)) {
    g_message("skipped offset=%" G_GINT64_FORMAT " partition=%d: unsupported %s header",
              (gint64) m->offset, (int) m->partition, CTL_MSG_HEADER_NAME);
    return;
  }
  if (a->mia) {
    handle_mia_message(a, m);
    return;
  }
  CtlCommandMsg cmd;
  g_autoptr(GError) error = NULL;
  if (!ctl_command_msg_decode(m->payload, m->len, &cmd, &error)) {
    g_message("malformed command offset=%" G_GINT64_FORMAT " partition=%d: %s",
              (gint64) m->offset, (int) m->partition, error->message);
    return;
  }
  handle_command(a, &cmd);
  ctl_command_msg_clear(&cmd);
}

/* ---- Kafka plumbing ----------------------------------------------------- */

/* The partitions whose next offset has not been committed yet (FINAL) or
 * not yet been sent in a commit, each with that next offset. */
static rd_kafka_topic_partition_list_t *
positions_behind(Agent *a, gboolean final)
{
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(a->positions->len);
  for (guint p = 0; p < a->positions->len; p++) {
    Position *pos = &g_array_index(a->positions, Position, p);
    gint64 known = final ? pos->committed : pos->requested;
    if (pos->next >= 0 && pos->next != known)
      rd_kafka_topic_partition_list_add(l, a->cmd_topic, (int32_t) p)->offset = pos->next;
  }
  return l;
}

/* "P:OFFSET ..." of a list, for the log. */
static char *
positions_text(const rd_kafka_topic_partition_list_t *l)
{
  GString *s = g_string_new(NULL);
  for (int i = 0; i < l->cnt; i++)
    g_string_append_printf(s, "%s%d:%" G_GINT64_FORMAT, i ? " " : "",
                           (int) l->elems[i].partition, (gint64) l->elems[i].offset);
  return g_string_free(s, FALSE);
}

static void
commit_async(Agent *a)
{
  rd_kafka_topic_partition_list_t *l = positions_behind(a, FALSE);
  if (l->cnt > 0) {
    for (int i = 0; i < l->cnt; i++)
      g_array_index(a->positions, Position, l->elems[i].partition).requested = l->elems[i].offset;
    rd_kafka_resp_err_t err = rd_kafka_commit(a->consumer, l, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      g_autofree char *at = positions_text(l);
      g_message("commit %s: %s", at, rd_kafka_err2str(err));
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* At shutdown: like a synchronous commit, but bounded, so that an unreachable
 * coordinator cannot keep a stopping agent alive. */
static void
commit_final(Agent *a)
{
  rd_kafka_topic_partition_list_t *l = positions_behind(a, TRUE);
  g_autofree char *at = positions_text(l);
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (l->cnt > 0) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->consumer);
    err = rd_kafka_commit_queue(a->consumer, l, q, NULL, NULL);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_event_t *ev = rd_kafka_queue_poll(q, STOP_TIMEOUT_MS);
      err = ev ? rd_kafka_event_error(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;
      if (ev)
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
  }
  rd_kafka_topic_partition_list_destroy(l);
  if (*at == '\0')
    return;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_message("final commit %s: %s", at, rd_kafka_err2str(err));
  else
    g_message("committed %s", at);
}

static void
on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
  Agent *a = opaque;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    /* Not retried here: the next command or the final commit carries it. */
    g_message("commit failed: %s", rd_kafka_err2str(err));
    return;
  }
  for (int i = 0; i < offsets->cnt; i++) {
    rd_kafka_topic_partition_t *e = &offsets->elems[i];
    if (e->err != RD_KAFKA_RESP_ERR_NO_ERROR || e->partition < 0
        || (guint) e->partition >= a->positions->len)
      continue;
    Position *pos = &g_array_index(a->positions, Position, e->partition);
    pos->committed = MAX(pos->committed, e->offset);
  }
}

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
  Agent *a = opaque;
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_message("feedback delivery failed: %s", rd_kafka_err2str(m->err));
  if (m->_private == &initial_marker) {
    /* Delivered or given up on: either way startup is over. */
    a->initial_pending--;
    maybe_ready(a);
  }
}

static void
on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
  Agent *a = opaque;
  g_message("kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    /* An idempotent producer that hit a fatal error cannot send again; exit
     * and let a supervisor start a fresh one. */
    char why[512];
    rd_kafka_fatal_error(rk, why, sizeof why);
    g_message("fatal: %s", why);
    a->exit_status = 1;
    g_main_loop_quit(a->loop);
  }
}

/* Called from librdkafka's threads; g_log is thread-safe. Connection
 * failures ("FAIL") also reach on_kafka_error(), so they are said once. */
static void
on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
  if (level <= 4 && !g_str_equal(fac, "FAIL"))
    g_message("rdkafka %s: %s", fac, buf);
  else
    g_debug("rdkafka %s: %s", fac, buf);
}

static gboolean
conf_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
  char errstr[512];
  if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) == RD_KAFKA_CONF_OK)
    return TRUE;
  g_message("kafka config %s=%s: %s", key, value, errstr);
  return FALSE;
}

static rd_kafka_conf_t *
base_conf(Agent *a)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  conf_set(conf, "bootstrap.servers", a->opt.brokers);
  conf_set(conf, "client.id", "ctlfs-agent");
  /* Back within a second of the broker: librdkafka's default backoff grows
   * to 10 s, which a runtime waiting for commands should not sit out. */
  conf_set(conf, "reconnect.backoff.ms", "50");
  conf_set(conf, "reconnect.backoff.max.ms", "1000");
  rd_kafka_conf_set_opaque(conf, a);
  rd_kafka_conf_set_error_cb(conf, on_kafka_error);
  rd_kafka_conf_set_log_cb(conf, on_kafka_log);
  return conf;
}

static rd_kafka_t *
new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf, gboolean conf_ok)
{
  char errstr[512];
  rd_kafka_t *rk = conf_ok ? rd_kafka_new(type, conf, errstr, sizeof errstr) : NULL;
  if (rk == NULL) {
    if (conf_ok)
      g_message("kafka: %s", errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

static rd_kafka_t *
new_producer(Agent *a)
{
  rd_kafka_conf_t *conf = base_conf(a);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  gboolean ok = conf_set(conf, "enable.idempotence", "true")
             && conf_set(conf, "acks", "all")
             && conf_set(conf, "linger.ms", "0")
             /* Keyed by resource to the partition Java clients and kafkajs
              * pick (murmur2 of the key): one resource's reports stay in one
              * partition, in the order they were sent, whoever reads them. */
             && conf_set(conf, "partitioner", "murmur2_random");
  return new_handle(RD_KAFKA_PRODUCER, conf, ok);
}

static rd_kafka_t *
new_consumer(Agent *a)
{
  rd_kafka_conf_t *conf = base_conf(a);
  rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
  gboolean ok = conf_set(conf, "group.id", a->opt.group)
             && conf_set(conf, "enable.auto.commit", "false")
             && conf_set(conf, "enable.auto.offset.store", "false")
             && conf_set(conf, "auto.offset.reset", "earliest")
             && conf_set(conf, "allow.auto.create.topics", "true")
             && conf_set(conf, "fetch.wait.max.ms", "5")
             /* The group is for commits only (partitions are assigned, not
              * subscribed), yet a destroy with the broker gone waits out the
              * session timeout (seen: 45 s, the default, after SIGTERM):
              * Kafka's smallest (group.min.session.timeout.ms), and requests
              * timing out after 10 s rather than a minute. */
             && conf_set(conf, "session.timeout.ms", "6000")
             && conf_set(conf, "socket.timeout.ms", "10000");
  rd_kafka_t *rk = new_handle(RD_KAFKA_CONSUMER, conf, ok);
  if (rk != NULL)
    rd_kafka_poll_set_consumer(rk);   /* one queue: messages, errors, commit results */
  return rk;
}

/* The wakes' calls (queue-wake.h): each serves its queue until it is empty. */
static void
drain_consumer(gpointer data)
{
  Agent *a = data;
  rd_kafka_message_t *m;
  while ((m = rd_kafka_consumer_poll(a->consumer, 0)) != NULL) {
    handle_message(a, m);
    rd_kafka_message_destroy(m);
  }
  commit_async(a);
}

static void
drain_producer(gpointer data)
{
  Agent *a = data;
  while (rd_kafka_poll(a->producer, 0) > 0)
    ;
}

static CtlQueueWake *
queue_wake(rd_kafka_queue_t *queue, CtlQueueWakeFunc fn, Agent *a)
{
  g_autoptr(GError) error = NULL;
  CtlQueueWake *w = ctl_queue_wake_new(queue, fn, a, &error);
  if (w == NULL)
    g_message("pipe: %s", error->message);
  return w;
}

/* Each new partition starts from the group's committed offset, or from the
 * beginning when there is none: RD_KAFKA_OFFSET_STORED with
 * auto.offset.reset=earliest is exactly that, and unlike rd_kafka_committed()
 * it does not block on the group coordinator. So a partition added later
 * loses none of the commands produced to it before the agent found it. Only
 * the new partitions are added: a whole-list rd_kafka_assign() would restart
 * the ones being read. */
static gboolean
on_partitions(int partitions, gpointer data)
{
  Agent *a = data;
  guint had = a->positions->len;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions - (int) had);
  for (int p = (int) had; p < partitions; p++)
    rd_kafka_topic_partition_list_add(l, a->cmd_topic, p)->offset = RD_KAFKA_OFFSET_STORED;
  rd_kafka_error_t *err = rd_kafka_incremental_assign(a->consumer, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (err != NULL) {
    g_message("assign %s: %s", a->cmd_topic, rd_kafka_error_string(err));
    rd_kafka_error_destroy(err);
    return FALSE;   /* offered again by the next lookup */
  }
  Position none = { -1, -1, -1 };
  while (a->positions->len < (guint) partitions)
    g_array_append_val(a->positions, none);
  g_message("consuming %s partitions=%d", a->cmd_topic, partitions);
  a->assigned = TRUE;
  maybe_ready(a);
  return TRUE;
}

/* Asks for the feedback topic's metadata now (creating the topic if need be).
 * Otherwise the first feedback waits for librdkafka's once-a-second scan of
 * unknown topics, and "ready" comes a second late. Bounded: with no broker
 * the agent still starts, and delivers when one appears. */
static void
prime_feedback_topic(Agent *a)
{
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(a->producer, a->fb_topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(a->producer, 0, rkt, &md, START_TIMEOUT_MS);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    g_message("metadata %s: %s", a->fb_topic, rd_kafka_err2str(err));
  if (md != NULL)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
}

static gboolean
start_kafka(Agent *a)
{
  a->producer = new_producer(a);
  if (a->producer == NULL
      || !(a->pwake = queue_wake(rd_kafka_queue_get_main(a->producer), drain_producer, a)))
    return FALSE;
  prime_feedback_topic(a);
  a->consumer = new_consumer(a);
  if (a->consumer == NULL
      || !(a->cwake = queue_wake(rd_kafka_queue_get_consumer(a->consumer), drain_consumer, a)))
    return FALSE;
  /* Assigned once their count is known (on_partitions); "ready" waits. */
  a->partitions = agent_partitions_new(a->consumer, a->cmd_topic, a->opt.refresh_ms,
                                       on_partitions, a);
  return TRUE;
}

/* ---- life cycle --------------------------------------------------------- */

static gboolean
on_signal(gpointer data)
{
  Agent *a = data;
  g_message("signal: stopping");
  g_main_loop_quit(a->loop);
  return G_SOURCE_CONTINUE;
}

/* Restoring: the newest command of each resource, in topic order (one
 * resource's commands share a partition: they are keyed by its name). */
typedef struct {
  Agent      *agent;
  GHashTable *newest;   /* resource -> verb */
} Restore;

static void
restore_message(const rd_kafka_message_t *m, gpointer data)
{
  Restore *r = data;
  CtlCommandMsg cmd;
  g_autoptr(GError) error = NULL;
  if (!version_ok(m) || !ctl_command_msg_decode(m->payload, m->len, &cmd, &error)) {
    g_message("restore: offset=%" G_GINT64_FORMAT " partition=%d skipped: %s",
              (gint64) m->offset, (int) m->partition, error ? error->message : "unsupported version");
    return;
  }
  if (g_str_equal(cmd.runtime, r->agent->opt.runtime) && ctl_verb_target(cmd.verb) != NULL)
    g_hash_table_replace(r->newest, g_strdup(cmd.resource), g_strdup(cmd.verb));
  ctl_command_msg_clear(&cmd);
}

/* The --resource ones in --initial-state; then, for a runtime that keeps its
 * state, before its first report, each resource
 * takes up the state its newest command asked for (applied as a command
 * would be, with --apply), so that a restart reports what was commanded
 * rather than --initial-state. The mia dialect's state messages are not
 * read back (it reports --initial-state). */
static void
restore_states(Agent *a)
{
  for (char **r = a->opt.resources; r != NULL && *r != NULL; r++)
    if (!g_hash_table_contains(a->states, *r))
      g_hash_table_insert(a->states, g_strdup(*r), g_strdup(a->opt.initial_state));
  if (a->opt.no_restore || a->mia)
    return;
  g_autoptr(GHashTable) newest = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  Restore r = { a, newest };
  g_autoptr(GError) error = NULL;
  if (!agent_restore_read(a->opt.brokers, a->cmd_topic, START_TIMEOUT_MS, restore_message,
                          &r, &error))
    g_message("restore: %s (what was read is taken up)", error->message);
  GHashTableIter it;
  gpointer name, verb;
  g_hash_table_iter_init(&it, newest);
  while (g_hash_table_iter_next(&it, &name, &verb)) {
    if (!claim_resource(a, name))
      continue;
    const char *target = ctl_verb_target(verb);
    if (g_str_equal(g_hash_table_lookup(a->states, name), target))
      continue;
    CtlCommandMsg cmd = { .id = (char *) "restore", .runtime = a->opt.runtime,
                          .resource = name, .verb = verb };
    g_autoptr(GError) local = NULL;
    if (!apply_verb(a, &cmd, &local)) {
      g_message("restore resource=%s verb=%s failed: %s", (char *) name, (char *) verb,
                local->message);
      continue;
    }
    g_hash_table_insert(a->states, g_strdup(name), g_strdup(target));
    g_message("restored resource=%s state=%s", (char *) name, target);
  }
}

static void
publish_initial(Agent *a)
{
  GHashTableIter it;
  gpointer name, state;
  g_hash_table_iter_init(&it, a->states);
  while (g_hash_table_iter_next(&it, &name, &state)) {
    g_message("resource=%s state=%s (initial)", (char *) name, (char *) state);
    if (!a->mia)
      publish(a, name, NULL, NULL, TRUE);
  }
  if (a->mia && g_hash_table_size(a->states) > 0)
    publish_mia(a, TRUE);
}

static void
agent_init(Agent *a)
{
  memset(a, 0, sizeof *a);
  a->states = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  a->overrides = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

  a->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  a->positions = g_array_new(FALSE, FALSE, sizeof(Position));
  a->loop = g_main_loop_new(NULL, FALSE);
}

static void
stop_kafka(Agent *a)
{
  a->ready = TRUE;   /* a late initial delivery must not print "ready" now */
  /* Its thread may be inside rd_kafka_metadata() on the consumer. */
  g_clear_pointer(&a->partitions, agent_partitions_free);
  if (a->consumer != NULL) {
    commit_final(a);
    g_clear_pointer(&a->cwake, ctl_queue_wake_free);
    ctl_kafka_consumer_close(a->consumer, STOP_TIMEOUT_MS);
    a->consumer = NULL;
  }
  g_clear_pointer(&a->pwake, ctl_queue_wake_free);
  if (a->producer != NULL) {
    if (rd_kafka_flush(a->producer, STOP_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
      g_message("%d feedback messages not delivered at exit", rd_kafka_outq_len(a->producer));
    rd_kafka_destroy(a->producer);
    a->producer = NULL;
  }
}

static void
agent_clear(Agent *a)
{
  g_clear_handle_id(&a->heartbeat, g_source_remove);
  g_clear_pointer(&a->flows, agent_flows_free);   /* their timers go with them */
  /* The signal sources go last: while they exist GLib keeps its handler
   * installed, so a second SIGTERM cannot cut the bounded shutdown short. */
  stop_kafka(a);
  g_clear_handle_id(&a->sigterm, g_source_remove);
  g_clear_handle_id(&a->sigint, g_source_remove);
  g_hash_table_unref(a->states);
  g_hash_table_unref(a->overrides);
  g_free(a->runtime_state);
  g_hash_table_unref(a->seen);
  g_array_unref(a->positions);
  g_main_loop_unref(a->loop);
  g_strfreev(a->exec_argv);
  g_free(a->cmd_topic);
  g_free(a->fb_topic);
  Options *o = &a->opt;
  g_free(o->brokers);
  g_free(o->runtime);
  g_strfreev(o->resources);
  g_free(o->apply);
  g_free(o->topic_prefix);
  g_free(o->group);
  g_free(o->initial_state);
  g_free(o->mia_pipeline_id);
  g_free(o->dialect);
  g_free(o->log_file);
}

/* ---- logging: --quiet, --log-file ---------------------------------------- */

static gboolean log_quiet;

/* Backgrounded with `&`, the agent must not write over the user's terminal:
 * --quiet keeps warnings and errors, --log-file sends everything to a file
 * (whose open failure is a usage error). */
static GLogWriterOutput
agent_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
  if (log_quiet && !(level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)))
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_default(level, fields, n, data);
}

static gboolean
setup_logging(const Options *o)
{
  log_quiet = o->quiet;
  if (o->log_file) {
    int fd = open(o->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      fprintf(stderr, "ctlfs-agent: --log-file %s: %s\n", o->log_file, g_strerror(errno));
      return FALSE;
    }
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  g_log_set_writer_func(agent_log_writer, NULL, NULL);
  return TRUE;
}

int
main(int argc, char **argv)
{
  g_log_writer_default_set_use_stderr(TRUE);
  Agent a;
  agent_init(&a);
  if (!parse_options(&a, &argc, &argv) || !setup_logging(&a.opt)) {
    agent_clear(&a);
    return 2;
  }
  start_flows(&a);
  a.sigterm = g_unix_signal_add(SIGTERM, on_signal, &a);
  a.sigint = g_unix_signal_add(SIGINT, on_signal, &a);
  if (!start_kafka(&a)) {
    agent_clear(&a);
    return 1;
  }
  restore_states(&a);
  publish_initial(&a);
  maybe_ready(&a);   /* with no resources there is nothing to wait for */
  if (a.opt.heartbeat_ms > 0)
    a.heartbeat = g_timeout_add(a.opt.heartbeat_ms, on_heartbeat, &a);
  /* What was queued before the wakes existed is served on the loop's first
   * turn (queue-wake.h). */
  g_main_loop_run(a.loop);

  int status = a.exit_status;
  agent_clear(&a);
  g_message("stopped");
  return status;
}
