/* Shared by the libFuzzer targets of tests/fuzz. A target checks properties
 * of what a parser returns, not only that it returns: CHECK() aborts on a
 * violated one, which libFuzzer reports as a crash with the input saved and
 * the stack printed, the condition's text on the line above it. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, \
              #cond);                                                      \
      abort();                                                             \
    }                                                                      \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A target may define FUZZ_LOG_TOLERATED(DOMAIN, MESSAGE) before including
 * this header, to let through one known, harmless warning of a library. */
#ifndef FUZZ_LOG_TOLERATED
#define FUZZ_LOG_TOLERATED(domain, message) ((void) (domain), (void) (message), FALSE)
#endif

static const char *
fuzz_log_field(const GLogField *fields, gsize n, const char *key)
{
  for (gsize i = 0; i < n; i++)
    if (strcmp(fields[i].key, key) == 0 && fields[i].length < 0)
      return fields[i].value;
  return NULL;
}

/* GLib reports its misuse (a GError set twice, a g_return_if_fail() that
 * failed) as warnings and criticals and carries on. This writer makes them
 * crashes with abort(), which libFuzzer catches (GLib's own fatal mode raises
 * SIGTRAP, which it does not), so that the input that caused them is saved. */
static GLogWriterOutput
fuzz_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
  if (!(level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)))
    return g_log_writer_standard_streams(level, fields, n, data);
  /* A tolerated warning would repeat thousands of times: not printed. */
  if (FUZZ_LOG_TOLERATED(fuzz_log_field(fields, n, "GLIB_DOMAIN"),
                         fuzz_log_field(fields, n, "MESSAGE")))
    return G_LOG_WRITER_HANDLED;
  g_log_writer_standard_streams(level, fields, n, data);
  abort();
}

/* Each target is one file including this header once, so this is defined
 * once per program. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  g_log_set_writer_func(fuzz_log_writer, NULL, NULL);
  return 0;
}

/* NULL or valid UTF-8: the only kind of string a parser should hand on to
 * logs, files and JSON. */
static inline gboolean
fuzz_text_ok(const char *s)
{
  return s == NULL || g_utf8_validate(s, -1, NULL);
}

/* A parser's refusal is read by people, in logs and in `last_error:` or on
 * stderr: it must exist and stay on one line whatever bytes the input held. */
static inline gboolean
fuzz_line_ok(const char *s)
{
  return s != NULL && s[0] != '\0' && strpbrk(s, "\r\n") == NULL;
}

/* ... and where it is stored or sent on (logs, status files, JSON), be UTF-8. */
static inline gboolean
fuzz_reason_ok(const char *s)
{
  return fuzz_line_ok(s) && g_utf8_validate(s, -1, NULL);
}

/* CHECK(OK(S)) that shows S, escaped, when it fails. */
#define CHECK_TEXT(ok, s)                                                  \
  do {                                                                     \
    if (!ok(s)) {                                                          \
      char *shown_ = (s) ? g_strescape((s), NULL) : NULL;                  \
      fprintf(stderr, "%s:%d: property violated: %s(\"%s\")\n", __FILE__,   \
              __LINE__, #ok, shown_ ? shown_ : "(null)");                  \
      abort();                                                             \
    }                                                                      \
  } while (0)
#define CHECK_REASON(s) CHECK_TEXT(fuzz_reason_ok, s)

/* The two strings are both NULL or equal. */
static inline gboolean
fuzz_same(const char *a, const char *b)
{
  return g_strcmp0(a, b) == 0;
}
