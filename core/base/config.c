#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "message.h"
#include "kafka-props.h"
#include "name.h"

static const char *const keys[] = {
  "brokers", "db", "topic-prefix", "write-mode", "ack-timeout-ms", "stale-after-ms",
  "admin-group", "discover-max", "backend", "dialect", "expire-after-ms", "expire",
  "rama-cli", "rama-timeout-ms", "rama-refresh-ms", "rama-internal-hostnames",
  "initial-state", "reconcile", "reconcile-attempts", "metrics-per-resource",
  "metrics-series-max", NULL,
};

#define ACCESS_GROUP "access"

static void
runtime_config_clear(CtlRuntimeConfig *rc)
{
  g_free(rc->backend);
  g_free(rc->dialect);
  g_free(rc->command_topic);
  g_free(rc->feedback_topic);
  g_free(rc->initial_state);
  g_free(rc->mia_pipeline_id);
  if (rc->mia_artifact_ids)
    g_hash_table_unref(rc->mia_artifact_ids);
}

static void
runtime_config_free(gpointer rc)
{
  runtime_config_clear(rc);
  g_free(rc);
}

void
ctl_config_init(CtlConfig *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->topic_prefix = g_strdup("ctlfs");
  cfg->write_mode = CTL_WRITE_DURABLE;
  cfg->ack_timeout_ms = 5000;
  cfg->stale_after_ms = 10000;
  cfg->discover_max = 10000;
  /* Feedback's metrics (seed 003): a few counters per resource; the bounds
   * keep a hostile runtime from filling the database or a Prometheus server. */
  cfg->metrics_per_resource = 32;
  cfg->metrics_series_max = 1000;
  cfg->runtime_default.backend = g_strdup("kafka");
  cfg->runtime_default.dialect = g_strdup("ctlfs");
  /* A desired state that holds: see docs/manual.md, "Drift and reconcile". */
  cfg->runtime_default.reconcile = CTL_RECONCILE_RESEND;
  cfg->runtime_default.reconcile_attempts = 5;
  cfg->runtimes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, runtime_config_free);
  cfg->rama_cli = g_strdup("rama");
  cfg->rama_timeout_ms = 30000;
  cfg->rama_refresh_ms = 10000;
  cfg->kafka_props = g_new0(char *, 1);
  ctl_topic_settings_init(&cfg->topics);
  cfg->owner_uid = geteuid();
  cfg->policy = ctl_policy_new(cfg->owner_uid);
}

void
ctl_config_clear(CtlConfig *cfg)
{
  g_free(cfg->brokers);
  g_free(cfg->db_path);
  g_free(cfg->topic_prefix);
  g_free(cfg->rama_cli);
  g_strfreev(cfg->kafka_props);
  ctl_topic_settings_clear(&cfg->topics);
  runtime_config_clear(&cfg->runtime_default);
  if (cfg->runtimes)
    g_hash_table_unref(cfg->runtimes);
  ctl_policy_unref(cfg->policy);
  memset(cfg, 0, sizeof *cfg);
}

void
ctl_config_copy(CtlConfig *dst, const CtlConfig *src)
{
  *dst = *src;
  dst->brokers = g_strdup(src->brokers);
  dst->db_path = g_strdup(src->db_path);
  dst->topic_prefix = g_strdup(src->topic_prefix);
  dst->rama_cli = g_strdup(src->rama_cli);
  dst->kafka_props = g_strdupv(src->kafka_props);
  ctl_topic_settings_copy(&dst->topics, &src->topics);
  dst->runtime_default.backend = g_strdup(src->runtime_default.backend);
  dst->runtime_default.dialect = g_strdup(src->runtime_default.dialect);
  dst->runtime_default.initial_state = g_strdup(src->runtime_default.initial_state);
  dst->runtimes = g_hash_table_ref(src->runtimes);   /* never changed once parsed */
  dst->policy = ctl_policy_ref(src->policy);
}

/* A [runtime RT] key not given (-1) follows [ctlfs] and the command line. */
const char *
ctl_config_backend(const CtlConfig *cfg, const char *runtime)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc && rc->backend ? rc->backend : cfg->runtime_default.backend;
}

const char *
ctl_config_dialect(const CtlConfig *cfg, const char *runtime)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc && rc->dialect ? rc->dialect : cfg->runtime_default.dialect;
}

