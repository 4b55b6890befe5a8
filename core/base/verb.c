/* The verbs a `state` write may carry, and the state each asks for. */
#include "verb.h"

#include <string.h>

static const struct { const char *verb, *target; } verbs[] = {
  { "pause",  "paused"  },
  { "resume", "running" },
  { "start",  "running" },
  { "stop",   "stopped" },
};

const char *
ctl_verb_target(const char *verb)
{
  for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++)
    if (g_strcmp0(verb, verbs[i].verb) == 0)
      return verbs[i].target;
  return NULL;
}

const char *
ctl_verb_parse(const char *buf, gsize len, char **reason)
{
  if (len > 0 && buf[len - 1] == '\n')
    len--;
  if (len == 0) {
    *reason = g_strdup("empty command");
    return NULL;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++)
    if (strlen(verbs[i].verb) == len && memcmp(buf, verbs[i].verb, len) == 0)
      return verbs[i].verb;
  *reason = g_strdup("unknown verb (expected pause, resume, start or stop)");
  return NULL;
}
