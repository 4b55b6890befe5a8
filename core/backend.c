/* The verbs of each backend and the states a runtime passes through on its
 * way to what a verb asks for. */
#include "backend.h"

static const char *const kafka_verbs[] = { "pause", "resume", NULL };
static const char *const lifecycle_verbs[] = { "pause", "resume", "start", "stop", NULL };

gboolean
ctl_backend_takes(CtlBackendKind backend, const char *verb)
{
  const char *const *verbs = backend == CTL_BACKEND_LIFECYCLE ? lifecycle_verbs : kafka_verbs;
  return verb != NULL && g_strv_contains(verbs, verb);
}

const char *
ctl_backend_verbs(CtlBackendKind backend)
{
  return backend == CTL_BACKEND_LIFECYCLE ? "pause, resume, start, stop" : "pause, resume";
}

/* A flow's steps go sleeping -> starting -> running, and running ->
 * stopping -> stopped (or shutting-down -> sleeping when idle); a resumed
 * step that slept starts again. */
static const struct { const char *verb, *state; } underway[] = {
  { "pause",  "pausing" },
  { "resume", "resuming" },
  { "resume", "starting" },
  { "start",  "starting" },
  { "stop",   "stopping" },
  { "stop",   "shutting-down" },
};

gboolean
ctl_verb_underway(const char *verb, const char *state)
{
  for (gsize i = 0; i < G_N_ELEMENTS(underway); i++)
    if (g_strcmp0(verb, underway[i].verb) == 0 && g_strcmp0(state, underway[i].state) == 0)
      return TRUE;
  return FALSE;
}
