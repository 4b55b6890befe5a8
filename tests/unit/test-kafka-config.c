/* The [kafka] group: librdkafka client properties, which ctlfs refuses,
 * checking them, masking credentials, and config files that hold them. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "kafka-props.h"

#define PASSWORD "hunter2-S3cr3t"

static gboolean
parse(CtlConfig *cfg, const char *text, GError **error)
{
  ctl_config_init(cfg);
  return ctl_config_parse(cfg, text, strlen(text), "test.conf", error);
}

static void
test_group_in_order(void)
{
  CtlConfig cfg;
  GError *error = NULL;
  g_assert_true(parse(&cfg,
                      "[kafka]\n"
                      "security.protocol=SASL_SSL\n"
                      "sasl.mechanism=SCRAM-SHA-512\n"
                      "sasl.username=ctlfs\n"
                      "sasl.password=" PASSWORD "\n"
                      "ssl.ca.location=/etc/ssl/kafka-ca.pem\n",
                      &error));
  g_assert_no_error(error);
  const char *const want[] = {
    "security.protocol", "SASL_SSL", "sasl.mechanism", "SCRAM-SHA-512",
    "sasl.username", "ctlfs", "sasl.password", PASSWORD,
    "ssl.ca.location", "/etc/ssl/kafka-ca.pem", NULL,
  };
  g_assert_cmpstrv(cfg.kafka_props, want);
  g_assert_true(ctl_kafka_props_check((const char *const *) cfg.kafka_props, &error));
  g_assert_no_error(error);

  /* The command line replaces a value in its place and appends new keys. */
  g_assert_true(ctl_config_set_kafka(&cfg, "sasl.mechanism", "SCRAM-SHA-256", TRUE, &error));
  g_assert_true(ctl_config_set_kafka(&cfg, "client.id", "ctlfs-adm1", TRUE, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(cfg.kafka_props[3], ==, "SCRAM-SHA-256");
  g_assert_cmpstr(cfg.kafka_props[10], ==, "client.id");
  g_assert_null(cfg.kafka_props[12]);

  /* A copy is a copy. */
  CtlConfig copy;
  ctl_config_copy(&copy, &cfg);
  g_assert_cmpstrv(copy.kafka_props, cfg.kafka_props);
  g_assert_true(copy.kafka_props != cfg.kafka_props);
  ctl_config_clear(&copy);
  ctl_config_clear(&cfg);

  ctl_config_init(&cfg);
  g_assert_nonnull(cfg.kafka_props);
  g_assert_null(cfg.kafka_props[0]);
  ctl_config_clear(&cfg);
}

static void
test_reserved_refused(void)
{
  const char *reserved[] = { "group.id", "enable.auto.commit", "enable.idempotence", "acks",
                             "request.required.acks", "message.timeout.ms", "bootstrap.servers",
                             "transactional.id", "statistics.interval.ms", NULL };
  for (int i = 0; reserved[i]; i++) {
    g_assert_nonnull(ctl_kafka_prop_reserved(reserved[i]));
    char *text = g_strdup_printf("[kafka]\n%s=1\n", reserved[i]);
    CtlConfig cfg;
    GError *error = NULL;
    g_assert_false(parse(&cfg, text, &error));
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "test.conf"));
    g_assert_nonnull(strstr(error->message, reserved[i]));
    g_assert_nonnull(strstr(error->message, "set by ctlfs itself"));
    g_clear_error(&error);
    /* ...and by the check, for a list made otherwise. */
    const char *props[] = { reserved[i], "1", NULL };
    g_assert_false(ctl_kafka_props_check(props, &error));
    g_assert_nonnull(strstr(error->message, reserved[i]));
    g_clear_error(&error);
    ctl_config_clear(&cfg);
    g_free(text);
  }
  /* base_conf's defaults are the user's to change. */
  g_assert_null(ctl_kafka_prop_reserved("client.id"));
  g_assert_null(ctl_kafka_prop_reserved("reconnect.backoff.max.ms"));
  g_assert_null(ctl_kafka_prop_reserved("security.protocol"));
}

