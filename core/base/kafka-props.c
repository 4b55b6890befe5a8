/* librdkafka client properties given by the user (see kafka-props.h). */
#include "kafka-props.h"

#include <string.h>
#include <sys/stat.h>

G_DEFINE_QUARK(ctl-kafka-props-error-quark, ctl_kafka_props_error)
#define CTL_KAFKA_PROPS_ERROR (ctl_kafka_props_error_quark())

/* The properties ctlfs sets itself and depends on (core/base/bus.c's
 * producer_new and consumer_new, and bootstrap.servers), librdkafka's
 * aliases included. The defaults bus.c's base_conf() sets for both clients
 * (client.id, socket.nagle.disable, reconnect.backoff.ms and .max.ms) are
 * not here: a user may override those. */
static const struct {
  const char *key;
  const char *why;
} reserved[] = {
  { "bootstrap.servers", "set brokers= in [ctlfs] or --brokers instead" },
  { "metadata.broker.list", "set brokers= in [ctlfs] or --brokers instead" },
  /* A durable write's answer is the broker's acknowledgement by all
   * in-sync replicas of an idempotent producer, within --ack-timeout-ms. */
  { "enable.idempotence", "durable writes need the idempotent producer" },
  { "acks", "durable writes need acks=all" },
  { "request.required.acks", "durable writes need acks=all" },
  { "message.timeout.ms", "set by --ack-timeout-ms and --write-mode" },
  { "delivery.timeout.ms", "set by --ack-timeout-ms and --write-mode" },
  { "transactional.id", "ctlfs's producer is not transactional" },
  { "linger.ms", "a command is sent at once" },
  { "queue.buffering.max.ms", "a command is sent at once" },
  { "statistics.interval.ms", "the broker link (status) is followed from the statistics" },
  { "topic.metadata.refresh.interval.ms", "new runtimes' topics are looked up within seconds" },
  { "topic.metadata.refresh.fast.interval.ms", "new runtimes' topics are looked up within seconds" },
  /* Offsets live in SQLite with the state they produced (seed 003). */
  { "group.id", "consumer offsets live in ctlfs's database, not in a group" },
  { "enable.auto.commit", "consumer offsets live in ctlfs's database" },
  { "auto.commit.enable", "consumer offsets live in ctlfs's database" },
  { "enable.auto.offset.store", "consumer offsets live in ctlfs's database" },
  { "auto.offset.reset", "consumer offsets live in ctlfs's database" },
  { "allow.auto.create.topics", "see the [topics] group" },
  { "enable.partition.eof", "the janitor waits for every partition's end" },
  { "partitioner", "commands are keyed by resource with murmur2, as Java clients do" },
  { "fetch.wait.max.ms", "feedback is read as soon as it arrives" },
  { "fetch.error.backoff.ms", "feedback is read as soon as it arrives" },
};

const char *
ctl_kafka_prop_reserved(const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS(reserved); i++)
    if (strcmp(key, reserved[i].key) == 0)
      return reserved[i].why;
  return NULL;
}

gboolean
ctl_kafka_prop_secret(const char *key)
{
  char *k = g_ascii_strdown(key, -1);
  gboolean secret = strstr(k, "password") || strstr(k, "secret")
                    || strcmp(k, "ssl.key.pem") == 0
                    || strcmp(k, "sasl.oauthbearer.config") == 0;
  g_free(k);
  return secret;
}

gboolean
ctl_kafka_props_have_secret(const char *const *props)
{
  for (gsize i = 0; props && props[i] && props[i + 1]; i += 2)
    if (ctl_kafka_prop_secret(props[i]))
      return TRUE;
  return FALSE;
}

char *
ctl_kafka_props_mask(const char *text, const char *const *props)
{
  char *out = g_strdup(text);
  for (gsize i = 0; props && props[i] && props[i + 1]; i += 2) {
    if (!ctl_kafka_prop_secret(props[i]) || !*props[i + 1])
      continue;
    /* Every occurrence, even inside a word: a short password may mangle
     * the text around it, which is the lesser harm. */
    char **parts = g_strsplit(out, props[i + 1], -1);
    g_free(out);
    out = g_strjoinv(CTL_KAFKA_MASK, parts);
    g_strfreev(parts);
  }
  return out;
}

void
ctl_kafka_props_mask_error(GError *error, const char *const *props)
{
  if (!error)
    return;
  char *masked = ctl_kafka_props_mask(error->message, props);
  g_free(error->message);
  error->message = masked;
}

/* One property on CONF; the error names the key and never a credential. */
static gboolean
set_one(rd_kafka_conf_t *conf, const char *key, const char *value, const char *const *props,
        GError **error)
{
  char err[512];
  rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key, value, err, sizeof err);
  if (res == RD_KAFKA_CONF_OK)
    return TRUE;
  char *why = res == RD_KAFKA_CONF_UNKNOWN ? g_strdup("No such configuration property")
                                           : ctl_kafka_props_mask(err, props);
  if (ctl_kafka_prop_secret(key) && res != RD_KAFKA_CONF_UNKNOWN) {
    /* The mask catches the value itself; librdkafka may also quote a part
     * of it. Nothing of a credential's text is worth the risk. */
    g_free(why);
    why = g_strdup("Invalid value (not shown: a credential)");
  }
  g_set_error(error, CTL_KAFKA_PROPS_ERROR, res, "[kafka] %s: %s", key, why);
  g_free(why);
  return FALSE;
}

gboolean
ctl_kafka_props_apply(rd_kafka_conf_t *conf, const char *const *props, GError **error)
{
  for (gsize i = 0; props && props[i] && props[i + 1]; i += 2)
    if (!set_one(conf, props[i], props[i + 1], props, error))
      return FALSE;
  return TRUE;
}

gboolean
ctl_kafka_props_check(const char *const *props, GError **error)
{
  for (gsize i = 0; props && props[i] && props[i + 1]; i += 2) {
    const char *why = ctl_kafka_prop_reserved(props[i]);
    if (why) {
      g_set_error(error, CTL_KAFKA_PROPS_ERROR, 0, "[kafka] %s: set by ctlfs itself (%s)",
                  props[i], why);
      return FALSE;
    }
  }
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  gboolean ok = ctl_kafka_props_apply(conf, props, error);
  rd_kafka_conf_destroy(conf);
  return ok;
}

static void
quiet(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
  g_debug("rdkafka %s: %s", fac, buf);
}

gboolean
ctl_kafka_props_try_client(const char *const *props, GError **error)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, quiet);
  if (!ctl_kafka_props_apply(conf, props, error)) {
    rd_kafka_conf_destroy(conf);
    return FALSE;
  }
  char err[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    char *why = ctl_kafka_props_mask(err, props);
    g_set_error(error, CTL_KAFKA_PROPS_ERROR, 0, "[kafka] %s", why);
    g_free(why);
    return FALSE;
  }
  rd_kafka_destroy(rk);
  return TRUE;
}

char *
ctl_kafka_props_describe(const char *const *props)
{
  GString *out = g_string_new(NULL);
  for (gsize i = 0; props && props[i] && props[i + 1]; i += 2)
    g_string_append_printf(out, "%s%s=%s", out->len ? " " : "", props[i],
                           ctl_kafka_prop_secret(props[i]) ? CTL_KAFKA_MASK : props[i + 1]);
  if (!out->len)
    g_string_append_c(out, '-');
  return g_string_free(out, FALSE);
}

const char *
ctl_kafka_secret_file_readers(mode_t mode, uid_t owner)
{
  if (mode & S_IROTH)
    return "others";
  if ((mode & S_IRGRP) && owner != 0)
    return "its group";
  return NULL;
}
