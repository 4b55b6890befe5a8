#include "kv.h"

#include <string.h>

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

/* In read-only memory: a write into a shared word faults at once. */
static const char shared_words[][8] = { "running", "paused", "stopped" };

static gboolean
is_shared(const char *value)
{
  return (guintptr) value - (guintptr) shared_words < sizeof shared_words;
}

char *
ctl_str_share(const char *value)
{
  for (guint i = 0; value && i < G_N_ELEMENTS(shared_words); i++)
    if (strcmp(value, shared_words[i]) == 0)
      return (char *) shared_words[i];
  return g_strdup(value);
}

void
ctl_str_free(char *value)
{
  if (!is_shared(value))
    g_free(value);
}

gboolean
ctl_set_str(char **field, const char *value)
{
  if (g_strcmp0(*field, value) == 0)
    return FALSE;
  ctl_str_free(*field);
  *field = g_strdup(value);
  return TRUE;
}
