/* Backends: what each kind of runtime takes. A kafka runtime pauses and
 * resumes (Mia-Platform Fast Data, seed 000); a lifecycle runtime drives
 * flows that also start and stop (elastic.io, seed 001). */
#pragma once
#include <glib.h>

#include "config.h"

/* Does a runtime of BACKEND take VERB (a verb ctl_verb_parse() accepted)? */
gboolean    ctl_backend_takes(CtlBackendKind backend, const char *verb);
/* The verbs BACKEND takes, for messages: "pause, resume". */
const char *ctl_backend_verbs(CtlBackendKind backend);

/* Is STATE a step on the way to what VERB asks for (starting for start,
 * stopping for stop, pausing for pause...)? A report of such a state names
 * the command but does not settle it: the runtime has not arrived yet. */
gboolean    ctl_verb_underway(const char *verb, const char *state);
