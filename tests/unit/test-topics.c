/* The [topics] group, the comparison of a described topic with it, and the
 * bus's topic administration against librdkafka's mock cluster (which has
 * no Admin API: every check must end as "unavailable", on time). */
#include <string.h>

#include "bus.h"
#include "config.h"
#include "mockbroker.h"
#include "topic-settings.h"

static void
test_defaults(void)
{
  CtlTopicSettings s;
  ctl_topic_settings_init(&s);
  g_assert_cmpint(s.partitions, ==, -1);
  g_assert_cmpint(s.replication_factor, ==, -1);
  g_assert_true(s.create);
  g_assert_cmpint(s.timeout_ms, ==, 5000);
  const char *const command[] = { "cleanup.policy", "compact", NULL };
  const char *const feedback[] = { "cleanup.policy", "delete", "retention.ms", "604800000", NULL };
  g_assert_cmpstrv(s.configs[CTL_TOPIC_COMMAND], command);
  g_assert_cmpstrv(s.configs[CTL_TOPIC_TREE], command);
  g_assert_cmpstrv(s.configs[CTL_TOPIC_FEEDBACK], feedback);
  CtlTopicSettings copy;
  ctl_topic_settings_copy(&copy, &s);
  g_assert_cmpstrv(copy.configs[CTL_TOPIC_FEEDBACK], feedback);
  g_assert_true(copy.configs[CTL_TOPIC_FEEDBACK] != s.configs[CTL_TOPIC_FEEDBACK]);
  ctl_topic_settings_clear(&copy);
  ctl_topic_settings_clear(&s);
  g_assert_cmpstr(ctl_topic_role_name(CTL_TOPIC_FEEDBACK), ==, "feedback");
  g_assert_cmpstr(ctl_topic_outcome_name(CTL_TOPIC_UNAVAILABLE), ==, "unavailable");
}

static void
test_configs_parse(void)
{
  char **c = NULL;
  GError *error = NULL;
  g_assert_true(ctl_topic_configs_parse(" cleanup.policy = compact ;; min.insync.replicas=2;"
                                        "cleanup.policy=compact,delete", &c, &error));
  g_assert_no_error(error);
  const char *const want[] = { "cleanup.policy", "compact,delete", "min.insync.replicas", "2", NULL };
  g_assert_cmpstrv(c, want);
  char *text = ctl_topic_configs_format((const char *const *) c);
  g_assert_cmpstr(text, ==, "cleanup.policy=compact,delete;min.insync.replicas=2");
  g_free(text);
  g_strfreev(c);

  g_assert_true(ctl_topic_configs_parse("", &c, &error));
  g_assert_null(c[0]);
  g_strfreev(c);

  c = NULL;
  g_assert_false(ctl_topic_configs_parse("cleanup.policy", &c, &error));
  g_assert_nonnull(strstr(error->message, "cleanup.policy"));
  g_clear_error(&error);
  g_assert_false(ctl_topic_configs_parse("Cleanup Policy=x", &c, &error));
  g_clear_error(&error);
  g_assert_null(c);
}