static void
test_check_names_the_key(void)
{
  GError *error = NULL;
  const char *unknown[] = { "sasl.mechanizm", "PLAIN", NULL };
  g_assert_false(ctl_kafka_props_check(unknown, &error));
  g_assert_cmpstr(error->message, ==, "[kafka] sasl.mechanizm: No such configuration property");
  g_clear_error(&error);

  const char *invalid[] = { "security.protocol", "SASL_SSLL", NULL };
  g_assert_false(ctl_kafka_props_check(invalid, &error));
  g_assert_true(g_str_has_prefix(error->message, "[kafka] security.protocol: "));
  g_assert_null(strchr(error->message, '\n'));
  g_clear_error(&error);

  const char *fine[] = { "security.protocol", "SASL_PLAINTEXT", "sasl.mechanism", "PLAIN",
                         "sasl.username", "u", "sasl.password", PASSWORD, NULL };
  g_assert_true(ctl_kafka_props_check(fine, &error));
  g_assert_no_error(error);
  g_assert_true(ctl_kafka_props_check(NULL, &error));
}

static void
test_try_client(void)
{
  GError *error = NULL;
  const char *fine[] = { "security.protocol", "SASL_PLAINTEXT", "sasl.mechanism", "PLAIN",
                         "sasl.username", "u", "sasl.password", PASSWORD, NULL };
  g_assert_true(ctl_kafka_props_try_client(fine, &error));
  g_assert_no_error(error);
  const char *mechanism[] = { "security.protocol", "SASL_SSL", "sasl.mechanism", "NOPE", NULL };
  g_assert_false(ctl_kafka_props_try_client(mechanism, &error));
  g_assert_cmpstr(error->message, ==, "[kafka] Unsupported SASL mechanism: NOPE");
  g_clear_error(&error);
  const char *ca[] = { "security.protocol", "SSL", "ssl.ca.location", "/nonexistent/ca.pem",
                       "ssl.key.password", PASSWORD, NULL };
  g_assert_false(ctl_kafka_props_try_client(ca, &error));
  g_assert_true(g_str_has_prefix(error->message, "[kafka] ssl.ca.location"));
  g_assert_null(strstr(error->message, PASSWORD));
  g_clear_error(&error);
}

static void
test_secrets_masked(void)
{
  g_assert_true(ctl_kafka_prop_secret("sasl.password"));
  g_assert_true(ctl_kafka_prop_secret("ssl.key.password"));
  g_assert_true(ctl_kafka_prop_secret("ssl.keystore.password"));
  g_assert_true(ctl_kafka_prop_secret("sasl.oauthbearer.client.secret"));
  g_assert_true(ctl_kafka_prop_secret("ssl.key.pem"));
  g_assert_true(ctl_kafka_prop_secret("sasl.oauthbearer.config"));
  g_assert_false(ctl_kafka_prop_secret("sasl.username"));
  g_assert_false(ctl_kafka_prop_secret("ssl.key.location"));
  g_assert_false(ctl_kafka_prop_secret("ssl.ca.location"));
  g_assert_false(ctl_kafka_prop_secret("security.protocol"));

  const char *props[] = { "sasl.username", "alice", "sasl.password", PASSWORD, NULL };
  g_assert_true(ctl_kafka_props_have_secret(props));
  g_assert_false(ctl_kafka_props_have_secret(props + 2 + 2));
  char *m = ctl_kafka_props_mask("auth as alice with " PASSWORD " failed (\"" PASSWORD "\")", props);
  g_assert_cmpstr(m, ==, "auth as alice with *** failed (\"***\")");
  g_free(m);
  char *d = ctl_kafka_props_describe(props);
  g_assert_cmpstr(d, ==, "sasl.username=alice sasl.password=***");
  g_free(d);
  d = ctl_kafka_props_describe(NULL);
  g_assert_cmpstr(d, ==, "-");
  g_free(d);

  /* librdkafka's refusal of a credential's value does not echo it. */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  GError *error = NULL;
  const char *both[] = { "sasl.password", PASSWORD, "security.protocol", PASSWORD, NULL };
  g_assert_false(ctl_kafka_props_apply(conf, both, &error));
  g_assert_nonnull(strstr(error->message, "security.protocol"));
  g_assert_null(strstr(error->message, PASSWORD));
  g_assert_nonnull(strstr(error->message, "***"));
  g_clear_error(&error);
  rd_kafka_conf_destroy(conf);

  GError *e = g_error_new(G_FILE_ERROR, 0, "x " PASSWORD " y");
  ctl_kafka_props_mask_error(e, both);
  g_assert_cmpstr(e->message, ==, "x *** y");
  g_error_free(e);
  ctl_kafka_props_mask_error(NULL, both);
}