CtlReconcile
ctl_config_reconcile(const CtlConfig *cfg, const char *runtime)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc && rc->reconcile ? rc->reconcile : cfg->runtime_default.reconcile;
}

int
ctl_config_reconcile_attempts(const CtlConfig *cfg, const char *runtime)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc && rc->reconcile_attempts ? rc->reconcile_attempts
                                      : cfg->runtime_default.reconcile_attempts;
}

const char *
ctl_reconcile_name(CtlReconcile mode)
{
  static const char *const names[] = { "-", "off", "report", "resend" };
  return mode <= CTL_RECONCILE_RESEND ? names[mode] : "-";
}

const char *
ctl_config_initial_state(const CtlConfig *cfg, const char *runtime)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc && rc->initial_state ? rc->initial_state : cfg->runtime_default.initial_state;
}

static gboolean G_GNUC_PRINTF(4, 5)
bad_value(GError **error, const char *key, const char *value, const char *fmt, ...);

/* initial-state=: a state a runtime-wide command can ask for. */
static gboolean
set_initial_state(char **field, const char *key, const char *value, GError **error)
{
  if (g_strcmp0(value, "paused") != 0 && g_strcmp0(value, "running") != 0)
    return bad_value(error, key, value, "expected paused or running");
  g_free(*field);
  *field = g_strdup(value);
  return TRUE;
}

const char *
ctl_config_mia_pipeline_id(const CtlConfig *cfg, const char *runtime)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc ? rc->mia_pipeline_id : NULL;
}

const char *
ctl_config_mia_artifact_id(const CtlConfig *cfg, const char *runtime, const char *resource)
{
  const CtlRuntimeConfig *rc = runtime ? g_hash_table_lookup(cfg->runtimes, runtime) : NULL;
  return rc && rc->mia_artifact_ids ? g_hash_table_lookup(rc->mia_artifact_ids, resource) : NULL;
}

char *
ctl_config_topic(const CtlConfig *cfg, const char *runtime, gboolean feedback)
{
  const CtlRuntimeConfig *rc = g_hash_table_lookup(cfg->runtimes, runtime);
  const char *named = !rc ? NULL : feedback ? rc->feedback_topic : rc->command_topic;
  if (named)
    return g_strdup(named);
  return feedback ? ctl_topic_feedback(cfg->topic_prefix, runtime)
                  : ctl_topic_commands(cfg->topic_prefix, runtime);
}

const char *
ctl_config_key(const char *key)
{
  char *k = g_strdelimit(g_strdup(key), "_", '-');
  const char *found = NULL;
  for (int i = 0; keys[i] && !found; i++)
    if (strcmp(k, keys[i]) == 0)
      found = keys[i];
  g_free(k);
  return found;
}

static gboolean G_GNUC_PRINTF(4, 5)
bad_value(GError **error, const char *key, const char *value, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *why = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  char *shown = g_strescape(value, NULL);
  g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
              "invalid value for %s: '%s' (%s)", key, shown, why);
  g_free(shown);
  g_free(why);
  return FALSE;
}

static gboolean
set_int(int *out, const char *key, const char *value, GError **error)
{
  gint64 n;
  if (!g_ascii_string_to_signed(value, 10, 1, G_MAXINT, &n, NULL))
    return bad_value(error, key, value, "expected an integer >= 1");
  *out = (int) n;
  return TRUE;
}

/* An integer >= 0 where 0 means ZERO ("never", "none exported"). */
static gboolean
set_count(int *out, const char *key, const char *value, const char *zero, GError **error)
{
  gint64 n;
  if (!g_ascii_string_to_signed(value, 10, 0, G_MAXINT, &n, NULL))
    return bad_value(error, key, value, "expected an integer >= 0 (0: %s)", zero);
  *out = (int) n;
  return TRUE;
}

static gboolean
set_reconcile(CtlReconcile *out, const char *key, const char *value, GError **error)
{
  for (CtlReconcile m = CTL_RECONCILE_OFF; m <= CTL_RECONCILE_RESEND; m++)
    if (strcmp(value, ctl_reconcile_name(m)) == 0) {
      *out = m;
      return TRUE;
    }
  return bad_value(error, key, value, "expected off, report or resend");
}

/* backend= and dialect= name a registered backend (core/backends/); which
 * names exist is checked once the whole configuration is read
 * (ctl_backends_check), so this layer names none of them. */
