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
#include "backend.h"

/* The tree backend: it owns modules/, its modules, their topologies/ and
 * options/, the topologies and the options. */
extern const CtlBackend ctl_backend_rama;
