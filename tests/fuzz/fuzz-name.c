/* libFuzzer target: ctl_name_valid_len() and ctl_name_valid() (core/name.h),
 * and the Rama rules of ctl_name_valid_len_as(),
 * which guard every name that becomes a directory: mkdir, feedback, topics.
 * Checked against the rule as SPEC.md states it, written out independently
 * here: 1-128 bytes of [A-Za-z0-9._-], not "." or "..". */
#include "name.h"
#include "fuzz.h"

static gboolean
spec_byte(uint8_t c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
      || c == '.' || c == '_' || c == '-';
}

static gboolean
spec_name(const uint8_t *p, size_t n)
{
  if (n < 1 || n > 128)
    return FALSE;
  if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
    return FALSE;
  for (size_t i = 0; i < n; i++)
    if (!spec_byte(p[i]))
      return FALSE;
  return TRUE;
}

/* What makes a name safe as a path component, whatever the rule says. */
static void
check_safe_component(const uint8_t *p, size_t n)
{
  CHECK(n >= 1 && n <= CTL_NAME_MAX);
  CHECK(memchr(p, '/', n) == NULL);
  CHECK(memchr(p, '\0', n) == NULL);
  CHECK(!(n == 1 && p[0] == '.'));
  CHECK(!(n == 2 && p[0] == '.' && p[1] == '.'));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  gboolean valid = ctl_name_valid_len((const char *) data, size);
  CHECK(valid == spec_name(data, size));
  if (valid)
    check_safe_component(data, size);
  /* Rama's rules (modules with `$`, `*depot`, `$$pstate`) widen the plain
   * one, and anything they take is still one safe path component. */
  const CtlNameRule rama[] = { CTL_NAME_JAVA, CTL_NAME_DEPOT, CTL_NAME_PSTATE };
  for (size_t i = 0; i < G_N_ELEMENTS(rama); i++)
    if (ctl_name_valid_len_as(rama[i], (const char *) data, size))
      check_safe_component(data, size);
  if (valid)
    CHECK(ctl_name_valid_len_as(CTL_NAME_JAVA, (const char *) data, size));

  /* The NUL-terminated form sees the bytes up to the first NUL, and agrees
   * with the _len form on them. */
  char *s = g_strndup((const char *) data, size);
  size_t n = strlen(s);
  CHECK(ctl_name_valid(s) == ctl_name_valid_len(s, n));
  if (n == size)
    CHECK(ctl_name_valid(s) == valid);
  g_free(s);
  return 0;
}