static gboolean
set_name(char **out, const char *key, const char *value, GError **error)
{
  if (!ctl_name_valid(value))
    return bad_value(error, key, value, "expected a backend's name");
  g_free(*out);
  *out = g_strdup(value);
  return TRUE;
}

static gboolean
valid_prefix(const char *s)
{
  static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
  return *s && strlen(s) <= 128 && strspn(s, ok) == strlen(s);
}

/* --admin-group: its members may command and declare, beside what [access]
 * says (declare follows command unless set on its own). */
static gboolean
set_admin_group(CtlConfig *cfg, const char *value, GError **error)
{
  struct group gr, *found = NULL;
  char buf[4096];
  if (!*value || getgrnam_r(value, &gr, buf, sizeof buf, &found) != 0 || !found)
    return bad_value(error, "admin-group", value, "no such group");
  ctl_policy_add_group(cfg->policy, CTL_ACCESS_COMMAND, found->gr_gid, value);
  ctl_policy_add_group(cfg->policy, CTL_ACCESS_DECLARE, found->gr_gid, value);
  return TRUE;
}

gboolean
ctl_config_set(CtlConfig *cfg, const char *key, const char *value, GError **error)
{
  const char *k = ctl_config_key(key);
  if (!k) {
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "unknown setting '%s'", key);
    return FALSE;
  }
  if (!g_utf8_validate(value, -1, NULL))
    return bad_value(error, k, value, "not UTF-8");
  if (strcmp(k, "brokers") == 0) {
    if (!*value)
      return bad_value(error, k, value, "expected HOST:PORT,...");
    g_free(cfg->brokers);
    cfg->brokers = g_strdup(value);
  } else if (strcmp(k, "db") == 0) {
    if (!*value)
      return bad_value(error, k, value, "expected a path");
    g_free(cfg->db_path);
    cfg->db_path = g_strdup(value);
  } else if (strcmp(k, "topic-prefix") == 0) {
    if (!valid_prefix(value))
      return bad_value(error, k, value, "letters, digits, '.', '_', '-'");
    g_free(cfg->topic_prefix);
    cfg->topic_prefix = g_strdup(value);
  } else if (strcmp(k, "write-mode") == 0) {
    if (strcmp(value, "durable") == 0)
      cfg->write_mode = CTL_WRITE_DURABLE;
    else if (strcmp(value, "queued") == 0)
      cfg->write_mode = CTL_WRITE_QUEUED;
    else
      return bad_value(error, k, value, "expected durable or queued");
  } else if (strcmp(k, "ack-timeout-ms") == 0) {
    return set_int(&cfg->ack_timeout_ms, k, value, error);
  } else if (strcmp(k, "stale-after-ms") == 0) {
    return set_int(&cfg->stale_after_ms, k, value, error);
  } else if (strcmp(k, "discover-max") == 0) {
    return set_int(&cfg->discover_max, k, value, error);
  } else if (strcmp(k, "metrics-per-resource") == 0) {
    return set_int(&cfg->metrics_per_resource, k, value, error);
  } else if (strcmp(k, "metrics-series-max") == 0) {
    return set_count(&cfg->metrics_series_max, k, value, "none exported", error);
  } else if (strcmp(k, "admin-group") == 0) {
    return set_admin_group(cfg, value, error);
  } else if (strcmp(k, "backend") == 0) {
    return set_name(&cfg->runtime_default.backend, k, value, error);
  } else if (strcmp(k, "dialect") == 0) {
    return set_name(&cfg->runtime_default.dialect, k, value, error);
  } else if (strcmp(k, "initial-state") == 0) {
    return set_initial_state(&cfg->runtime_default.initial_state, k, value, error);
  } else if (strcmp(k, "expire-after-ms") == 0) {
    return set_count(&cfg->expire_after_ms, k, value, "never", error);
  } else if (strcmp(k, "expire") == 0) {
    if (strcmp(value, "mark") == 0)
      cfg->expire_remove = FALSE;
    else if (strcmp(value, "remove") == 0)
      cfg->expire_remove = TRUE;
    else
      return bad_value(error, k, value, "expected mark or remove");
  } else if (strcmp(k, "reconcile") == 0) {
    return set_reconcile(&cfg->runtime_default.reconcile, k, value, error);
  } else if (strcmp(k, "reconcile-attempts") == 0) {
    return set_int(&cfg->runtime_default.reconcile_attempts, k, value, error);
  } else if (strcmp(k, "rama-cli") == 0) {
    if (!*value)
      return bad_value(error, k, value, "expected a program name or path");
    g_free(cfg->rama_cli);
    cfg->rama_cli = g_strdup(value);
  } else if (strcmp(k, "rama-timeout-ms") == 0) {
    return set_int(&cfg->rama_timeout_ms, k, value, error);
  } else if (strcmp(k, "rama-refresh-ms") == 0) {
    return set_count(&cfg->rama_refresh_ms, k, value, "never", error);
  } else if (strcmp(k, "rama-internal-hostnames") == 0) {
    if (strcmp(value, "true") == 0)
      cfg->rama_internal_hostnames = TRUE;
    else if (strcmp(value, "false") == 0)
      cfg->rama_internal_hostnames = FALSE;
    else
      return bad_value(error, k, value, "expected true or false");
  }
  return TRUE;
}

