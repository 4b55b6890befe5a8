/* Running the `rama` CLI ([rama] cli=) for the cluster backend: one child
 * process a call, its end coming back on the main loop, killed (SIGTERM, then
 * SIGKILL) past [rama] timeout-ms. Internal to core/ (rama-cli.c). */
#pragma once
#include <gio/gio.h>


typedef struct CtlRama CtlRama;

/* The CLI and the calls running, for one engine. */
typedef struct {
  const char *path;         /* [rama] cli */
  int         timeout_ms;   /* [rama] timeout-ms, 0: none */
  gboolean    internal_hostnames;   /* [rama] internal-hostnames */
  GHashTable *runs;         /* CtlRamaRun* running */
} CtlRamaCli;

typedef struct CtlRamaRun CtlRamaRun;
typedef void (*CtlRamaRunDone)(CtlRamaRun *run);

/* One CLI call. Its caller reads the fields; rama-cli.c writes them. */
struct CtlRamaRun {
  CtlRamaCli     *cli;
  CtlRama        *rama;         /* the caller's backend, for DONE */
  char          **argv;
  GSubprocess    *proc;
  guint           timer, kill_timer;
  gboolean        timed_out;
  int             exit_status;   /* -1: no exit status (not run, killed) */
  char           *output;        /* stdout and stderr, valid UTF-8, trimmed */
  char           *error;         /* could not be run, or killed: why */
  CtlRamaRunDone  done;
  gpointer        data;          /* the caller's: a command, or a module's key */
};

/* Starts ARGV (taken). DONE is called at the end (at once, with error set,
 * when the CLI cannot be started), and before that at the timeout too
 * (timed_out set, ctl_rama_run_ended() FALSE). The run is freed after DONE
 * at its end. */
void     ctl_rama_run_start(CtlRamaCli *cli, CtlRama *owner, char **argv, CtlRamaRunDone done,
                            gpointer data);
/* Has RUN's child ended (or never started)? FALSE only for a timed-out run
 * told at its timeout. */
gboolean ctl_rama_run_ended(CtlRamaRun *run);
/* What a finished run says, for logs and last_error; NULL when it exited 0. */
char    *ctl_rama_run_failure(CtlRamaRun *run);
/* Kills every child still running and awaits their ends (briefly), so that
 * their DONEs run now and not after the backend is gone. */
void     ctl_rama_runs_end(CtlRamaCli *cli);

/* [rama] cli= followed by the arguments, up to a NULL, and
 * --useInternalHostnames when asked for and the command (FIRST) takes it;
 * for ctl_rama_run_start(). */
char   **ctl_rama_cli_argv(CtlRamaCli *cli, const char *first, ...) G_GNUC_NULL_TERMINATED;
/* A CLI's OUTPUT as an `output=` field of a log line, cut to a readable length
 * (the whole of it goes to status or last_error). */
void     ctl_rama_append_output(GString *d, const char *output);
