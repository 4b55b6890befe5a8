/* The janitor: runtimes silent for --expire-after-ms are inactive; with
 * expire=remove they are cleaned up (janitor.c). */
#pragma once
#include <glib.h>

#include "model.h"

typedef struct CtlEngine CtlEngine;
typedef struct CtlJanitor CtlJanitor;

/* NULL when --expire-after-ms is 0 (never); every call below takes NULL. */
CtlJanitor *ctl_janitor_new(CtlEngine *e);
void        ctl_janitor_free(CtlJanitor *j);
/* The engine began watching RT: its silence counts from now if it never reports. */
void        ctl_janitor_watch(CtlJanitor *j, CtlObject *rt);
/* Feedback from RT arrived: an inactive runtime is active again. */
void        ctl_janitor_heard(CtlJanitor *j, CtlObject *rt);
/* "active" | "inactive", NULL without a janitor; and how long RT has been silent. */
const char *ctl_janitor_activity(CtlJanitor *j, CtlObject *rt);
gint64      ctl_janitor_silent_ms(CtlJanitor *j, CtlObject *rt);
