#include "kv.h"

void
ctl_kv_append(GString *out, const char *key, const char *value)
{
  if (out->len > 0 && out->str[out->len - 1] != ' ')
    g_string_append_c(out, ' ');
  g_string_append(out, key);
  g_string_append_c(out, '=');
  if (!value) {
    g_string_append_c(out, '-');
    return;
  }
  gboolean plain = *value != '\0';
  for (const char *p = value; *p && plain; p++)
    plain = g_ascii_isgraph(*p) && *p != '"' && *p != '\\';
  if (plain) {
    g_string_append(out, value);
    return;
  }
  char *esc = g_strescape(value, NULL);
  g_string_append_printf(out, "\"%s\"", esc);
  g_free(esc);
}

gboolean
ctl_set_str(char **field, const char *value)
{
  if (g_strcmp0(*field, value) == 0)
    return FALSE;
  g_free(*field);
  *field = g_strdup(value);
  return TRUE;
}
