/* The broker link (ctl_bus_link_up(), the `link` callback), from what
 * librdkafka tells of both clients: errors and statistics. They run on the
 * main loop, from rd_kafka_poll() and rd_kafka_consumer_poll(). */
#include "bus-private.h"

#include <jansson.h>

void
bus_set_link(CtlBus *bus, gboolean up)
{
  if (bus->link_up == up)
    return;
  bus->link_up = up;
  g_info("broker link %s", up ? "up" : "down");
  if (bus->cb.link)
    bus->cb.link(up, bus->user_data);
}

void
bus_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
  CtlBus *bus = opaque;
  /* Refused credentials or certificates are the operator's to fix: a
   * warning (once a minute: librdkafka retries every reconnect), not info. */
  gint64 now = g_get_monotonic_time();
  gboolean refused = err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL;
  if (refused)
    bus->auth_error_us = now;   /* a new client would be refused alike: no watchdog */
  gboolean loud = refused && now - bus->auth_warned_us >= 60 * G_USEC_PER_SEC;
  if (loud)
    bus->auth_warned_us = now;
  /* A fatal error ends the idempotent producer for good (a broker without
   * idempotence, or an ACL refusing IdempotentWrite): said loudly, once. */
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512] = "";
    rd_kafka_fatal_error(rk, why, sizeof why);
    g_warning("kafka: fatal: %s; the producer cannot send any more: commands fail until "
              "ctlfs is restarted against a broker that allows idempotent producers", why);
    return;
  }
  g_log(G_LOG_DOMAIN, loud ? G_LOG_LEVEL_WARNING : G_LOG_LEVEL_INFO, "kafka: %s: %s",
        rd_kafka_err2name(err), reason);
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    bus_set_link(bus, FALSE);
}

/* The link is up when a connection of the producer to some broker (bootstrap
 * or learned) is in state UP. Its statistics arrive every half second, so a
 * broker coming back shows within a second; losing every broker is reported
 * at once by bus_on_error(). The consumer's statistics are the watchdog's
 * only. */
int
bus_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
  CtlBus *bus = opaque;
  if (rk != bus->producer && rk != bus->consumer)
    return 0;     /* a client the watchdog is replacing */
  json_t *root = json_loadb(json, len, 0, NULL);
  json_t *brokers = json_object_get(root, "brokers");
  const char *name;
  json_t *b;
  gboolean up = FALSE;
  json_object_foreach(brokers, name, b) {
    if (g_strcmp0(json_string_value(json_object_get(b, "state")), "UP") == 0)
      up = TRUE;
  }
  if (root)
    bus_health_note(rk == bus->producer ? &bus->producer_health : &bus->consumer_health, up);
  if (root && rk == bus->producer)
    bus_set_link(bus, up);
  json_decref(root);
  return 0;
}

gboolean
ctl_bus_link_up(CtlBus *bus)
{
  return bus->link_up;
}
