/* The producer: its client, its topic handles and their partitioners, the
 * messages produced and their delivery reports (on the main loop, through
 * its queue's wake: queue-wake.h). */
#include "bus-private.h"

#include <string.h>

#include "message.h"

static int32_t partition_by_group(const rd_kafka_topic_t *rkt, const void *key, size_t len,
                                  int32_t count, void *topic_opaque, void *msg_opaque);

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
  CtlBus *bus = opaque;
  if (rk == bus->retired && bus_hand_over(bus, msg))
    return;
  gboolean ok = msg->err == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (ok)
    bus_set_link(bus, TRUE);
  gboolean timed_out = msg->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
                       || msg->err == RD_KAFKA_RESP_ERR__TIMED_OUT
                       || msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE;
  gboolean maybe = !ok && rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
  bus->cb.delivered(msg->_private, ok, msg->partition, msg->offset, ok ? NULL : rd_kafka_err2str(msg->err),
                    timed_out, maybe, bus->user_data);
}

static void
on_producer_ready(gpointer data)
{
  CtlBus *bus = data;
  while (rd_kafka_poll(bus->producer, 0) > 0)
    ;
}

gboolean
bus_producer_new(CtlBus *bus, const char *brokers, const char *const *kafka_props,
                 int timeout_ms, GError **error)
{
  rd_kafka_conf_t *conf = bus_base_conf(bus, brokers, kafka_props, error);
  if (!conf)
    return FALSE;
  char timeout[32];
  g_snprintf(timeout, sizeof timeout, "%d", timeout_ms);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_stats_cb(conf, bus_on_stats);
  if (!bus_conf_set(conf, "enable.idempotence", "true", error)
      || !bus_conf_set(conf, "acks", "all", error)
      || !bus_conf_set(conf, "linger.ms", "0", error)
      /* Keyed messages to the partition Java clients and kafkajs pick
       * (murmur2 of the key), so one resource's commands stay in one
       * partition, in order, whoever produced them. */
      || !bus_conf_set(conf, "partitioner", "murmur2_random", error)
      || !bus_conf_set(conf, "message.timeout.ms", timeout, error)
      || !bus_conf_set(conf, "statistics.interval.ms", "500", error)
      /* A topic whose metadata could not be had (broker down at start) is
       * asked for again within seconds, not librdkafka's 5 minutes: until
       * then the outbox's commands would wait in its queue. */
      || !bus_conf_set(conf, "topic.metadata.refresh.interval.ms", "2000", error)
      || !bus_conf_set(conf, "topic.metadata.refresh.fast.interval.ms", "100", error)) {
    rd_kafka_conf_destroy(conf);
    return FALSE;
  }
  bus->producer = bus_client_new(RD_KAFKA_PRODUCER, conf, error);
  if (!bus->producer)
    return FALSE;
  bus->pwake = ctl_queue_wake_new(rd_kafka_queue_get_main(bus->producer), on_producer_ready,
                                  bus, error);
  return bus->pwake != NULL;
}

/* The producer's handle of TOPIC, made on first use; `grouped` says which
 * partitioner, so that a producer made anew (the watchdog) makes the same. */
rd_kafka_topic_t *
bus_topic_handle(CtlBus *bus, const char *topic)
{
  rd_kafka_topic_t *rkt = g_hash_table_lookup(bus->topics, topic);
  if (rkt)
    return rkt;
  rd_kafka_topic_conf_t *tconf = NULL;
  if (g_hash_table_contains(bus->grouped, topic)) {
    tconf = rd_kafka_topic_conf_new();
    rd_kafka_topic_conf_set_partitioner_cb(tconf, partition_by_group);
  }
  rkt = rd_kafka_topic_new(bus->producer, topic, tconf);   /* takes TCONF */
  if (rkt)
    g_hash_table_insert(bus->topics, g_strdup(topic), rkt);
  return rkt;
}

void
ctl_bus_prepare_topic(CtlBus *bus, const char *topic)
{
  bus_topic_handle(bus, topic);
}

/* murmur2 of the key's first part, up to its first '/' (the whole key when
 * it has none): as Java clients would place a message keyed by that part. */
static int32_t
partition_by_group(const rd_kafka_topic_t *rkt, const void *key, size_t len, int32_t count,
                   void *topic_opaque, void *msg_opaque)
{
  const char *slash = key ? memchr(key, '/', len) : NULL;
  size_t group = slash ? (size_t) (slash - (const char *) key) : len;
  return rd_kafka_msg_partitioner_murmur2(rkt, key, group, count, topic_opaque, msg_opaque);
}

void
ctl_bus_prepare_grouped_topic(CtlBus *bus, const char *topic)
{
  g_hash_table_add(bus->grouped, g_strdup(topic));
  bus_topic_handle(bus, topic);
}

gboolean
ctl_bus_produce(CtlBus *bus, const char *topic, const char *key, const char *value,
                const char *const *headers, gpointer opaque, GError **error)
{
  rd_kafka_topic_t *rkt = bus_topic_handle(bus, topic);
  if (!rkt) {
    g_set_error(error, CTL_BUS_ERROR, 0, "kafka produce: cannot use topic %s", topic);
    return FALSE;
  }
  rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
  rd_kafka_header_add(hdrs, CTL_MSG_HEADER_NAME, -1, CTL_MSG_HEADER_VALUE, -1);
  for (gsize i = 0; headers && headers[i] && headers[i + 1]; i += 2)
    rd_kafka_header_add(hdrs, headers[i], -1, headers[i + 1], -1);
  rd_kafka_resp_err_t err = rd_kafka_producev(bus->producer,
      RD_KAFKA_V_RKT(rkt),
      RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
      RD_KAFKA_V_KEY(key, strlen(key)),
      RD_KAFKA_V_VALUE((void *) value, strlen(value)),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADERS(hdrs),
      RD_KAFKA_V_OPAQUE(opaque),
      RD_KAFKA_V_END);
  if (err) {
    rd_kafka_headers_destroy(hdrs);   /* ownership passes only on success */
    char why[512] = "";
    /* "Local: Fatal error" alone does not say what to fix. */
    if (err == RD_KAFKA_RESP_ERR__FATAL)
      rd_kafka_fatal_error(bus->producer, why, sizeof why);
    g_set_error(error, CTL_BUS_ERROR, err, "kafka produce: %s%s%s", rd_kafka_err2str(err),
                *why ? ": " : "", why);
    return FALSE;
  }
  return TRUE;
}

void
ctl_bus_purge_queued(CtlBus *bus)
{
  rd_kafka_purge(bus->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
  /* The purged messages' reports are queued now: serve them on the next wakeup. */
}
