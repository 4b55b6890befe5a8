/* The lifecycle backend's flows (elastic.io, seed 001): the resources of a
 * runtime with backend=lifecycle. Besides start and stop a flow
 * has a mode, ordinary or realtime, which may change only while the flow is
 * stopped, and which rides with every command to the flow. */
#pragma once
#include <glib.h>

#include "backend.h"

extern const CtlBackend ctl_backend_lifecycle;

#define CTL_MODE_ORDINARY "ordinary"
#define CTL_MODE_REALTIME "realtime"

/* FLOW's mode: its stored setting, else ordinary (elastic.io's default). */
const char *ctl_lifecycle_mode(CtlObject *flow);

/* The whole value of a `mode` write: ordinary or realtime, optionally
 * followed by one "\n". The canonical mode, or NULL with *REASON (g_free). */
const char *ctl_lifecycle_mode_parse(const char *buf, gsize len, char **reason);

/* Is the flow stopped, so that its mode may change? NULL if so, else why
 * not, in words an operator acts on (g_free). See docs/seeds/elastic.md. */
char       *ctl_lifecycle_not_stopped(CtlEngine *e, CtlObject *flow);
