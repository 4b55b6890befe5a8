#include "name.h"
#include <string.h>

/* What each rule adds to the plain one: the bytes allowed besides
 * [A-Za-z0-9._-], the prefix the name must start with, and its words for a
 * refusal. `$` is Java's nested-class separator (com.example.Mod$Inner);
 * Rama names a depot `*name` and a PState `$$name`. None allows `/`, so a
 * name is always one path component. */
typedef struct {
  const char *extra;
  const char *prefix;
  const char *rule;
} Rule;

static const Rule rules[] = {
  [CTL_NAME_PLAIN]  = { "", "", "names are 1 to 128 bytes of A-Z a-z 0-9 . _ -, not . or .." },
  [CTL_NAME_JAVA]   = { "$", "",
                        "names are 1 to 128 bytes of A-Z a-z 0-9 . _ - $, not . or .." },
  [CTL_NAME_DEPOT]  = { "$", "*",
                        "depot names are * then 1 to 127 bytes of A-Z a-z 0-9 . _ - $" },
  [CTL_NAME_PSTATE] = { "$", "$$",
                        "PState names are $$ then 1 to 126 bytes of A-Z a-z 0-9 . _ - $" },
};

static gboolean
byte_ok(const Rule *r, char c)
{
  return g_ascii_isalnum(c) || c == '.' || c == '_' || c == '-' || (c && strchr(r->extra, c));
}

gboolean
ctl_name_valid_len_as(CtlNameRule rule, const char *name, gsize len)
{
  const Rule *r = &rules[rule];
  gsize plen = strlen(r->prefix);
  if (name == NULL || len <= plen || len > CTL_NAME_MAX || strncmp(name, r->prefix, plen) != 0)
    return FALSE;
  if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
    return FALSE;
  for (gsize i = plen; i < len; i++)
    if (!byte_ok(r, name[i]))
      return FALSE;
  return TRUE;
}

gboolean
ctl_name_valid_len(const char *name, gsize len)
{
  return ctl_name_valid_len_as(CTL_NAME_PLAIN, name, len);
}

gboolean
ctl_name_valid_as(CtlNameRule rule, const char *name)
{
  return name != NULL && ctl_name_valid_len_as(rule, name, strlen(name));
}

gboolean
ctl_name_valid(const char *name)
{
  return ctl_name_valid_as(CTL_NAME_PLAIN, name);
}

char *
ctl_name_problem_as(CtlNameRule rule, const char *name)
{
  if (ctl_name_valid_as(rule, name))
    return NULL;
  const Rule *r = &rules[rule];
  gsize len = name ? strlen(name) : 0;
  gsize plen = strlen(r->prefix);
  if (len == 0)
    return g_strdup_printf("the name is empty; %s", r->rule);
  if (len > CTL_NAME_MAX)
    return g_strdup_printf("the name is %zu bytes long; %s", len, r->rule);
  if (strncmp(name, r->prefix, plen) != 0)
    return g_strdup_printf("the name does not start with %s; %s", r->prefix, r->rule);
  if (len == plen)
    return g_strdup_printf("the name is only %s; %s", r->prefix, r->rule);
  for (gsize i = plen; i < len; i++) {
    guchar c = (guchar) name[i];
    if (byte_ok(r, c))
      continue;
    if (c == ' ')
      return g_strdup_printf("the name holds ' ' (a space); %s", r->rule);
    if (c > ' ' && c < 0x7f)
      return g_strdup_printf("the name holds '%c'; %s", c, r->rule);
    /* Control bytes and non-ASCII (UTF-8 included) are shown as bytes. */
    return g_strdup_printf("the name holds byte 0x%02x%s; %s", c,
                           c >= 0x80 ? " (not ASCII)" : "", r->rule);
  }
  return g_strdup_printf("'.' and '..' are not names; %s", r->rule);
}

char *
ctl_name_problem(const char *name)
{
  return ctl_name_problem_as(CTL_NAME_PLAIN, name);
}
