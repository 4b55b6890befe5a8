/* A client made anew, when the watchdog (bus-watchdog.c) judges it stuck.
 *
 * A new consumer is assigned every partition anew, each from its stored
 * position (the `position` callback), as at start; ctl_bus_caught_up() waits
 * for every end again. A new producer takes over the old one's unsent
 * messages (bus_hand_over()), its topic handles (made again by
 * bus_topic_handle()) and the topic admin, checks under way included. */
#include "bus-private.h"

#include "kafka-props.h"

#define BUS_HANDOVER_MS 2000    /* the old producer's reports, at most */

/* ---- the producer made anew ---- */

/* A purged message of the retired producer: produced again on the new one
 * when it certainly never reached the broker. TRUE: handled here; FALSE: it
 * is reported failed as usual (it may be on the broker). */
gboolean
bus_hand_over(CtlBus *bus, const rd_kafka_message_t *msg)
{
  if ((msg->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && msg->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
      || rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED)
    return FALSE;
  rd_kafka_topic_t *rkt = bus_topic_handle(bus, rd_kafka_topic_name(msg->rkt));
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
    hdrs = rd_kafka_headers_copy(hdrs);
  rd_kafka_resp_err_t err = rkt ? rd_kafka_producev(bus->producer,
      RD_KAFKA_V_RKT(rkt),
      RD_KAFKA_V_PARTITION(msg->partition),   /* UA when it had none yet */
      RD_KAFKA_V_KEY(msg->key, msg->key_len),
      RD_KAFKA_V_VALUE(msg->payload, msg->len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADERS(hdrs),
      RD_KAFKA_V_OPAQUE(msg->_private),
      RD_KAFKA_V_END) : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
  if (err) {
    if (hdrs)
      rd_kafka_headers_destroy(hdrs);   /* ownership passes only on success */
    g_warning("kafka watchdog: a message could not move to the new producer: %s",
              rd_kafka_err2str(err));
  }
  return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Purges OLD, serving its reports (hand-overs, or failures) before it goes. */
static void
retire_producer(CtlBus *bus, rd_kafka_t *old)
{
  bus->retired = old;
  rd_kafka_purge(old, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  gint64 deadline = g_get_monotonic_time() + BUS_HANDOVER_MS * 1000;
  while (rd_kafka_outq_len(old) > 0 && g_get_monotonic_time() < deadline)
    rd_kafka_poll(old, 100);
  if (rd_kafka_outq_len(old) > 0)
    g_warning("kafka watchdog: %d reports of the old producer lost", rd_kafka_outq_len(old));
  bus->retired = NULL;
  rd_kafka_destroy(old);
}

void
bus_renew_producer(CtlBus *bus)
{
  rd_kafka_t *old = bus->producer;
  CtlQueueWake *old_wake = bus->pwake;
  bus->producer = NULL;
  bus->pwake = NULL;
  GError *error = NULL;
  if (!bus_producer_new(bus, bus->brokers, (const char *const *) bus->kafka_props,
                    bus->message_timeout_ms, &error)) {
    ctl_kafka_props_mask_error(error, (const char *const *) bus->kafka_props);
    g_warning("kafka watchdog: new producer: %s; keeping the old one", error->message);
    g_error_free(error);
    ctl_queue_wake_free(bus->pwake);
    if (bus->producer)
      rd_kafka_destroy(bus->producer);
    bus->producer = old;
    bus->pwake = old_wake;
    return;
  }
  g_hash_table_remove_all(bus->topics);   /* the old producer's handles */
  ctl_queue_wake_free(old_wake);          /* its reports are served below */
  bus_renew_admin(bus);
  retire_producer(bus, old);
}

/* ---- the consumer made anew ---- */

static void
drop_consumer(rd_kafka_t *rk, CtlQueueWake *wake)
{
  ctl_queue_wake_free(wake);   /* before its client: it holds a reference to a queue */
  ctl_kafka_consumer_close(rk, BUS_CLOSE_TIMEOUT_MS);
}

void
bus_renew_consumer(CtlBus *bus)
{
  rd_kafka_t *old = bus->consumer;
  CtlQueueWake *old_wake = bus->cwake;
  bus_discovery_stop(bus);   /* its thread asks the consumer for metadata */
  bus->consumer = NULL;
  bus->cwake = NULL;
  GError *error = NULL;
  if (bus_consumer_new(bus, bus->brokers, (const char *const *) bus->kafka_props, &error)) {
    bus_watches_rebuild(bus);    /* before the old consumer goes: its topic handles */
    drop_consumer(old, old_wake);
  } else {
    ctl_kafka_props_mask_error(error, (const char *const *) bus->kafka_props);
    g_warning("kafka watchdog: new consumer: %s; keeping the old one", error->message);
    g_error_free(error);
    drop_consumer(bus->consumer, bus->cwake);
    bus->consumer = old;
    bus->cwake = old_wake;
  }
  bus_discovery_start(bus);
  bus_discover_now(bus);       /* partitions added while the old one was stuck */
}
