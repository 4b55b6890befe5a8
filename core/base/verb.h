/* The verbs a `state` write may carry, and what each one asks for (every
 * backend draws its own from these). */
#pragma once
#include <glib.h>

/* The verb that makes a resource follow its runtime's state again (clears
 * its override); it asks for no state of its own (ctl_verb_target: NULL). */
#define CTL_VERB_INHERIT "inherit"

/* Parses the whole value of a `state` write: a verb, or the state to be in
 * (paused, running, stopped: what `state` reads), optionally followed by one
 * "\n". Returns the canonical verb (static string; a state gives pause,
 * resume or stop) or NULL with *REASON set to a short text (g_free) saying
 * what is wrong. */
const char *ctl_verb_parse(const char *buf, gsize len, char **reason);
/* Was the value a state rather than a verb? ("running" asks a backend that
 * starts rather than resumes for start.) */
gboolean    ctl_verb_written_as_state(const char *buf, gsize len);

/* The desired state a verb asks for: pause -> paused, resume/start -> running,
 * stop and kill -> stopped; NULL for anything else. */
const char *ctl_verb_target(const char *verb);
