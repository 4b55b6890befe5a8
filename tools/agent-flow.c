/* The flows' simulated lifecycle (agent-flow.h). Its log lines are
 * ctlfs-agent's: the tests read them. */
#define G_LOG_DOMAIN "ctlfs-agent"
#include "agent-flow.h"

struct AgentFlows {
  GHashTable        *states;    /* the agent's, not owned */
  int                warmup_ms;
  int                idle_ms;
  AgentFlowCallbacks cb;
  gpointer           data;
  GHashTable        *flows;     /* resource -> Flow*: those named by a command with a mode */
};

/* A flow: its steps go through starting and stopping on a timer, and sleep
 * when ordinary and idle. */
typedef struct {
  AgentFlows *fl;
  char  *name;
  char  *mode;         /* ordinary | realtime, as the last command said */
  char  *command_id;   /* the command under way, named by the reports on the way */
  char  *verb;         /* ... and its verb */
  guint  timer;        /* the next step of the lifecycle, 0: none */
  gboolean underway;   /* a start or stop has not reached its state yet */
  GPtrArray *waiting;  /* earlier commands of the same verb, reported with it */
} Flow;

static void
flow_free(Flow *f)
{
  g_clear_handle_id(&f->timer, g_source_remove);
  g_free(f->name);
  g_free(f->mode);
  g_free(f->command_id);
  g_free(f->verb);
  g_ptr_array_unref(f->waiting);
  g_free(f);
}

AgentFlows *
agent_flows_new(GHashTable *states, int warmup_ms, int idle_ms, const AgentFlowCallbacks *cb,
                gpointer data)
{
  AgentFlows *fl = g_new0(AgentFlows, 1);
  fl->states = states;
  fl->warmup_ms = warmup_ms;
  fl->idle_ms = idle_ms;
  fl->cb = *cb;
  fl->data = data;
  fl->flows = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) flow_free);
  return fl;
}

void
agent_flows_free(AgentFlows *fl)
{
  if (fl == NULL)
    return;
  g_hash_table_unref(fl->flows);   /* their timers go with them */
  g_free(fl);
}

static const char *
flow_state(Flow *f)
{
  return g_hash_table_lookup(f->fl->states, f->name);
}

static void
flow_publish(Flow *f, const char *command_id, const char *message)
{
  f->fl->cb.publish(f->name, command_id, message, f->fl->data);
}

/* The flow CMD names, its mode now CMD's. */
static Flow *
flow_for(AgentFlows *fl, const CtlCommandMsg *cmd)
{
  Flow *f = g_hash_table_lookup(fl->flows, cmd->resource);
  if (f == NULL) {
    f = g_new0(Flow, 1);
    f->fl = fl;
    f->name = g_strdup(cmd->resource);
    f->waiting = g_ptr_array_new_with_free_func(g_free);
    g_hash_table_insert(fl->flows, g_strdup(cmd->resource), f);
  }
  g_free(f->mode);
  f->mode = g_strdup(cmd->mode);
  return f;
}

/* Moves the flow to STATE and reports it, naming the command under way. */
static void
flow_report(Flow *f, const char *state, gboolean with_command)
{
  g_hash_table_insert(f->fl->states, g_strdup(f->name), g_strdup(state));
  g_message("flow=%s state=%s mode=%s", f->name, state, f->mode);
  flow_publish(f, with_command ? f->command_id : NULL, NULL);
}

static gboolean on_flow_idle(gpointer data);

/* A realtime flow never sleeps: that is the point of real-time mode. */
static void
flow_arm_idle(Flow *f)
{
  if (f->timer == 0 && f->fl->idle_ms > 0 && g_strcmp0(f->mode, "ordinary") == 0
      && g_strcmp0(flow_state(f), "running") == 0)
    f->timer = g_timeout_add(f->fl->idle_ms, on_flow_idle, f);
}

static gboolean
on_flow_asleep(gpointer data)
{
  Flow *f = data;
  f->timer = 0;
  flow_report(f, "sleeping", FALSE);
  return G_SOURCE_REMOVE;
}

/* The orchestrator saw the steps idle: they shut down and sleep until the
 * next start. Nobody asked for it, so no command is named. */
