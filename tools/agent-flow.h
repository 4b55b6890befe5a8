/* ctlfs-agent's flows: the resources of a lifecycle runtime (seed 001,
 * elastic.io), simulated for --apply=simulate.
 *
 * A command with a mode is a flow's. Its start goes through starting to
 * running after the warm-up; its stop through stopping to stopped on the
 * next turn of the loop; each state on the way is reported, naming the
 * command. Other verbs are applied as for any resource. An ordinary flow
 * running for the idle time shuts down and sleeps by itself, reported with
 * no command; a realtime one never does.
 *
 * A command that arrives while a start or stop is under way interrupts it.
 * One of the same verb restarts the step, and the earlier command is reported
 * done along with it. Any other is applied, then the earlier command is
 * reported "replaced by command ID (VERB) before it completed" (ctlfs marks
 * it failed).
 *
 * Everything runs on the GLib main loop (the steps are timeouts). */
#pragma once
#include <glib.h>

#include "message.h"

typedef struct AgentFlows AgentFlows;

typedef struct {
  /* Sends RESOURCE's state, as the states table holds it, as feedback naming
   * COMMAND_ID (NULL: none) with MESSAGE (NULL: none). */
  void     (*publish)(const char *resource, const char *command_id, const char *message,
                      gpointer data);
  /* Applies CMD as to any resource, and reports it: a flow's verbs other than
   * start and stop. TRUE when the resource is then in the verb's state. */
  gboolean (*apply)(const CtlCommandMsg *cmd, gpointer data);
} AgentFlowCallbacks;

/* STATES: the agent's resource -> state table (keys and values freed with
 * g_free), where the flows' states are read and set. WARMUP_MS: how long a
 * start stays starting; IDLE_MS: how long an ordinary flow runs before it
 * sleeps (0: never). CB's functions are called with DATA. */
AgentFlows *agent_flows_new(GHashTable *states, int warmup_ms, int idle_ms,
                            const AgentFlowCallbacks *cb, gpointer data);
/* Stops every flow where it is: no step on the way is reported any more. */
void        agent_flows_free(AgentFlows *fl);

/* Applies CMD when it is a flow's (it has a mode; its resource is in the
 * states table), as above; FALSE, and nothing done, when it is not. */
gboolean    agent_flows_apply(AgentFlows *fl, const CtlCommandMsg *cmd);
