/* How ctlfs wants its topics (see topic-settings.h). */
#include "topic-settings.h"

#include <string.h>

G_DEFINE_QUARK(ctl-topic-settings-error-quark, ctl_topic_settings_error)
#define CTL_TOPIC_SETTINGS_ERROR (ctl_topic_settings_error_quark())

/* Defaults, justified in docs/manual.md "Topics": a command topic keyed by
 * resource (or by runtime, mia) keeps the last command of each under
 * compaction, so an agent that starts late still finds the desired state; the
 * tree topic is compacted by design (peers.c); feedback is a stream of
 * reports and heartbeats whose every record ctlfs reads once and stores, so
 * it only needs to outlive a daemon's outage: a week. */
static const char *const default_configs[CTL_TOPIC_N_ROLES] = {
  [CTL_TOPIC_COMMAND] = "cleanup.policy=compact",
  [CTL_TOPIC_FEEDBACK] = "cleanup.policy=delete;retention.ms=604800000",
  [CTL_TOPIC_TREE] = "cleanup.policy=compact",
};

static const char *const role_names[CTL_TOPIC_N_ROLES] = { "command", "feedback", "tree" };

void
ctl_topic_settings_init(CtlTopicSettings *s)
{
  memset(s, 0, sizeof *s);
  s->partitions = -1;
  s->replication_factor = -1;
  s->create = TRUE;
  s->timeout_ms = 5000;
  for (int r = 0; r < CTL_TOPIC_N_ROLES; r++) {
    gboolean ok = ctl_topic_configs_parse(default_configs[r], &s->configs[r], NULL);
    g_assert(ok);
  }
}

void
ctl_topic_settings_clear(CtlTopicSettings *s)
{
  for (int r = 0; r < CTL_TOPIC_N_ROLES; r++)
    g_strfreev(s->configs[r]);
  memset(s, 0, sizeof *s);
}

void
ctl_topic_settings_copy(CtlTopicSettings *dst, const CtlTopicSettings *src)
{
  *dst = *src;
  for (int r = 0; r < CTL_TOPIC_N_ROLES; r++)
    dst->configs[r] = g_strdupv(src->configs[r]);
}

const char *
ctl_topic_role_name(CtlTopicRole role)
{
  return (int) role >= 0 && role < CTL_TOPIC_N_ROLES ? role_names[role] : "?";
}

const char *
ctl_topic_outcome_name(CtlTopicOutcome outcome)
{
  switch (outcome) {
  case CTL_TOPIC_CREATED: return "created";
  case CTL_TOPIC_MATCHING: return "matching";
  case CTL_TOPIC_DIFFERING: return "differing";
  case CTL_TOPIC_MISSING: return "missing";
  case CTL_TOPIC_UNAVAILABLE: return "unavailable";
  case CTL_TOPIC_FAILED: return "failed";
  }
  return "?";
}

static gboolean
valid_config_key(const char *k)
{
  static const char ok[] = "abcdefghijklmnopqrstuvwxyz0123456789._-";
  return *k && strspn(k, ok) == strlen(k);
}

gboolean
ctl_topic_configs_parse(const char *text, char ***out, GError **error)
{
  GPtrArray *list = g_ptr_array_new_with_free_func(g_free);
  char **parts = g_strsplit(text, ";", -1);
  gboolean ok = TRUE;
  for (int i = 0; ok && parts[i]; i++) {
    char *part = g_strstrip(parts[i]);
    if (!*part)
      continue;
    char *eq = strchr(part, '=');
    if (!eq) {
      g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 0, "'%s' is not key=value", part);
      ok = FALSE;
      break;
    }
    *eq = '\0';
    char *key = g_strstrip(part), *value = g_strstrip(eq + 1);
    if (!valid_config_key(key)) {
      g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 0,
                  "'%s' is not a topic config name (a-z, 0-9, '.', '_', '-')", key);
      ok = FALSE;
      break;
    }
    /* A key given twice: the last value, in the first one's place. */
    guint at = 0;
    for (; at < list->len; at += 2)
      if (strcmp(list->pdata[at], key) == 0)
        break;
    if (at < list->len) {
      g_free(list->pdata[at + 1]);
      list->pdata[at + 1] = g_strdup(value);
    } else {
      g_ptr_array_add(list, g_strdup(key));
      g_ptr_array_add(list, g_strdup(value));
    }
  }
  g_strfreev(parts);
  if (!ok) {
    g_ptr_array_free(list, TRUE);
    return FALSE;
  }
  g_ptr_array_add(list, NULL);
  g_ptr_array_set_free_func(list, NULL);
  *out = (char **) g_ptr_array_free(list, FALSE);
  return TRUE;
}

