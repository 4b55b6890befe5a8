/* libFuzzer target: ctl_verb_parse() (core/base/verb.h), the parser of the value
 * a user writes to a `state` file. Input: any bytes, NULs included, not
 * NUL-terminated (the daemon passes at most 64; the parser must not care). */
#include "verb.h"
#include "fuzz.h"

static const char *const known_verbs[] = { "pause", "resume", "start", "stop", "kill", "inherit" };

static gboolean
is_known_verb(const char *verb)
{
  for (gsize i = 0; i < G_N_ELEMENTS(known_verbs); i++)
    if (strcmp(verb, known_verbs[i]) == 0)
      return TRUE;
  return FALSE;
}

/* An accepted input is exactly the verb, or the state it asks for (what
 * `state` reads, written back), optionally followed by one "\n". */
static void
check_accepted(const uint8_t *data, size_t size, const char *verb)
{
  CHECK(is_known_verb(verb));
  const char *target = ctl_verb_target(verb);
  CHECK(target != NULL || strcmp(verb, CTL_VERB_INHERIT) == 0);
  const char *word = ctl_verb_written_as_state((const char *) data, size) ? target : verb;
  size_t w = strlen(word);
  CHECK(size == w || (size == w + 1 && data[w] == '\n'));
  CHECK(memcmp(data, word, w) == 0);
  size_t n = strlen(verb);

  /* The canonical forms parse back to the same verb. */
  char *reason = NULL;
  CHECK(ctl_verb_parse(verb, n, &reason) == verb && reason == NULL);
  char *line = g_strconcat(verb, "\n", NULL);
  CHECK(ctl_verb_parse(line, n + 1, &reason) == verb && reason == NULL);
  g_free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *reason = NULL;
  const char *verb = ctl_verb_parse((const char *) data, size, &reason);
  if (verb == NULL) {
    CHECK_REASON(reason);
    g_free(reason);
    return 0;
  }
  CHECK(reason == NULL);
  check_accepted(data, size, verb);
  return 0;
}