gboolean
ctl_config_set_kafka(CtlConfig *cfg, const char *key, const char *value, gboolean command_line,
                     GError **error)
{
  const char *why = ctl_kafka_prop_reserved(key);
  if (!*key || strchr(key, '=')) {
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                "'%s' is not a Kafka client property", key);
    return FALSE;
  }
  if (why) {
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%s: set by ctlfs itself (%s)", key, why);
    return FALSE;
  }
  if (command_line && ctl_kafka_prop_secret(key)) {
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%s: a credential may not be given on the command line, where ps and "
                "/proc/PID/cmdline show it to every user: put it in the [kafka] group of the "
                "config file (--config), readable by its owner only (chmod 600)", key);
    return FALSE;
  }
  if (!g_utf8_validate(value, -1, NULL)) {
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%s: value not UTF-8", key);
    return FALSE;
  }
  guint n = g_strv_length(cfg->kafka_props);
  for (guint i = 0; i + 1 < n; i += 2) {
    if (strcmp(cfg->kafka_props[i], key) == 0) {
      g_free(cfg->kafka_props[i + 1]);
      cfg->kafka_props[i + 1] = g_strdup(value);
      return TRUE;
    }
  }
  cfg->kafka_props = g_renew(char *, cfg->kafka_props, n + 3);
  cfg->kafka_props[n] = g_strdup(key);
  cfg->kafka_props[n + 1] = g_strdup(value);
  cfg->kafka_props[n + 2] = NULL;
  return TRUE;
}

/* TEXT with each control character written \xHH. A config error echoes bytes
 * of the file (a group, a key, a principal, GKeyFile's quote of a bad line);
 * a newline or carriage return among them would break the one-line error. */
static char *
one_line(const char *text)
{
  GString *out = g_string_new(NULL);
  for (const char *p = text; *p; p++) {
    guchar c = (guchar) *p;
    if (c < 0x20 || c == 0x7f)
      g_string_append_printf(out, "\\x%02x", c);
    else
      g_string_append_c(out, (char) c);
  }
  return g_string_free(out, FALSE);
}

static gboolean G_GNUC_PRINTF(3, 4)
file_error(GError **error, const char *origin, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *what = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  char *shown = one_line(what);
  g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "config %s: %s", origin, shown);
  g_free(shown);
  g_free(what);
  return FALSE;
}

static gboolean
parse_settings(CtlConfig *cfg, GKeyFile *kf, const char *origin, GError **error)
{
  gsize n = 0;
  char **names = g_key_file_get_keys(kf, "ctlfs", &n, NULL);
  gboolean ok = TRUE;
  for (gsize i = 0; ok && i < n; i++) {
    GError *local = NULL;
    /* On a bad escape GKeyFile returns the value so far AND an error: the
     * error decides, never the truncated value. */
    char *value = g_key_file_get_string(kf, "ctlfs", names[i], &local);
    if (!ctl_config_key(names[i]))
      ok = file_error(error, origin, "unknown key '%s' in [ctlfs]", names[i]);
    else if (local)
      ok = file_error(error, origin, "[ctlfs] %s: %s", names[i], local->message);
    else if (!ctl_config_set(cfg, names[i], value, &local))
      ok = file_error(error, origin, "[ctlfs] %s", local->message);
    g_clear_error(&local);
    g_free(value);
  }
  g_strfreev(names);
  return ok;
}