static gboolean
on_flow_idle(gpointer data)
{
  Flow *f = data;
  flow_report(f, "shutting-down", FALSE);
  f->timer = g_timeout_add(0, on_flow_asleep, f);
  return G_SOURCE_REMOVE;
}

/* The step reached its state: the command under way is done, and so are the
 * earlier ones of the same verb that it replaced. */
static void
flow_arrived(Flow *f, const char *state)
{
  f->timer = 0;
  f->underway = FALSE;
  flow_report(f, state, TRUE);
  for (guint i = 0; i < f->waiting->len; i++)
    flow_publish(f, f->waiting->pdata[i], NULL);
  g_ptr_array_set_size(f->waiting, 0);
}

static gboolean
on_flow_warm(gpointer data)
{
  Flow *f = data;
  flow_arrived(f, "running");
  flow_arm_idle(f);
  return G_SOURCE_REMOVE;
}

static gboolean
on_flow_stopped(gpointer data)
{
  flow_arrived(data, "stopped");
  return G_SOURCE_REMOVE;
}

/* A command arrives while a start or stop is under way. One of the same verb
 * only restarts the step: the earlier command waits to be reported with it.
 * Any other replaces it: the earlier ones are returned, to be reported as not
 * done once the new command is applied (ctlfs marks them failed). */
static GPtrArray *
flow_interrupt(Flow *f, const CtlCommandMsg *cmd)
{
  GPtrArray *replaced = NULL;
  if (f->underway && f->command_id) {
    g_ptr_array_add(f->waiting, g_steal_pointer(&f->command_id));
    if (!g_str_equal(cmd->verb, f->verb)) {
      replaced = f->waiting;
      f->waiting = g_ptr_array_new_with_free_func(g_free);
    }
  }
  f->underway = FALSE;
  g_clear_handle_id(&f->timer, g_source_remove);
  return replaced;
}

static void
flow_report_replaced(Flow *f, GPtrArray *replaced, const CtlCommandMsg *by)
{
  g_autofree char *why = g_strdup_printf("replaced by command %s (%s) before it completed",
                                         by->id, by->verb);
  for (guint i = 0; i < replaced->len; i++)
    flow_publish(f, replaced->pdata[i], why);
  g_ptr_array_unref(replaced);
}

/* kill: stopped at once, with no stopping on the way, whatever was under
 * way (flow_interrupt reported it replaced). */
static void
flow_kill(Flow *f)
{
  g_message("killed flow=%s (no graceful shutdown)", f->name);
  flow_arrived(f, "stopped");
}

/* start: starting, running after the warm-up; stop: stopping, then stopped
 * (on the next turn of the loop, so that both are reported); kill: stopped.
 * FALSE for the other verbs, which are applied as for any resource. */
static gboolean
flow_begin(Flow *f, const CtlCommandMsg *cmd)
{
  gboolean start = g_str_equal(cmd->verb, "start");
  gboolean kill = g_str_equal(cmd->verb, "kill");
  if (!start && !kill && !g_str_equal(cmd->verb, "stop"))
    return FALSE;
  g_free(f->command_id);
  f->command_id = g_strdup(cmd->id);
  g_free(f->verb);
  f->verb = g_strdup(cmd->verb);
  g_message("applied id=%s resource=%s verb=%s mode=%s", cmd->id, f->name, cmd->verb, f->mode);
  if (g_str_equal(flow_state(f), start ? "running" : "stopped")) {
    flow_publish(f, cmd->id, NULL);   /* already there */
    flow_arm_idle(f);
    return TRUE;
  }
  if (kill) {
    flow_kill(f);
    return TRUE;
  }
  flow_report(f, start ? "starting" : "stopping", TRUE);
  f->underway = TRUE;
  f->timer = start ? g_timeout_add(f->fl->warmup_ms, on_flow_warm, f)
                   : g_timeout_add(0, on_flow_stopped, f);
  return TRUE;
}

gboolean
agent_flows_apply(AgentFlows *fl, const CtlCommandMsg *cmd)
{
  if (cmd->mode == NULL)
    return FALSE;
  Flow *f = flow_for(fl, cmd);
  GPtrArray *replaced = flow_interrupt(f, cmd);
  if (!flow_begin(f, cmd) && fl->cb.apply(cmd, fl->data))
    flow_arm_idle(f);
  if (replaced)
    flow_report_replaced(f, replaced, cmd);
  return TRUE;
}
