#include "name.h"
#include <string.h>

gboolean
ctl_name_valid_len(const char *name, gsize len)
{
  if (name == NULL || len == 0 || len > CTL_NAME_MAX)
    return FALSE;
  if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
    return FALSE;
  for (gsize i = 0; i < len; i++) {
    char c = name[i];
    if (!(g_ascii_isalnum(c) || c == '.' || c == '_' || c == '-'))
      return FALSE;
  }
  return TRUE;
}

gboolean
ctl_name_valid(const char *name)
{
  return name != NULL && ctl_name_valid_len(name, strlen(name));
}

#define NAME_RULE "names are 1 to 128 bytes of A-Z a-z 0-9 . _ -, not . or .."

char *
ctl_name_problem(const char *name)
{
  if (ctl_name_valid(name))
    return NULL;
  gsize len = name ? strlen(name) : 0;
  if (len == 0)
    return g_strdup("the name is empty; " NAME_RULE);
  if (len > CTL_NAME_MAX)
    return g_strdup_printf("the name is %zu bytes long; " NAME_RULE, len);
  for (gsize i = 0; i < len; i++) {
    guchar c = (guchar) name[i];
    if (g_ascii_isalnum(c) || c == '.' || c == '_' || c == '-')
      continue;
    if (c == ' ')
      return g_strdup("the name holds ' ' (a space); " NAME_RULE);
    if (c > ' ' && c < 0x7f)
      return g_strdup_printf("the name holds '%c'; " NAME_RULE, c);
    /* Control bytes and non-ASCII (UTF-8 included) are shown as bytes. */
    return g_strdup_printf("the name holds byte 0x%02x%s; " NAME_RULE, c,
                           c >= 0x80 ? " (not ASCII)" : "");
  }
  return g_strdup("'.' and '..' are not names; " NAME_RULE);
}
