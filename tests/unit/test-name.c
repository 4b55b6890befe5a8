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

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/name/valid", test_valid);
  g_test_add_func("/name/invalid", test_invalid);
  g_test_add_func("/name/length", test_length);
  g_test_add_func("/name/len-form", test_len_form);
  return g_test_run();
}
