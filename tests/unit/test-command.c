/* The verb parser and the helpers that shape log lines and audit fields. */
#include <glib.h>
#include <string.h>

#include "caller.h"
#include "verb.h"
#include "model.h"

static void
expect_verb(const char *input, gsize len, const char *verb)
{
  char *reason = NULL;
  const char *got = ctl_verb_parse(input, len, &reason);
  g_assert_cmpstr(got, ==, verb);
  if (verb)
    g_assert_null(reason);
  else
    g_assert_nonnull(reason);
  g_free(reason);
}

static void
test_verbs_accepted(void)
{
  expect_verb("pause", 5, "pause");
  expect_verb("pause\n", 6, "pause");
  expect_verb("resume\n", 7, "resume");
  expect_verb("start", 5, "start");
  expect_verb("stop\n", 5, "stop");
  expect_verb("kill\n", 5, "kill");
  expect_verb("stopped\n", 8, "stop");   /* a state asks for the graceful verb */
}

static void
test_verbs_rejected(void)
{
  expect_verb("", 0, NULL);
  expect_verb("\n", 1, NULL);
  expect_verb("bogus\n", 6, NULL);
  expect_verb("pause\n\n", 7, NULL);      /* one newline at most */
  expect_verb("Pause", 5, NULL);          /* verbs are lower case */
  expect_verb(" pause", 6, NULL);
  expect_verb("pause ", 6, NULL);
  expect_verb("pause\r\n", 7, NULL);
  expect_verb("paus", 4, NULL);
  expect_verb("pause\0x", 7, NULL);       /* a NUL byte is not the end */
  expect_verb("pauseresume", 11, NULL);
}

static void
test_verb_targets(void)
{
  g_assert_cmpstr(ctl_verb_target("pause"), ==, "paused");
  g_assert_cmpstr(ctl_verb_target("resume"), ==, "running");
  g_assert_cmpstr(ctl_verb_target("start"), ==, "running");
  g_assert_cmpstr(ctl_verb_target("stop"), ==, "stopped");
  g_assert_cmpstr(ctl_verb_target("kill"), ==, "stopped");
  g_assert_null(ctl_verb_target("bogus"));
  g_assert_null(ctl_verb_target(NULL));
}

static void
test_kv_quoting(void)
{
  GString *out = g_string_new(NULL);
  ctl_kv_append(out, "a", "plain");
  ctl_kv_append(out, "b", "two words");
  ctl_kv_append(out, "c", "line\nbreak");
  ctl_kv_append(out, "d", "quote\"");
  ctl_kv_append(out, "e", "");
  ctl_kv_append(out, "f", NULL);
  g_assert_cmpstr(out->str, ==,
                  "a=plain b=\"two words\" c=\"line\\nbreak\" d=\"quote\\\"\" e=\"\" f=-");
  g_assert_null(strchr(out->str, '\n'));
  g_string_free(out, TRUE);
}

static void
test_caller_describe(void)
{
  CtlCaller who = { .uid = 0, .pid = 1 };
  ctl_caller_resolve(&who);
  char *by = ctl_caller_describe(&who);
  g_assert_true(g_str_has_prefix(by, "by=uid:0(root) pid=1 comm="));
  g_assert_nonnull(strstr(by, " host="));
  g_free(by);
  ctl_caller_clear(&who);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/command/verbs-accepted", test_verbs_accepted);
  g_test_add_func("/command/verbs-rejected", test_verbs_rejected);
  g_test_add_func("/command/verb-targets", test_verb_targets);
  g_test_add_func("/command/kv-quoting", test_kv_quoting);
  g_test_add_func("/command/caller-describe", test_caller_describe);
  return g_test_run();
}
