/* The bus made and freed, and what both its clients are configured with.
 * The bus's other concepts live beside it, one a file (bus-private.h). */
#include "bus-private.h"

#include "kafka-props.h"

G_DEFINE_QUARK(ctl-bus-error-quark, ctl_bus_error)

gboolean
bus_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, GError **error)
{
  char err[256];
  if (rd_kafka_conf_set(conf, key, value, err, sizeof err) == RD_KAFKA_CONF_OK)
    return TRUE;
  g_set_error(error, CTL_BUS_ERROR, 0, "kafka option %s=%s: %s", key, value, err);
  return FALSE;
}

rd_kafka_t *
bus_client_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, GError **error)
{
  char err[256];
  rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    g_set_error(error, CTL_BUS_ERROR, 0, "kafka client: %s", err);
  }
  return rk;
}

static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
  /* librdkafka's own chatter is debugging detail; its errors reach bus_on_error. */
  g_debug("rdkafka %s: %s", fac, buf);
}

/* ctlfs's defaults for both clients, then the user's KAFKA_PROPS over them
 * (those that bus_producer_new and bus_consumer_new set after this are
 * reserved: kafka-props.c). */
rd_kafka_conf_t *
bus_base_conf(CtlBus *bus, const char *brokers, const char *const *kafka_props, GError **error)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_opaque(conf, bus);
  rd_kafka_conf_set_error_cb(conf, bus_on_error);
  rd_kafka_conf_set_log_cb(conf, on_log);
  if (bus_conf_set(conf, "bootstrap.servers", brokers, error)
      && bus_conf_set(conf, "client.id", "ctlfs", error)
      && bus_conf_set(conf, "socket.nagle.disable", "true", error)
      && bus_conf_set(conf, "reconnect.backoff.ms", "20", error)
      && bus_conf_set(conf, "reconnect.backoff.max.ms", "500", error)
      /* librdkafka's own tracing, for a bug report: CTLFS_KAFKA_DEBUG=all or
       * a list such as "consumer,fetch,topic" (see librdkafka's "debug"). */
      && (!g_getenv("CTLFS_KAFKA_DEBUG")
          || bus_conf_set(conf, "debug", g_getenv("CTLFS_KAFKA_DEBUG"), error))
      && ctl_kafka_props_apply(conf, kafka_props, error))
    return conf;
  rd_kafka_conf_destroy(conf);
  return NULL;
}

CtlBus *
ctl_bus_new(const char *brokers, const char *const *kafka_props, int message_timeout_ms,
            const CtlBusCallbacks *cb, gpointer user_data, GError **error)
{
  CtlBus *bus = g_new0(CtlBus, 1);
  bus->cb = *cb;
  bus->user_data = user_data;
  bus->watched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, bus_watch_free);
  bus->assigned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  bus->topics = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify) rd_kafka_topic_destroy);
  bus->grouped = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  bus->brokers = g_strdup(brokers);
  bus->kafka_props = g_strdupv((char **) kafka_props);
  bus->message_timeout_ms = message_timeout_ms;
  ctl_topic_settings_init(&bus->topic_settings);
  if (!bus_producer_new(bus, brokers, kafka_props, message_timeout_ms, error)
      || !bus_consumer_new(bus, brokers, kafka_props, error)) {
    ctl_kafka_props_mask_error(error ? *error : NULL, kafka_props);
    ctl_bus_free(bus, 0);
    return NULL;
  }
  bus_discovery_start(bus);
  /* Ask once at start, briefly, so that status tells the truth from the first
   * read rather than from the first statistics half a second later. */
  const struct rd_kafka_metadata *md = NULL;
  if (rd_kafka_metadata(bus->producer, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    bus->link_up = TRUE;
    rd_kafka_metadata_destroy(md);
  }
  bus_watchdog_start(bus);
  return bus;
}

void
ctl_bus_free(CtlBus *bus, int flush_ms)
{
  if (!bus)
    return;
  if (bus->reassign_src)
    g_source_remove(bus->reassign_src);
  bus_watchdog_stop(bus);
  ctl_topic_admin_free(bus->admin);   /* uses the producer */
  ctl_topic_settings_clear(&bus->topic_settings);
  /* The wakes go before their clients: each holds a reference to a queue. */
  bus_discovery_stop(bus);
  ctl_queue_wake_free(bus->cwake);
  g_hash_table_remove_all(bus->watched);   /* their topic handles, before the client */
  ctl_kafka_consumer_close(bus->consumer, BUS_CLOSE_TIMEOUT_MS);
  ctl_queue_wake_free(bus->pwake);
  if (bus->producer) {
    rd_kafka_flush(bus->producer, flush_ms);
    /* Whatever is left is reported as failed, so no caller waits forever. */
    rd_kafka_purge(bus->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(bus->producer, 0);
    g_hash_table_remove_all(bus->topics);
    rd_kafka_destroy(bus->producer);
  }
  g_hash_table_unref(bus->watched);
  g_hash_table_unref(bus->assigned);
  g_hash_table_unref(bus->topics);
  g_hash_table_unref(bus->grouped);
  g_free(bus->brokers);
  g_strfreev(bus->kafka_props);
  g_free(bus);
}