static void
test_config_group(void)
{
  const char *text =
      "[topics]\n"
      "create=false\n"
      "partitions=1\n"
      "replication_factor=3\n"
      "timeout-ms=2000\n"
      "feedback-config=cleanup.policy=delete;retention.ms=86400000\n"
      "command-config=\n";
  CtlConfig cfg;
  ctl_config_init(&cfg);
  GError *error = NULL;
  g_assert_true(ctl_config_parse(&cfg, text, strlen(text), "test.conf", &error));
  g_assert_no_error(error);
  g_assert_false(cfg.topics.create);
  g_assert_cmpint(cfg.topics.partitions, ==, 1);
  g_assert_cmpint(cfg.topics.replication_factor, ==, 3);
  g_assert_cmpint(cfg.topics.timeout_ms, ==, 2000);
  g_assert_cmpstr(cfg.topics.configs[CTL_TOPIC_FEEDBACK][3], ==, "86400000");
  g_assert_null(cfg.topics.configs[CTL_TOPIC_COMMAND][0]);
  g_assert_cmpstr(cfg.topics.configs[CTL_TOPIC_TREE][1], ==, "compact");   /* untouched */
  CtlConfig copy;
  ctl_config_copy(&copy, &cfg);
  g_assert_cmpint(copy.topics.partitions, ==, 1);
  g_assert_cmpstrv(copy.topics.configs[CTL_TOPIC_FEEDBACK], cfg.topics.configs[CTL_TOPIC_FEEDBACK]);
  ctl_config_clear(&copy);
  ctl_config_clear(&cfg);

  const struct { const char *text, *names; } bad[] = {
    { "[topics]\npartitions=0\n", "partitions" },
    { "[topics]\npartitions=many\n", "partitions" },
    { "[topics]\nreplication-factor=-2\n", "replication-factor" },
    { "[topics]\ncreate=yes\n", "create" },
    { "[topics]\ntimeout-ms=0\n", "timeout-ms" },
    { "[topics]\ncommand-config=compact\n", "command-config" },
    { "[topics]\nretention=1\n", "retention" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    ctl_config_init(&cfg);
    g_assert_false(ctl_config_parse(&cfg, bad[i].text, strlen(bad[i].text), "test.conf", &error));
    g_assert_nonnull(strstr(error->message, "test.conf"));
    g_assert_nonnull(strstr(error->message, "[topics]"));
    g_assert_nonnull(strstr(error->message, bad[i].names));
    g_clear_error(&error);
    ctl_config_clear(&cfg);
  }
  /* -1 and "default": the broker's. */
  ctl_config_init(&cfg);
  const char *dflt = "[topics]\npartitions=default\nreplication-factor=-1\n";
  g_assert_true(ctl_config_parse(&cfg, dflt, strlen(dflt), "test.conf", &error));
  g_assert_cmpint(cfg.topics.partitions, ==, -1);
  g_assert_cmpint(cfg.topics.replication_factor, ==, -1);
  ctl_config_clear(&cfg);
}

static void
test_compare(void)
{
  CtlTopicSettings s;
  ctl_topic_settings_init(&s);
  const char *const compacted[] = { "cleanup.policy", "compact", "retention.ms", "1", NULL };
  const char *const deleted[] = { "cleanup.policy", "delete", "segment.ms", "1", NULL };
  const char *const empty[] = { NULL };

  /* Partitions not set: any count matches. */
  g_assert_null(ctl_topic_compare(&s, CTL_TOPIC_COMMAND, 3, 1, compacted));
  char *d = ctl_topic_compare(&s, CTL_TOPIC_COMMAND, 1, 1, deleted);
  g_assert_cmpstr(d, ==, "cleanup.policy=delete (want compact)");
  g_free(d);
  d = ctl_topic_compare(&s, CTL_TOPIC_FEEDBACK, 1, 1, deleted);
  g_assert_cmpstr(d, ==, "retention.ms not reported (want 604800000)");
  g_free(d);
  d = ctl_topic_compare(&s, CTL_TOPIC_FEEDBACK, 1, 1, compacted);
  g_assert_cmpstr(d, ==, "cleanup.policy=compact (want delete), retention.ms=1 (want 604800000)");
  g_free(d);

  s.partitions = 1;
  s.replication_factor = 3;
  d = ctl_topic_compare(&s, CTL_TOPIC_COMMAND, 3, 1, deleted);
  g_assert_cmpstr(d, ==, "partitions=3 (want 1), replication-factor=1 (want 3), "
                         "cleanup.policy=delete (want compact)");
  g_free(d);
  /* Configs unknown (NULL): only what is known is compared. */
  d = ctl_topic_compare(&s, CTL_TOPIC_COMMAND, 3, -1, NULL);
  g_assert_cmpstr(d, ==, "partitions=3 (want 1)");
  g_free(d);
  g_assert_null(ctl_topic_compare(&s, CTL_TOPIC_COMMAND, -1, -1, NULL));
  g_assert_null(ctl_topic_compare(&s, CTL_TOPIC_COMMAND, 1, 3, compacted));
  /* A role that wants nothing matches anything. */
  g_strfreev(s.configs[CTL_TOPIC_TREE]);
  s.configs[CTL_TOPIC_TREE] = g_new0(char *, 1);
  g_assert_null(ctl_topic_compare(&s, CTL_TOPIC_TREE, 1, 3, empty));
  ctl_topic_settings_clear(&s);
}

/* ---- against the mock cluster ---- */

typedef struct {
  int             calls;
  char           *topic;
  CtlTopicOutcome outcome;
  char           *detail;
} Checked;

static void
no_delivered(gpointer opaque, gboolean ok, int partition, gint64 offset, const char *reason, gboolean timed_out,
             gboolean possibly_persisted, gpointer user_data)
{
}

static void
no_batch(gpointer user_data)
{
}

static void
no_message(const char *topic, int partition, gint64 offset, const char *key, gsize key_len, const char *value,
           gsize value_len, const char *command_id, gpointer user_data)
{
}

static void
on_checked(const char *topic, CtlTopicRole role, CtlTopicOutcome outcome, const char *detail,
           gpointer user_data)
{
  Checked *c = user_data;
  c->calls++;
  g_free(c->topic);
  g_free(c->detail);
  c->topic = g_strdup(topic);
  c->outcome = outcome;
  c->detail = g_strdup(detail);
}

static const CtlBusCallbacks callbacks = {
  .delivered = no_delivered,
  .batch_begin = no_batch,
  .message = no_message,
  .batch_end = no_batch,
  .topic_checked = on_checked,
};

/* Runs the loop until C has CALLS answers or LIMIT_MS passed; the time taken. */
static gint64
wait_for(Checked *c, int calls, int limit_ms)
{
  gint64 start = g_get_monotonic_time();
  while (c->calls < calls && g_get_monotonic_time() - start < limit_ms * 1000) {
    if (!g_main_context_iteration(NULL, FALSE))
      g_usleep(1000);
  }
  return (g_get_monotonic_time() - start) / 1000;
}

static void
test_mock_has_no_admin(void)
{
  GError *error = NULL;
  CtlMockBroker *mb = ctl_mock_broker_new(1, &error);
  g_assert_no_error(error);
  g_assert_true(ctl_mock_broker_fault(mb, "topic pre.made 3", &error));
  g_assert_no_error(error);
  Checked c = { 0 };
  CtlBus *bus = ctl_bus_new(ctl_mock_broker_bootstraps(mb), NULL, 5000, &callbacks, &c, &error);
  g_assert_no_error(error);
  CtlTopicSettings s;
  ctl_topic_settings_init(&s);
  s.timeout_ms = 1000;
  s.partitions = 1;
  ctl_bus_set_topic_settings(bus, &s);

  /* A missing topic: CreateTopics waits for a controller the mock never
   * names, and the check ends with the request's timeout. */
  ctl_bus_ensure_topic(bus, "ctlfs.rt1.commands", CTL_TOPIC_COMMAND);
  ctl_bus_ensure_topic(bus, "ctlfs.rt1.commands", CTL_TOPIC_COMMAND);   /* one answer */
  gint64 ms = wait_for(&c, 1, 10000);
  g_assert_cmpint(c.calls, ==, 1);
  g_assert_cmpstr(c.topic, ==, "ctlfs.rt1.commands");
  g_assert_cmpint(c.outcome, ==, CTL_TOPIC_UNAVAILABLE);
  g_assert_cmpstr(c.detail, ==, "admin unavailable: CreateTopics timed out after 1000 ms "
                                "(broker may not support the Admin API)");
  g_assert_cmpint(ms, >=, 900);
  g_assert_cmpint(ms, <, 4000);
  wait_for(&c, 2, 300);
  g_assert_cmpint(c.calls, ==, 1);

  /* Known unavailable now: the next topic is answered from its metadata
   * alone, without another timeout; its partition count is still told. */
  ctl_bus_ensure_topic(bus, "pre.made", CTL_TOPIC_FEEDBACK);
  ms = wait_for(&c, 2, 10000);
  g_assert_cmpint(c.calls, ==, 2);
  g_assert_cmpint(c.outcome, ==, CTL_TOPIC_UNAVAILABLE);
  g_assert_nonnull(strstr(c.detail, "CreateTopics timed out"));
  g_assert_true(g_str_has_suffix(c.detail, "; partitions=3 (want 1)"));
  g_assert_cmpint(ms, <, 900);

  /* create=false: a missing topic is only reported. */
  s.create = FALSE;
  ctl_bus_set_topic_settings(bus, &s);
  ctl_bus_ensure_topic(bus, "not.there", CTL_TOPIC_TREE);
  wait_for(&c, 3, 10000);
  g_assert_cmpint(c.calls, ==, 3);
  g_assert_cmpint(c.outcome, ==, CTL_TOPIC_MISSING);

  /* An existing topic, the Admin API not yet known to be missing: its
   * configs are asked for (DescribeConfigs), in vain. */
  ctl_bus_ensure_topic(bus, "pre.made", CTL_TOPIC_COMMAND);
  ms = wait_for(&c, 4, 10000);
  g_assert_cmpint(c.calls, ==, 4);
  g_assert_cmpint(c.outcome, ==, CTL_TOPIC_UNAVAILABLE);
  g_assert_cmpstr(c.detail, ==, "admin unavailable: DescribeConfigs timed out after 1000 ms "
                                "(broker may not support the Admin API); partitions=3 (want 1)");
  g_assert_cmpint(ms, <, 4000);

  /* Freed with a check under way: no answer, no hang. */
  s.create = TRUE;
  ctl_bus_set_topic_settings(bus, &s);
  ctl_bus_ensure_topic(bus, "in.flight", CTL_TOPIC_COMMAND);
  wait_for(&c, 5, 200);
  gint64 start = g_get_monotonic_time();
  ctl_bus_free(bus, 0);
  g_assert_cmpint((g_get_monotonic_time() - start) / 1000, <, 3000);
  g_assert_cmpint(c.calls, ==, 4);
  ctl_topic_settings_clear(&s);
  ctl_mock_broker_free(mb);
  g_free(c.topic);
  g_free(c.detail);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  /* The admin's "unavailable" warning is expected (once): not fatal here. */
  g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_test_add_func("/topics/defaults", test_defaults);
  g_test_add_func("/topics/configs-parse", test_configs_parse);
  g_test_add_func("/topics/config-group", test_config_group);
  g_test_add_func("/topics/compare", test_compare);
  g_test_add_func("/topics/mock-has-no-admin", test_mock_has_no_admin);
  return g_test_run();
}