/* [access] or [access RUNTIME]: each key is an access, each value a list. */
static gboolean
parse_access(CtlConfig *cfg, GKeyFile *kf, const char *group, const char *runtime,
             const char *origin, GError **error)
{
  if (runtime && !ctl_name_valid(runtime))
    return file_error(error, origin, "[%s]: '%s' is not a valid runtime name", group, runtime);
  gsize n = 0;
  char **names = g_key_file_get_keys(kf, group, &n, NULL);
  gboolean ok = TRUE;
  for (gsize i = 0; ok && i < n; i++) {
    CtlAccess a;
    if (!ctl_access_from_name(names[i], &a)) {
      ok = file_error(error, origin, "unknown key '%s' in [%s] (read, command, declare)",
                      names[i], group);
      break;
    }
    GError *local = NULL;
    char *value = g_key_file_get_string(kf, group, names[i], &local);
    if (!local) {   /* see parse_settings(): an error may come with a value */
      char **list = g_strsplit_set(value, ";,", -1);
      ok = ctl_policy_set(cfg->policy, runtime, a, (const char *const *) list,
                          g_strv_length(list), &local);
      g_strfreev(list);
    } else {
      ok = FALSE;
    }
    if (!ok)
      file_error(error, origin, "[%s] %s: %s", group, names[i], local->message);
    g_clear_error(&local);
    g_free(value);
  }
  g_strfreev(names);
  return ok;
}

/* Reads each key of GROUP in turn; FN checks and applies one. */
typedef gboolean (*KeyFn)(CtlConfig *cfg, const char *group, const char *key, const char *value,
                          gpointer data, GError **error);

static gboolean
parse_keys(CtlConfig *cfg, GKeyFile *kf, const char *group, const char *origin, KeyFn fn,
           gpointer data, GError **error)
{
  gsize n = 0;
  char **names = g_key_file_get_keys(kf, group, &n, NULL);
  gboolean ok = TRUE;
  for (gsize i = 0; ok && i < n; i++) {
    GError *local = NULL;
    char *value = g_key_file_get_string(kf, group, names[i], &local);
    if (local)   /* see parse_settings(): an error may come with a value */
      ok = file_error(error, origin, "[%s] %s: %s", group, names[i], local->message);
    else if (!fn(cfg, group, names[i], value, data, &local))
      ok = file_error(error, origin, "[%s] %s", group, local->message);
    g_clear_error(&local);
    g_free(value);
  }
  g_strfreev(names);
  return ok;
}

static gboolean
unknown_key(GError **error, const char *group, const char *key, const char *known)
{
  g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
              "unknown key '%s' (%s)", key, known);
  return FALSE;
}

/* [rama]: cli, timeout-ms, refresh-ms, internal-hostnames (also rama-cli, ...
 * in [ctlfs]). */
static gboolean
rama_key(CtlConfig *cfg, const char *group, const char *key, const char *value, gpointer data,
         GError **error)
{
  if (strcmp(key, "cli") == 0)
    return ctl_config_set(cfg, "rama-cli", value, error);
  if (strcmp(key, "timeout-ms") == 0 || strcmp(key, "timeout_ms") == 0)
    return ctl_config_set(cfg, "rama-timeout-ms", value, error);
  if (strcmp(key, "refresh-ms") == 0 || strcmp(key, "refresh_ms") == 0)
    return ctl_config_set(cfg, "rama-refresh-ms", value, error);
  if (strcmp(key, "internal-hostnames") == 0 || strcmp(key, "internal_hostnames") == 0)
    return ctl_config_set(cfg, "rama-internal-hostnames", value, error);
  return unknown_key(error, group, key, "cli, timeout-ms, refresh-ms, internal-hostnames");
}

/* A Kafka topic name: 1-249 of [A-Za-z0-9._-], not "." or "..". */
static gboolean
set_topic(char **slot, const char *key, const char *value, GError **error)
{
  gsize n = strlen(value);
  gboolean ok = n >= 1 && n <= 249 && strcmp(value, ".") != 0 && strcmp(value, "..") != 0;
  for (const char *c = value; ok && *c; c++)
    ok = g_ascii_isalnum(*c) || *c == '.' || *c == '_' || *c == '-';
  if (!ok)
    return bad_value(error, key, value,
                     "expected a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)");
  g_free(*slot);
  *slot = g_strdup(value);
  return TRUE;
}

