/* libFuzzer target: ctl_config_parse() (core/config.h), the reader of the
 * --config file: [ctlfs] settings and the [access] / [access RT] policy.
 * Input: the file's bytes, any of them. An admin writes the file, but it is
 * parsed as root before anything is mounted, and a typo must end in a clear
 * one-line error rather than a crash or a half-applied policy. */
#include <glib.h>
#include <string.h>

/* GLib 2.74's own g_key_file_get_string() sets its GError twice for a value
 * with a bad escape followed by a trailing backslash ("k=a\q\"), and warns:
 * a GLib bug, harmless (the first error stands), not ctlfs's. Only that
 * warning passes: a GError that ctlfs's code sets twice carries ctlfs's
 * message as the overwriting one, not GKeyFile's. */
static gboolean
keyfile_double_error(const char *domain, const char *message)
{
  return g_strcmp0(domain, "GLib") == 0 && message != NULL
      && strstr(message, "GError set over the top") != NULL
      && strstr(message, "The overwriting error message was: Key file contains") != NULL;
}
#define FUZZ_LOG_TOLERATED(domain, message) keyfile_double_error(domain, message)

#include "config.h"
#include "name.h"
#include "fuzz.h"

/* The settings a successful parse leaves are ones the daemon can run with. */
static void
check_accepted(const CtlConfig *cfg)
{
  CHECK(cfg->brokers == NULL || (cfg->brokers[0] != '\0' && fuzz_text_ok(cfg->brokers)));
  CHECK(cfg->db_path == NULL || (cfg->db_path[0] != '\0' && fuzz_text_ok(cfg->db_path)));
  /* The prefix becomes part of topic names: the name alphabet, 1..128 bytes. */
  CHECK(cfg->topic_prefix != NULL && strlen(cfg->topic_prefix) <= CTL_NAME_MAX);
  CHECK(strspn(cfg->topic_prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._-") == strlen(cfg->topic_prefix));
  CHECK(cfg->topic_prefix[0] != '\0');
  CHECK(cfg->write_mode == CTL_WRITE_DURABLE || cfg->write_mode == CTL_WRITE_QUEUED);
  CHECK(cfg->ack_timeout_ms >= 1 && cfg->stale_after_ms >= 1);
  CHECK(cfg->policy != NULL);
}

/* GKeyFile can hand back a value AND an error (a bad escape, db=/tmp/\q):
 * an accepted file must have no value that GKeyFile could not interpret. */
static void
check_values_interpretable(const uint8_t *data, size_t size)
{
  GKeyFile *kf = g_key_file_new();
  CHECK(g_key_file_load_from_data(kf, (const char *) data, size, G_KEY_FILE_NONE, NULL));
  char **groups = g_key_file_get_groups(kf, NULL);
  for (int g = 0; groups[g]; g++) {
    char **keys = g_key_file_get_keys(kf, groups[g], NULL, NULL);
    for (int k = 0; keys && keys[k]; k++) {
      GError *error = NULL;
      g_free(g_key_file_get_string(kf, groups[g], keys[k], &error));
      CHECK(error == NULL);
    }
    g_strfreev(keys);
  }
  g_strfreev(groups);
  g_key_file_free(kf);
}

/* Parses DATA into a fresh config; returns the result and, on success, the
 * global policy as text (g_free) so that two parses can be compared. */
static gboolean
parse_once(const uint8_t *data, size_t size, char **described)
{
  CtlConfig cfg;
  GError *error = NULL;
  ctl_config_init(&cfg);
  gboolean ok = ctl_config_parse(&cfg, (const char *) data, size, "fuzz.conf", &error);
  if (ok) {
    CHECK(error == NULL);
    check_accepted(&cfg);
    *described = ctl_policy_describe(cfg.policy, NULL);
    CHECK(*described != NULL && fuzz_text_ok(*described));
  } else {
    /* SPEC.md: a bad config is "a one-line error naming it". It goes to the
     * admin's terminal, echoing the file's own bytes: UTF-8 is not asked. */
    CHECK(error != NULL);
    CHECK_TEXT(fuzz_line_ok, error->message);
    CHECK(strstr(error->message, "fuzz.conf") != NULL);
    g_error_free(error);
    *described = NULL;
  }
  /* On failure CFG may hold part of the file; clearing it frees all of it
   * (LeakSanitizer reports anything left). */
  ctl_config_clear(&cfg);
  return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *first = NULL, *second = NULL;
  gboolean ok = parse_once(data, size, &first);
  if (ok)
    check_values_interpretable(data, size);
  /* Nothing outside the text decides the outcome (no state kept between
   * parses): the same text gives the same answer and the same policy. */
  CHECK(parse_once(data, size, &second) == ok);
  CHECK(fuzz_same(first, second));
  g_free(first);
  g_free(second);
  return 0;
}