char *
ctl_topic_configs_format(const char *const *configs)
{
  GString *out = g_string_new(NULL);
  for (gsize i = 0; configs && configs[i] && configs[i + 1]; i += 2)
    g_string_append_printf(out, "%s%s=%s", out->len ? ";" : "", configs[i], configs[i + 1]);
  return g_string_free(out, FALSE);
}

static gboolean
set_count(int *out, const char *key, const char *value, GError **error)
{
  gint64 n;
  if (strcmp(value, "-1") == 0 || strcmp(value, "default") == 0) {
    *out = -1;
    return TRUE;
  }
  if (!g_ascii_string_to_signed(value, 10, 1, G_MAXINT32, &n, NULL)) {
    g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 0,
                "invalid value for %s: '%s' (expected an integer >= 1, or -1 or default: "
                "the broker's)", key, value);
    return FALSE;
  }
  *out = (int) n;
  return TRUE;
}

gboolean
ctl_topic_settings_set(CtlTopicSettings *s, const char *key, const char *value, GError **error)
{
  char *k = g_strdelimit(g_strdup(key), "_", '-');
  gboolean ok = TRUE;
  int role = -1;
  for (int r = 0; r < CTL_TOPIC_N_ROLES; r++) {
    char *name = g_strdup_printf("%s-config", role_names[r]);
    if (strcmp(k, name) == 0)
      role = r;
    g_free(name);
  }
  if (role >= 0) {
    char **configs = NULL;
    GError *local = NULL;
    if (ctl_topic_configs_parse(value, &configs, &local)) {
      g_strfreev(s->configs[role]);
      s->configs[role] = configs;
    } else {
      g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 0, "invalid value for %s: %s", k,
                  local->message);
      g_error_free(local);
      ok = FALSE;
    }
  } else if (strcmp(k, "create") == 0) {
    if (strcmp(value, "true") == 0)
      s->create = TRUE;
    else if (strcmp(value, "false") == 0)
      s->create = FALSE;
    else {
      g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 0,
                  "invalid value for create: '%s' (expected true or false)", value);
      ok = FALSE;
    }
  } else if (strcmp(k, "partitions") == 0) {
    ok = set_count(&s->partitions, k, value, error);
  } else if (strcmp(k, "replication-factor") == 0) {
    ok = set_count(&s->replication_factor, k, value, error);
  } else if (strcmp(k, "timeout-ms") == 0) {
    gint64 n;
    if (g_ascii_string_to_signed(value, 10, 1, G_MAXINT, &n, NULL)) {
      s->timeout_ms = (int) n;
    } else {
      g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 0,
                  "invalid value for timeout-ms: '%s' (expected an integer >= 1)", value);
      ok = FALSE;
    }
  } else {
    g_set_error(error, CTL_TOPIC_SETTINGS_ERROR, 1,
                "unknown key '%s' (create, partitions, replication-factor, timeout-ms, "
                "command-config, feedback-config, tree-config)", key);
    ok = FALSE;
  }
  g_free(k);
  return ok;
}

static const char *
lookup(const char *const *configs, const char *key)
{
  for (gsize i = 0; configs && configs[i] && configs[i + 1]; i += 2)
    if (strcmp(configs[i], key) == 0)
      return configs[i + 1];
  return NULL;
}

char *
ctl_topic_compare(const CtlTopicSettings *s, CtlTopicRole role, int partitions, int replicas,
                  const char *const *described)
{
  GString *out = g_string_new(NULL);
#define SEP (out->len ? ", " : "")
  if (s->partitions > 0 && partitions >= 0 && partitions != s->partitions)
    g_string_append_printf(out, "%spartitions=%d (want %d)", SEP, partitions, s->partitions);
  if (s->replication_factor > 0 && replicas >= 0 && replicas != s->replication_factor)
    g_string_append_printf(out, "%sreplication-factor=%d (want %d)", SEP, replicas,
                           s->replication_factor);
  const char *const *want = (const char *const *) s->configs[role];
  for (gsize i = 0; described && want && want[i] && want[i + 1]; i += 2) {
    const char *have = lookup(described, want[i]);
    if (!have)
      g_string_append_printf(out, "%s%s not reported (want %s)", SEP, want[i], want[i + 1]);
    else if (strcmp(have, want[i + 1]) != 0)
      g_string_append_printf(out, "%s%s=%s (want %s)", SEP, want[i], have, want[i + 1]);
  }
#undef SEP
  if (!out->len) {
    g_string_free(out, TRUE);
    return NULL;
  }
  return g_string_free(out, FALSE);
}