/* [kafka]: any librdkafka client property, passed to both clients. */
static gboolean
kafka_key(CtlConfig *cfg, const char *group, const char *key, const char *value, gpointer data,
          GError **error)
{
  return ctl_config_set_kafka(cfg, key, value, FALSE, error);
}

/* [topics]: see topic-settings.h. */
static gboolean
topics_key(CtlConfig *cfg, const char *group, const char *key, const char *value, gpointer data,
           GError **error)
{
  return ctl_topic_settings_set(&cfg->topics, key, value, error);
}

#define MIA_ARTIFACT_ID "mia-artifact-id."

/* A Mia id: a UUID in practice; any 1-128 bytes of [A-Za-z0-9._-] here, as
 * the ids ctlfs puts in its commands' keys. */
static gboolean
mia_id(CtlRuntimeConfig *rc, const char *key, const char *value, GError **error)
{
  if (!ctl_name_valid(value))
    return bad_value(error, key, value, "expected an id (1-128 bytes of [A-Za-z0-9._-])");
  if (strcmp(key, "mia-pipeline-id") == 0) {
    g_free(rc->mia_pipeline_id);
    rc->mia_pipeline_id = g_strdup(value);
    return TRUE;
  }
  const char *resource = key + strlen(MIA_ARTIFACT_ID);
  if (!ctl_name_valid(resource))
    return bad_value(error, key, resource, "expected mia-artifact-id.RESOURCE, a valid name");
  if (!rc->mia_artifact_ids)
    rc->mia_artifact_ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_hash_table_replace(rc->mia_artifact_ids, g_strdup(resource), g_strdup(value));
  return TRUE;
}

/* [runtime RT]: backend, dialect, command-topic, feedback-topic,
 * initial-state, Mia's ids, reconcile, reconcile-attempts; the rest as in
 * [ctlfs]. */
static gboolean
runtime_key(CtlConfig *cfg, const char *group, const char *key, const char *value, gpointer data,
            GError **error)
{
  CtlRuntimeConfig *rc = data;
  if (strcmp(key, "backend") == 0)
    return set_name(&rc->backend, key, value, error);
  if (strcmp(key, "dialect") == 0)
    return set_name(&rc->dialect, key, value, error);
  if (strcmp(key, "command-topic") == 0)
    return set_topic(&rc->command_topic, key, value, error);
  if (strcmp(key, "feedback-topic") == 0)
    return set_topic(&rc->feedback_topic, key, value, error);
  if (strcmp(key, "initial-state") == 0)
    return set_initial_state(&rc->initial_state, key, value, error);
  if (strcmp(key, "mia-pipeline-id") == 0 || g_str_has_prefix(key, MIA_ARTIFACT_ID))
    return mia_id(rc, key, value, error);
  if (strcmp(key, "reconcile") == 0)
    return set_reconcile(&rc->reconcile, key, value, error);
  if (strcmp(key, "reconcile-attempts") == 0)
    return set_int(&rc->reconcile_attempts, key, value, error);
  return unknown_key(error, group, key, "backend, dialect, command-topic, feedback-topic,"
                     " initial-state, mia-pipeline-id, " MIA_ARTIFACT_ID "RESOURCE,"
                     " reconcile, reconcile-attempts");
}

static gboolean
parse_runtime(CtlConfig *cfg, GKeyFile *kf, const char *group, const char *runtime,
              const char *origin, GError **error)
{
  if (!ctl_name_valid(runtime))
    return file_error(error, origin, "[%s]: '%s' is not a valid runtime name", group, runtime);
  /* Keys not given follow [ctlfs], wherever in the file that group is. */
  CtlRuntimeConfig *rc = g_new0(CtlRuntimeConfig, 1);
  g_hash_table_replace(cfg->runtimes, g_strdup(runtime), rc);   /* NULLs: [ctlfs]'s */
  return parse_keys(cfg, kf, group, origin, runtime_key, rc, error);
}

