/* The cluster backend (Rama, seed 002): modules/ and their microbatch
 * topologies, driven through the cluster's CLI (`rama`, [rama] cli=).
 *
 * Every CLI call is a child process (GSubprocess) whose end comes back on the
 * main loop: nothing here blocks the FUSE loop. A topology's `state` write runs
 * `rama pauseTopology|resumeTopology MOD TOPO`, a module's `scale` write runs
 * `rama scaleExecutors --module MOD ...`; `rama moduleStatus MOD` runs in the
 * background (at declaration, after each command, every [rama] refresh-ms) and
 * its last output is what the module's `status` shows. */
#pragma once
#include "engine.h"

typedef struct CtlRama CtlRama;

/* Made by the engine once its model is loaded: runs the commands queued
 * before a restart (queued mode) and fails the durable ones that died with
 * the previous daemon. */
CtlRama *ctl_rama_new(CtlEngine *e);
/* Kills the children still running; their durable writers hear EIO. */
void     ctl_rama_free(CtlRama *r);

/* A write to a topology's `state` (pause, resume) or to a module's `scale`
 * (`workers=N threads=N replicationFactor=N`, any of them). DONE as for
 * ctl_engine_command(): EINVAL bad input, EACCES policy, EOPNOTSUPP verb,
 * EBUSY a command on the object is still queued or running, ETIMEDOUT the CLI
 * ran past [rama] timeout-ms (killed), EIO it failed; 0 once it exited 0
 * (durable) or once the command is stored (queued). */
void ctl_rama_topology_command(CtlEngine *e, CtlObject *topo, const char *input, gsize len,
                               gint64 offset, const CtlCaller *who, CtlCommandDone done,
                               gpointer user_data);
void ctl_rama_scale(CtlEngine *e, CtlObject *module, const char *input, gsize len,
                    gint64 offset, const CtlCaller *who, CtlCommandDone done,
                    gpointer user_data);

/* A module's dynamic options (options/NAME): declaring one (create in
 * options/; EACCES by the command policy, EINVAL name, EEXIST) and writing
 * a JSON value to it, which runs `rama setOption module MOD NAME VALUE` as a
 * command on the module (errors as for scale; EINVAL: not JSON). Rama has no
 * unset: forgetting the file (unlink) runs nothing. */
int  ctl_rama_declare_option(CtlEngine *e, CtlObject *options, const char *name,
                             const CtlCaller *who, CtlObject **out);
void ctl_rama_set_option(CtlEngine *e, CtlObject *option, const char *input, gsize len,
                         gint64 offset, const CtlCaller *who, CtlCommandDone done,
                         gpointer user_data);
/* The last value applied to OPTION, or NULL. */
const char *ctl_rama_option_value(CtlObject *option);

/* The module's `status`: the last `rama moduleStatus MOD`, never run on read. */
void        ctl_rama_show_module(CtlEngine *e, CtlObject *module, GString *out);
/* The last scale applied (`workers=2 threads=4`), or NULL. */
const char *ctl_rama_scale_value(CtlObject *module);
