/* The verbs a `state` write may carry, and the state each asks for. */
#include "verb.h"

#include <string.h>

static const struct { const char *verb, *target; } verbs[] = {
  { "pause",  "paused"  },
  { "resume", "running" },
  { "start",  "running" },
  { "stop",   "stopped" },
  { "kill",   "stopped" },   /* forcefully: nothing is waited for (CDAP's kill) */
};

const char *
ctl_verb_target(const char *verb)
{
  for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++)
    if (g_strcmp0(verb, verbs[i].verb) == 0)
      return verbs[i].target;
  return NULL;
}

/* A state written as the value: what `state` reads, so that writing back
 * what was read works (configuration tools compare, then write content). */
static const struct { const char *state, *verb; } states[] = {
  { "paused",  "pause"  },
  { "running", "resume" },
  { "stopped", "stop"   },
};

static gboolean
is(const char *buf, gsize len, const char *word)
{
  return strlen(word) == len && memcmp(buf, word, len) == 0;
}

/* LEN without the one "\n" a value may end with. */
static gsize
value_len(const char *buf, gsize len)
{
  return len > 0 && buf[len - 1] == '\n' ? len - 1 : len;
}

const char *
ctl_verb_parse(const char *buf, gsize len, char **reason)
{
  len = value_len(buf, len);
  if (len == 0) {
    *reason = g_strdup("empty command");
    return NULL;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++)
    if (is(buf, len, verbs[i].verb))
      return verbs[i].verb;
  for (gsize i = 0; i < G_N_ELEMENTS(states); i++)
    if (is(buf, len, states[i].state))
      return states[i].verb;
  if (is(buf, len, CTL_VERB_INHERIT))
    return CTL_VERB_INHERIT;
  *reason = g_strdup("unknown verb (expected pause, resume, start, stop or kill, "
                     "the state to be in: paused, running or stopped, "
                     "or inherit to follow the runtime's state)");
  return NULL;
}

gboolean
ctl_verb_written_as_state(const char *buf, gsize len)
{
  len = value_len(buf, len);
  for (gsize i = 0; i < G_N_ELEMENTS(states); i++)
    if (is(buf, len, states[i].state))
      return TRUE;
  return FALSE;
}
