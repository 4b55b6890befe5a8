/* The watchdog: whether a client is stuck, and then a new one.
 *
 * A daemon started while its broker was down has been seen (librdkafka 2.0.2,
 * its mock cluster; about one start in twenty on a loaded machine, never
 * reproduced on an idle one) never to connect again once the broker was back:
 * the client's broker threads went on without a connection, broker_link
 * stayed down and the outbox waited, until a restart. Whatever the cause
 * inside librdkafka, the cure that always worked was a new client, so this
 * watchdog makes one, and only when it is certainly needed:
 *
 *   a client (producer or consumer) has had no broker connection in state UP
 *   (from its statistics, every 0.5 s / 1 s) for its patience (BUS_STUCK_MS,
 *   doubled after each renewal that did not help), no broker refused its
 *   credentials or TLS meanwhile (a new client would be refused alike), and
 *   plain TCP connections to a bootstrap server (a probe a second while a
 *   client is down) have succeeded for the grace (4 s by default): the
 *   broker answers, and has answered long enough for a healthy client to
 *   have reconnected by itself (its reconnect backoff, then its next
 *   statistics). Without the grace, a broker coming back after an outage
 *   would see both clients made anew a moment before they reconnected.
 *
 * The clients are made anew by bus-renew.c. */
#include "bus-private.h"

#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

#define BUS_STUCK_MS        5000    /* a healthy client reconnects within ~1 s */
#define BUS_PATIENCE_MAX_MS 300000  /* renewals that do not help: rarely */
#define BUS_PROBE_S         1       /* the probe's connect timeout */
#define BUS_PROBE_AFTER_MS  1000    /* a client down this long: probes, a second apart */

typedef struct BusProbe {
  char        **hosts;      /* host:port, without a protocol:// */
  GCancellable *cancel;
  gboolean      answered;   /* the thread's result: one of them accepted */
  GMainContext *context;    /* the bus's */
  GSource      *done;       /* on_probe_done(), attached there by the thread as it ends */
  GThread      *thread;
} BusProbe;

static void
health_reset(BusHealth *h, int patience_ms)
{
  h->up = FALSE;
  h->seen_up = g_get_monotonic_time();
  h->patience_ms = patience_ms;
}

void
bus_health_note(BusHealth *h, gboolean up)
{
  h->up = up;
  if (up) {
    h->seen_up = g_get_monotonic_time();
    h->patience_ms = BUS_STUCK_MS;
  }
}

static gboolean
down_for(const BusHealth *h, gint64 now, int ms)
{
  return !h->up && now - h->seen_up >= (gint64) ms * 1000;
}

static gboolean
stuck(CtlBus *bus, const BusHealth *h, gint64 now)
{
  return down_for(h, now, h->patience_ms)
         && now - bus->auth_error_us >= (gint64) BUS_STUCK_MS * 1000
         && bus->answering_since && now - bus->answering_since >= (gint64) bus->grace_ms * 1000;
}

/* Twice the longest reconnect backoff (the user may set it), and 3 s for a
 * connection and the statistics that show it. */
static int
grace_of(rd_kafka_t *rk)
{
  char v[32];
  size_t n = sizeof v;
  int backoff = 500;
  if (rd_kafka_conf_get(rd_kafka_conf(rk), "reconnect.backoff.max.ms", v, &n) == RD_KAFKA_CONF_OK)
    backoff = atoi(v);
  return 2 * backoff + 3000;
}

/* ---- the probe: a thread of its own (name lookups and connects block) ---- */

static gpointer
probe_thread(gpointer data)
{
  BusProbe *p = data;
  GSocketClient *client = g_socket_client_new();
  g_socket_client_set_timeout(client, BUS_PROBE_S);
  for (char **h = p->hosts; *h && !p->answered; h++) {
    GSocketConnection *conn = g_socket_client_connect_to_host(client, *h, 9092, p->cancel, NULL);
    if (conn) {
      p->answered = TRUE;
      g_object_unref(conn);   /* closes it */
    }
  }
  g_object_unref(client);
  g_source_attach(p->done, p->context);   /* the result, to the main loop */
  return NULL;
}

