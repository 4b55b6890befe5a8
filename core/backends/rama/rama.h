/* The cluster backend (Rama, seed 002): modules/ and their microbatch
 * topologies, driven through the cluster's CLI (`rama`, [rama] cli=).
 *
 * Every CLI call is a child process (GSubprocess) whose end comes back on the
 * main loop: nothing here blocks the FUSE loop. A topology's `state` write runs
 * `rama pauseTopology|resumeTopology MOD TOPO`, a module's `scale` write runs
 * `rama scaleExecutors --module MOD ...`, an option's write `rama setOption
 * LEVEL MOD [OBJECT] NAME VALUE`; `rama moduleStatus MOD` runs in the
 * background (at declaration, after each command, every [rama] refresh-ms) and
 * its last output is what the module's `status` shows, followed by `rama
 * taskGroupsStatus MOD INSTANCE` for the module's `task-groups`. */
#pragma once
#include "backend.h"

/* The tree backend: it owns modules/, its modules, their topologies/,
 * depots/, pstates/ and options/, the topologies, depots, PStates (each with
 * its options/) and the options. */
extern const CtlBackend ctl_backend_rama;
