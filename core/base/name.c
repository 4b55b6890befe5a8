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