static gboolean
parse_group(CtlConfig *cfg, GKeyFile *kf, const char *group, const char *origin, GError **error)
{
  if (strcmp(group, "rama") == 0)
    return parse_keys(cfg, kf, group, origin, rama_key, NULL, error);
  if (strcmp(group, "kafka") == 0)
    return parse_keys(cfg, kf, group, origin, kafka_key, NULL, error);
  if (strcmp(group, "topics") == 0)
    return parse_keys(cfg, kf, group, origin, topics_key, NULL, error);
  if (g_str_has_prefix(group, "runtime "))
    return parse_runtime(cfg, kf, group, group + strlen("runtime "), origin, error);
  if (strcmp(group, "ctlfs") == 0)
    return parse_settings(cfg, kf, origin, error);
  if (strcmp(group, ACCESS_GROUP) == 0)
    return parse_access(cfg, kf, group, NULL, origin, error);
  if (g_str_has_prefix(group, ACCESS_GROUP " "))
    return parse_access(cfg, kf, group, group + strlen(ACCESS_GROUP " "), origin, error);
  return file_error(error, origin,
                    "unknown group [%s] (ctlfs, access, access RUNTIME, runtime RUNTIME, rama, "
                    "kafka, topics)",
                    group);
}

/* Two runtimes reading one topic would each take the other's messages for
 * their own: every named topic belongs to one runtime, in one role. */
static gboolean
topics_distinct(CtlConfig *cfg, const char *origin, GError **error)
{
  g_autoptr(GHashTable) owner = g_hash_table_new(g_str_hash, g_str_equal);
  GHashTableIter it;
  gpointer name, value;
  g_hash_table_iter_init(&it, cfg->runtimes);
  while (g_hash_table_iter_next(&it, &name, &value)) {
    CtlRuntimeConfig *rc = value;
    const char *topics[] = { rc->command_topic, rc->feedback_topic };
    for (gsize i = 0; i < G_N_ELEMENTS(topics); i++) {
      if (!topics[i])
        continue;
      const char *other = g_hash_table_lookup(owner, topics[i]);
      if (other && strcmp(other, name) == 0)
        return file_error(error, origin, "[runtime %s]: topic %s is both its command and its"
                          " feedback topic", (char *) name, topics[i]);
      if (other)
        return file_error(error, origin, "[runtime %s]: topic %s is also runtime %s's",
                          (char *) name, topics[i], other);
      g_hash_table_insert(owner, (gpointer) topics[i], name);
    }
  }
  return TRUE;
}

gboolean
ctl_config_parse(CtlConfig *cfg, const char *data, gsize len, const char *origin, GError **error)
{
  GKeyFile *kf = g_key_file_new();
  GError *local = NULL;
  gboolean ok = g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &local);
  if (!ok)
    file_error(error, origin, "%s", local->message);
  g_clear_error(&local);
  char **groups = ok ? g_key_file_get_groups(kf, NULL) : NULL;
  for (int i = 0; ok && groups[i]; i++)
    ok = parse_group(cfg, kf, groups[i], origin, error);
  ok = ok && topics_distinct(cfg, origin, error);
  g_strfreev(groups);
  g_key_file_free(kf);
  return ok;
}

/* The whole file from FD. */
static gboolean
read_fd(int fd, GString *out)
{
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0)
      g_string_append_len(out, buf, n);
    else if (n == 0)
      return TRUE;
    else if (errno != EINTR)
      return FALSE;
  }
}

gboolean
ctl_config_load(CtlConfig *cfg, const char *path, GError **error)
{
  /* One descriptor for the mode and the text, so that both are the same
   * file's (a symlink is followed: its target's mode counts). */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  GString *data = g_string_new(NULL);
  if (fd < 0 || fstat(fd, &st) != 0 || !read_fd(fd, data)) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot read config %s: %s",
                path, g_strerror(e));
    if (fd >= 0)
      close(fd);
    g_string_free(data, TRUE);
    return FALSE;
  }
  close(fd);
  gboolean had_secret = ctl_kafka_props_have_secret((const char *const *) cfg->kafka_props);
  gboolean ok = ctl_config_parse(cfg, data->str, data->len, path, error);
  g_string_free(data, TRUE);
  const char *readers = ctl_kafka_secret_file_readers(st.st_mode, st.st_uid);
  if (ok && !had_secret && readers
      && ctl_kafka_props_have_secret((const char *const *) cfg->kafka_props)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                "%s holds [kafka] secrets and is readable by %s (mode %04o); chmod 600 it",
                path, readers, (unsigned) (st.st_mode & 07777));
    return FALSE;
  }
  return ok;
}
