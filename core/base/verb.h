/* The verbs a `state` write may carry, and what each one asks for (every
 * backend draws its own from these). */
#pragma once
#include <glib.h>

/* Parses the whole value of a `state` write: a verb, optionally followed by one
 * "\n". Returns the canonical verb (static string) or NULL with *REASON set to
 * a short text (g_free) saying what is wrong. */
const char *ctl_verb_parse(const char *buf, gsize len, char **reason);

/* The desired state a verb asks for: pause -> paused, resume/start -> running,
 * stop -> stopped; NULL for anything else. */
const char *ctl_verb_target(const char *verb);