static void
test_command_line_refuses_credentials(void)
{
  CtlConfig cfg;
  ctl_config_init(&cfg);
  GError *error = NULL;
  g_assert_false(ctl_config_set_kafka(&cfg, "sasl.password", PASSWORD, TRUE, &error));
  g_assert_nonnull(strstr(error->message, "sasl.password"));
  g_assert_nonnull(strstr(error->message, "config file"));
  g_assert_null(strstr(error->message, PASSWORD));
  g_clear_error(&error);
  g_assert_null(cfg.kafka_props[0]);
  /* From the file it is fine; a user name on the command line too. */
  g_assert_true(ctl_config_set_kafka(&cfg, "sasl.password", PASSWORD, FALSE, &error));
  g_assert_true(ctl_config_set_kafka(&cfg, "sasl.username", "alice", TRUE, &error));
  g_assert_no_error(error);
  ctl_config_clear(&cfg);
}

static void
test_secret_file_modes(void)
{
  g_assert_null(ctl_kafka_secret_file_readers(0600, 1000));
  g_assert_null(ctl_kafka_secret_file_readers(0400, 1000));
  g_assert_cmpstr(ctl_kafka_secret_file_readers(0644, 1000), ==, "others");
  g_assert_cmpstr(ctl_kafka_secret_file_readers(0604, 0), ==, "others");
  g_assert_cmpstr(ctl_kafka_secret_file_readers(0640, 1000), ==, "its group");
  g_assert_null(ctl_kafka_secret_file_readers(0640, 0));   /* root:ctlfs 0640 */

  char *dir = g_dir_make_tmp("ctlfs-kafka-XXXXXX", NULL);
  char *path = g_build_filename(dir, "ctlfs.conf", NULL);
  const char *secret = "[kafka]\nsasl.username=alice\nsasl.password=" PASSWORD "\n";
  const char *plain = "[kafka]\nsecurity.protocol=SSL\nssl.ca.location=/etc/ca.pem\n";
  CtlConfig cfg;
  GError *error = NULL;

  g_assert_true(g_file_set_contents(path, secret, -1, NULL));
  g_assert_cmpint(chmod(path, 0644), ==, 0);
  ctl_config_init(&cfg);
  g_assert_false(ctl_config_load(&cfg, path, &error));
  char *want = g_strdup_printf("%s holds [kafka] secrets and is readable by others (mode 0644); "
                               "chmod 600 it", path);
  g_assert_cmpstr(error->message, ==, want);
  g_assert_null(strstr(error->message, PASSWORD));
  g_free(want);
  g_clear_error(&error);
  ctl_config_clear(&cfg);

  g_assert_cmpint(chmod(path, 0600), ==, 0);
  ctl_config_init(&cfg);
  g_assert_true(ctl_config_load(&cfg, path, &error));
  g_assert_no_error(error);
  ctl_config_clear(&cfg);

  /* No credential: the mode is the operator's business. */
  g_assert_true(g_file_set_contents(path, plain, -1, NULL));
  g_assert_cmpint(chmod(path, 0644), ==, 0);
  ctl_config_init(&cfg);
  g_assert_true(ctl_config_load(&cfg, path, &error));
  g_assert_no_error(error);
  ctl_config_clear(&cfg);

  unlink(path);
  rmdir(dir);
  g_free(path);
  g_free(dir);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/kafka/group-in-order", test_group_in_order);
  g_test_add_func("/kafka/reserved-refused", test_reserved_refused);
  g_test_add_func("/kafka/check-names-the-key", test_check_names_the_key);
  g_test_add_func("/kafka/try-client", test_try_client);
  g_test_add_func("/kafka/secrets-masked", test_secrets_masked);
  g_test_add_func("/kafka/command-line-refuses-credentials", test_command_line_refuses_credentials);
  g_test_add_func("/kafka/secret-file-modes", test_secret_file_modes);
  return g_test_run();
}