/* Joins the thread: it has ended, or ends at once once cancelled. */
static gboolean
probe_free(BusProbe *p)
{
  g_cancellable_cancel(p->cancel);
  g_thread_join(p->thread);
  gboolean answered = p->answered;
  g_source_destroy(p->done);
  g_source_unref(p->done);
  g_main_context_unref(p->context);
  g_object_unref(p->cancel);
  g_strfreev(p->hosts);
  g_free(p);
  return answered;
}

/* TRUE when H's client is to be made anew (now): then, whether that works
 * or not, it is not tried again before twice the patience. */
static gboolean
give_up_on(CtlBus *bus, BusHealth *h, const char *which, gint64 now)
{
  if (!stuck(bus, h, now))
    return FALSE;
  g_warning("kafka %s: no broker connection for %" G_GINT64_FORMAT " s while the broker"
            " answers: making it anew", which, (now - h->seen_up) / G_USEC_PER_SEC);
  health_reset(h, MIN(h->patience_ms * 2, BUS_PATIENCE_MAX_MS));
  return TRUE;
}

static gboolean
on_probe_done(gpointer data)
{
  CtlBus *bus = data;
  gboolean answered = probe_free(g_steal_pointer(&bus->probe));
  gint64 now = g_get_monotonic_time();
  if (!answered) {
    bus->answering_since = 0;
    return G_SOURCE_REMOVE;
  }
  if (!bus->answering_since)
    bus->answering_since = now;
  if (give_up_on(bus, &bus->producer_health, "producer", now))
    bus_renew_producer(bus);
  if (give_up_on(bus, &bus->consumer_health, "consumer", now))
    bus_renew_consumer(bus);
  return G_SOURCE_REMOVE;
}

/* "PLAINTEXT://a:9092, b:9092" -> "a:9092", "b:9092" */
static char **
bootstrap_hosts(const char *brokers)
{
  char **hosts = g_strsplit(brokers, ",", -1);
  GPtrArray *out = g_ptr_array_new();
  for (char **h = hosts; *h; h++) {
    const char *scheme = strstr(*h, "://");
    char *host = g_strstrip(g_strdup(scheme ? scheme + 3 : *h));
    if (*host)
      g_ptr_array_add(out, host);
    else
      g_free(host);
  }
  g_strfreev(hosts);
  g_ptr_array_add(out, NULL);
  return (char **) g_ptr_array_free(out, FALSE);
}

static void
probe_start(CtlBus *bus)
{
  BusProbe *p = g_new0(BusProbe, 1);
  p->hosts = bootstrap_hosts(bus->brokers);
  p->cancel = g_cancellable_new();
  p->context = g_main_context_ref_thread_default();
  p->done = g_idle_source_new();
  g_source_set_callback(p->done, on_probe_done, bus, NULL);
  p->thread = g_thread_new("ctlfs-probe", probe_thread, p);
  bus->probe = p;
}

/* Probes while a client is down, from its first second on: by its patience,
 * how long the broker has answered is known. */
static gboolean
on_watchdog(gpointer data)
{
  CtlBus *bus = data;
  gint64 now = g_get_monotonic_time();
  if (!down_for(&bus->producer_health, now, BUS_PROBE_AFTER_MS)
      && !down_for(&bus->consumer_health, now, BUS_PROBE_AFTER_MS))
    bus->answering_since = 0;    /* an episode is over */
  else if (!bus->probe)
    probe_start(bus);
  return G_SOURCE_CONTINUE;
}

void
bus_watchdog_start(CtlBus *bus)
{
  health_reset(&bus->producer_health, BUS_STUCK_MS);
  health_reset(&bus->consumer_health, BUS_STUCK_MS);
  bus->grace_ms = grace_of(bus->producer);
  bus->watchdog_src = g_timeout_add_seconds(1, on_watchdog, bus);
}

void
bus_watchdog_stop(CtlBus *bus)
{
  g_clear_handle_id(&bus->watchdog_src, g_source_remove);
  if (bus->probe)
    probe_free(g_steal_pointer(&bus->probe));
}
