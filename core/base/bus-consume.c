/* The consumer: its client, and the messages it reads, in batches, on the
 * main loop (through its queue's wake: queue-wake.h). Which partitions it
 * reads is bus-assign.c's. */
#include "bus-private.h"

#include "message.h"

/* ---- caught up: every assigned partition read to its end once (what the
 * janitor waits for before it counts silence). librdkafka signals an end
 * once per end offset, so an outage is not asked to end with a new one: a
 * dead runtime's partition gets no new message. Right after an outage,
 * what was produced meanwhile is read within a fetch round; the janitor
 * restarts its clocks when the link comes back besides. ---- */

static void
reached_end(CtlBus *bus, const char *topic, int partition)
{
  Watch *w = topic ? g_hash_table_lookup(bus->watched, topic) : NULL;
  if (w && partition >= 0 && (guint) partition < w->at_end->len)
    g_array_index(w->at_end, gboolean, partition) = TRUE;
}

gboolean
ctl_bus_caught_up(CtlBus *bus)
{
  if (!bus->link_up)
    return FALSE;
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, NULL, &value)) {
    Watch *w = value;
    if (w->assigned < w->partitions)
      return FALSE;
    for (guint p = 0; p < w->at_end->len; p++)
      if (!g_array_index(w->at_end, gboolean, p))
        return FALSE;
  }
  return TRUE;
}

static void
handle_message(CtlBus *bus, rd_kafka_message_t *m)
{
  const char *topic = rd_kafka_topic_name(m->rkt);
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    reached_end(bus, topic, m->partition);
    return;
  }
  if (m->err) {
    /* Unknown topics before their first message, end of partition: not data. */
    g_debug("kafka consumer: %s: %s", topic ? topic : "-", rd_kafka_message_errstr(m));
    return;
  }
  if (!g_hash_table_contains(bus->watched, topic))
    return;    /* unwatched while the message was queued */
  /* The ctlfs-id header, copied out NUL-terminated when it has an id's size. */
  char id[CTL_MSG_ID_MAX + 1];
  const char *command_id = NULL;
  rd_kafka_headers_t *hdrs;
  const void *hv;
  size_t hlen;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR
      && rd_kafka_header_get_last(hdrs, CTL_MSG_HEADER_ID, &hv, &hlen) == RD_KAFKA_RESP_ERR_NO_ERROR
      && hv && hlen > 0 && hlen <= CTL_MSG_ID_MAX && !memchr(hv, '\0', hlen)) {
    memcpy(id, hv, hlen);
    id[hlen] = '\0';
    command_id = id;
  }
  bus->cb.message(topic, m->partition, m->offset, m->key, m->key_len, m->payload, m->len, command_id,
                  bus->user_data);
}

/* At most this many messages per wakeup, so FUSE requests keep flowing while a
 * backlog is consumed. */
#define BATCH_MAX 512

static void
on_consumer_ready(gpointer data)
{
  CtlBus *bus = data;
  rd_kafka_message_t *m = rd_kafka_consumer_poll(bus->consumer, 0);
  if (!m)
    return;
  bus->cb.batch_begin(bus->user_data);
  int n = 0;
  do {
    bus_set_link(bus, TRUE);
    handle_message(bus, m);
    rd_kafka_message_destroy(m);
  } while (++n < BATCH_MAX && (m = rd_kafka_consumer_poll(bus->consumer, 0)) != NULL);
  bus->cb.batch_end(bus->user_data);
  if (n == BATCH_MAX)   /* more may wait: come back after other sources ran */
    ctl_queue_wake_kick(bus->cwake);
}

gboolean
bus_consumer_new(CtlBus *bus, const char *brokers, const char *const *kafka_props, GError **error)
{
  rd_kafka_conf_t *conf = bus_base_conf(bus, brokers, kafka_props, error);
  if (!conf)
    return FALSE;
  /* Offsets live in SQLite with the state they produced (seed 003); the group id
   * exists only because librdkafka's consumer wants one. */
  if (!bus_conf_set(conf, "group.id", "ctlfs", error)
      || !bus_conf_set(conf, "enable.auto.commit", "false", error)
      /* No group membership (partitions are assigned), but a destroy with
       * the broker gone waits out the session: Kafka's smallest. */
      || !bus_conf_set(conf, "session.timeout.ms", "6000", error)
      || !bus_conf_set(conf, "enable.auto.offset.store", "false", error)
      || !bus_conf_set(conf, "allow.auto.create.topics", "true", error)
      || !bus_conf_set(conf, "auto.offset.reset", "earliest", error)
      /* The end of each partition is an event: ctl_bus_caught_up() */
      || !bus_conf_set(conf, "enable.partition.eof", "true", error)
      /* A real broker answers a fetch as soon as data arrives; librdkafka's mock
       * broker waits the whole time, which a round trip then pays twice. */
      || !bus_conf_set(conf, "fetch.wait.max.ms", "5", error)
      || !bus_conf_set(conf, "fetch.error.backoff.ms", "50", error)
      /* For the watchdog only: whether the consumer has a broker UP. */
      || !bus_conf_set(conf, "statistics.interval.ms", "1000", error)
      || !bus_conf_set(conf, "topic.metadata.refresh.interval.ms", "2000", error)
      /* A topic another host is creating right now (its first command) is
       * looked up again soon, not after librdkafka's 250 ms-and-more. */
      || !bus_conf_set(conf, "topic.metadata.refresh.fast.interval.ms", "20", error)) {
    rd_kafka_conf_destroy(conf);
    return FALSE;
  }
  rd_kafka_conf_set_stats_cb(conf, bus_on_stats);
  bus->consumer = bus_client_new(RD_KAFKA_CONSUMER, conf, error);
  if (!bus->consumer)
    return FALSE;
  rd_kafka_poll_set_consumer(bus->consumer);
  bus->cwake = ctl_queue_wake_new(rd_kafka_queue_get_consumer(bus->consumer), on_consumer_ready,
                                  bus, error);
  return bus->cwake != NULL;
}
