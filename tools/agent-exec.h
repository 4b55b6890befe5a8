/* ctlfs-agent's exec hook (--apply=exec:CMD): runs CMD VERB for a command,
 * with everything the command carries in its environment, and reads what the
 * hook says on its standard output as it comes.
 *
 * The line protocol (one line per message, at most AGENT_EXEC_LINE_MAX bytes;
 * longer lines are cut there and the rest of the line dropped):
 *
 *   state STATE   the resource is now in STATE (starting, shutting-down, ...,
 *                 any state a runtime may report but unknown): reported at
 *                 once as feedback naming the command
 *   error TEXT    TEXT is the reason to give if the hook fails
 *
 * Every line is logged; others are logged as ignored. The exit status is the
 * result: 0 applied; anything else failed, with the last `error` text, else
 * the last line on standard error, as the reason. A hook still running after
 * the timeout is killed (SIGKILL to its process group: a shell's children go
 * with it) and fails.
 *
 * Hooks run on the GLib main loop, the agent serving other commands meanwhile:
 * one at a time per key (a resource: its commands are applied in order), and
 * at most AGENT_EXEC_MAX_RUNNING at once (a burst of commands to many
 * resources must not fork hundreds of processes); the others wait their
 * turn, in order of arrival. */
#pragma once
#include <glib.h>

#include "message.h"

#define AGENT_EXEC_LINE_MAX    4096
#define AGENT_EXEC_MAX_RUNNING 16
/* A command larger than this goes to the hook as a file (CTLFS_COMMAND_FILE)
 * rather than CTLFS_COMMAND_JSON: Linux refuses a single environment string
 * over 128 KiB. */
#define AGENT_EXEC_ENV_JSON_MAX (64 * 1024)

typedef struct AgentExec AgentExec;

/* What a hook's run tells the agent; each function is called with DATA. */
typedef struct {
  /* The hook is about to run (its turn came): FALSE to skip it (the agent
   * found nothing to do); then neither progress nor done is called. */
  gboolean (*begin)(gpointer data);
  /* A `state` line. */
  void     (*progress)(const char *state, gpointer data);
  /* The end: REASON is NULL when the hook succeeded, else a one-line text. */
  void     (*done)(const char *reason, gpointer data);
} AgentExecCallbacks;

/* A command as the hook gets it. RESOURCE NULL: runtime-wide (CTLFS_SCOPE=
 * runtime). JSON: the message as read from the topic (LEN bytes). */
typedef struct {
  const CtlCommandMsg *cmd;
  const char          *resource;
  const char          *verb;
  const char          *dialect;   /* ctlfs | mia */
  const char          *json;
  gsize                json_len;
} AgentExecRequest;

/* ARGV: the hook's command (not copied: it must outlive the AgentExec);
 * TIMEOUT_MS: a run's bound (> 0). */
AgentExec *agent_exec_new(char **argv, int timeout_ms);
/* Ends the hooks still running (SIGTERM to their process groups, not waited
 * for) and drops the waiting ones, calling none of their callbacks but the
 * DESTROY given with them. */
void       agent_exec_free(AgentExec *x);

/* Queues a run of the hook for REQ (copied), one at a time per REQ's
 * resource. CB and DATA as above; DESTROY(DATA) once the run is over or
 * dropped. */
void       agent_exec_submit(AgentExec *x, const AgentExecRequest *req,
                             const AgentExecCallbacks *cb, gpointer data,
                             GDestroyNotify destroy);

/* Runs the hook for REQ now and waits for it (bounded by the timeout), on a
 * main context of its own: for the agent's start (restoring states) and the
 * mia dialect, which apply before they report. `state` lines are logged
 * only. FALSE with ERROR (the reason) when it failed. */
gboolean   agent_exec_run_sync(AgentExec *x, const AgentExecRequest *req, GError **error);

/* The hook's environment for REQ (g_strfreev): the agent's own, and
 * CTLFS_RUNTIME, CTLFS_RESOURCE (not for a runtime-wide command),
 * CTLFS_SCOPE, CTLFS_DIALECT, CTLFS_COMMAND_ID, CTLFS_VERB,
 * CTLFS_ISSUED_AT, CTLFS_EXPIRES_AT, CTLFS_MODE, CTLFS_BY and CTLFS_BY_*
 * (those the command has), CTLFS_COMMAND_JSON. Exposed for the tests. */
char     **agent_exec_environ(const AgentExecRequest *req);
