/* Object names (core/name.h): what mkdir accepts and what feedback may create. */
#include "name.h"

#include <string.h>

static void
test_valid(void)
{
  const char *ok[] = { "a", "svc", "rt1", "A-Z_a-z.0-9", "...", ".hidden", "trailing.",
                       "-", "_", "a..b", NULL };
  for (const char **n = ok; *n != NULL; n++)
    g_assert_true(ctl_name_valid(*n));
}

static void
test_invalid(void)
{
  const char *bad[] = { "", ".", "..", "a/b", "/", "a b", " a", "a\n", "a\tb", "é",
                        "caf\xc3\xa9", "a*", "a:b", "a\\b", "~", "\xff", NULL };
  for (const char **n = bad; *n != NULL; n++) {
    g_autofree char *shown = g_strescape(*n, NULL);   /* TAP output must stay UTF-8 */
    g_test_message("rejecting \"%s\"", shown);
    g_assert_false(ctl_name_valid(*n));
  }
  g_assert_false(ctl_name_valid(NULL));
}

static void
test_length(void)
{
  char buf[CTL_NAME_MAX + 2];
  memset(buf, 'x', sizeof buf);
  buf[CTL_NAME_MAX] = '\0';
  g_assert_cmpuint(strlen(buf), ==, 128);
  g_assert_true(ctl_name_valid(buf));

  buf[CTL_NAME_MAX] = 'x';
  buf[CTL_NAME_MAX + 1] = '\0';
  g_assert_cmpuint(strlen(buf), ==, 129);
  g_assert_false(ctl_name_valid(buf));
}

/* The _len form reads exactly LEN bytes: neither beyond (FUSE names are not
 * always terminated) nor stopping early at an embedded NUL. */
static void
test_len_form(void)
{
  g_assert_true(ctl_name_valid_len("svc/extra", 3));
  g_assert_false(ctl_name_valid_len("svc/extra", 4));
  g_assert_false(ctl_name_valid_len("ab\0cd", 5));
  g_assert_true(ctl_name_valid_len("ab\0cd", 2));
  g_assert_false(ctl_name_valid_len("abc", 0));
  g_assert_false(ctl_name_valid_len("...", 2));   /* "..": the prefix counts */
  g_assert_false(ctl_name_valid_len("..x", 1));   /* "." */
  g_assert_true(ctl_name_valid_len("..x", 3));
  g_assert_false(ctl_name_valid_len(NULL, 3));
}

/* Each invalid name gets a reason a user can act on; valid ones none. */
static void
test_problem(void)
{
  g_assert_null(ctl_name_problem("svc"));
  struct { const char *name, *says; } cases[] = {
    { "", "empty" },
    { ".", "'.' and '..'" },
    { "..", "'.' and '..'" },
    { "a b", "' ' (a space)" },
    { "a:b", "':'" },
    { "caf\xc3\xa9", "byte 0xc3 (not ASCII)" },
    { "a\tb", "byte 0x09;" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *why = ctl_name_problem(cases[i].name);
    g_assert_nonnull(why);
    g_assert_nonnull(strstr(why, cases[i].says));
    g_assert_nonnull(strstr(why, "1 to 128 bytes"));
  }
  char buf[CTL_NAME_MAX + 2];
  memset(buf, 'x', sizeof buf);
  buf[CTL_NAME_MAX + 1] = '\0';
  g_autofree char *why = ctl_name_problem(buf);
  g_assert_nonnull(strstr(why, "129 bytes long"));
}

/* Rama's names: Java class names with `$`, depots `*name`, PStates `$$name`. */
static void
test_rules(void)
{
  g_assert_true(ctl_name_valid_as(CTL_NAME_JAVA, "com.example.MyModule$Inner"));
  g_assert_false(ctl_name_valid("com.example.MyModule$Inner"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_JAVA, "a/b"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_JAVA, ".."));
  g_assert_true(ctl_name_valid_as(CTL_NAME_DEPOT, "*depot"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_DEPOT, "*"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_DEPOT, "depot"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_DEPOT, "**d"));
  g_assert_true(ctl_name_valid_as(CTL_NAME_PSTATE, "$$p"));
  g_assert_true(ctl_name_valid_as(CTL_NAME_PSTATE, "$$$p"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_PSTATE, "$p"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_PSTATE, "$$"));
  g_assert_false(ctl_name_valid_as(CTL_NAME_PSTATE, "$$a/b"));
  g_autofree char *why = ctl_name_problem_as(CTL_NAME_DEPOT, "depot");
  g_assert_nonnull(strstr(why, "does not start with *"));
  g_autofree char *only = ctl_name_problem_as(CTL_NAME_PSTATE, "$$");
  g_assert_nonnull(strstr(only, "only $$"));
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/name/valid", test_valid);
  g_test_add_func("/name/invalid", test_invalid);
  g_test_add_func("/name/length", test_length);
  g_test_add_func("/name/len-form", test_len_form);
  g_test_add_func("/name/problem", test_problem);
  g_test_add_func("/name/rules", test_rules);
  return g_test_run();
}
