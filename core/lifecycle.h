/* The lifecycle backend's flows (elastic.io, seed 001): the resources of a
 * runtime with backend=lifecycle. Besides start and stop (backend.c) a flow
 * has a mode, ordinary or realtime, which may change only while the flow is
 * stopped, and which rides with every command to the flow. */
#pragma once
#include <glib.h>

#include "engine.h"

#define CTL_MODE_ORDINARY "ordinary"
#define CTL_MODE_REALTIME "realtime"

/* Is OBJ a flow (a resource of a lifecycle runtime)? */
gboolean    ctl_engine_is_flow(CtlEngine *e, CtlObject *obj);

/* FLOW's mode: its stored setting, else ordinary (elastic.io's default). */
const char *ctl_lifecycle_mode(CtlObject *flow);

/* The desired state a flow shows: what its commands asked for, or stopped
 * for a flow that no command has reached yet (a new flow is inactive until
 * its first start). */
const char *ctl_lifecycle_desired(CtlEngine *e, CtlObject *flow);

/* The whole value of a `mode` write: ordinary or realtime, optionally
 * followed by one "\n". The canonical mode, or NULL with *REASON (g_free). */
const char *ctl_lifecycle_mode_parse(const char *buf, gsize len, char **reason);

/* Is the flow stopped, so that its mode may change? NULL if so, else why
 * not, in words an operator acts on (g_free). See docs/seeds/elastic.md. */
char       *ctl_lifecycle_not_stopped(CtlEngine *e, CtlObject *flow);

/* Another admin host's command to FLOW, read back from the command topic,
 * carries MODE: the mode was changed there (while the flow was stopped, and
 * every command carries it), so it is adopted here before the command is
 * recorded, logged as that host's change. Nothing when it is the same. */
void        ctl_lifecycle_adopt_mode(CtlEngine *e, CtlObject *flow, const char *mode,
                                     const CtlCaller *who);

/* A write of INPUT (LEN bytes at OFFSET) to FLOW's `mode` on behalf of WHO.
 * DONE gets 0 once the new mode is committed (or at once when it is the
 * current one), EINVAL, EACCES, EBUSY (not stopped) or EIO. */
void        ctl_engine_set_mode(CtlEngine *e, CtlObject *flow, const char *input, gsize len,
                                gint64 offset, const CtlCaller *who, CtlCommandDone done,
                                gpointer user_data);
