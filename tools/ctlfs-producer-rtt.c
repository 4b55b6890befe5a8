/* ctlfs-producer-rtt: what one command costs a long-lived librdkafka producer
 * configured as ctlfs's, with no filesystem in front of it. ctlfs-bench
 * compares ctlfs's write latency with this: the difference is ctlfs's own.
 *
 *   ctlfs-producer-rtt --brokers=B [--topic=T] [-n N] [--warmup=W]
 *
 * Messages go one at a time: each is produced and polled for until its
 * delivery report arrives, as a synchronous `echo verb > state` waits in
 * ctlfs. Prints {"producer_rtt_p50_ms": X, "producer_rtt_p99_ms": Y,
 * "samples": N}. Exit 2 on bad options, 1 when a message is not delivered. */
#include <glib.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  char               *brokers;
  char               *topic;
  gint                count;
  gint                warmup;
} Options;

/* Filled in by the delivery report callback, read by the waiting loop. */
typedef struct {
  gboolean            done;
  rd_kafka_resp_err_t err;
} Delivery;

static G_GNUC_NORETURN void
die_usage(const char *message)
{
  fprintf(stderr, "ctlfs-producer-rtt: %s\n", message);
  exit(2);
}

static void
parse_options(int *argc, char ***argv, Options *o)
{
  o->count = 2000;
  o->warmup = 50;
  GOptionEntry entries[] = {
    { "brokers", 0, 0, G_OPTION_ARG_STRING, &o->brokers, "Bootstrap servers (required)", "B" },
    { "topic", 0, 0, G_OPTION_ARG_STRING, &o->topic, "Topic, partition 0 (default ctlfs-bench.rtt)", "T" },
    { "count", 'n', 0, G_OPTION_ARG_INT, &o->count, "Measured messages (default 2000)", "N" },
    { "warmup", 0, 0, G_OPTION_ARG_INT, &o->warmup, "Unmeasured messages first (default 50)", "W" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new(NULL);
  g_option_context_set_summary(ctx, "Produce-to-delivery-report latency of a ctlfs-like producer.");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  gboolean ok = g_option_context_parse(ctx, argc, argv, &error);
  g_option_context_free(ctx);
  if (!ok) {
    fprintf(stderr, "ctlfs-producer-rtt: %s\n", error->message);
    g_error_free(error);
    exit(2);
  }
  if (*argc != 1)
    die_usage("unexpected argument");
  if (!o->brokers || !*o->brokers)
    die_usage("--brokers is required");
  if (o->count < 1 || o->warmup < 0)
    die_usage("-n must be >= 1 and --warmup >= 0");
  if (!o->topic)
    o->topic = g_strdup("ctlfs-bench.rtt");
}

/* ---- the producer ---- */

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
  Delivery *d = msg->_private;
  d->err = msg->err;
  d->done = TRUE;
}

static gboolean
conf_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
  char err[256];
  if (rd_kafka_conf_set(conf, key, value, err, sizeof err) == RD_KAFKA_CONF_OK)
    return TRUE;
  fprintf(stderr, "ctlfs-producer-rtt: kafka option %s=%s: %s\n", key, value, err);
  return FALSE;
}

/* The settings ctlfs's producer uses (core/base/bus.c), which decide the round
 * trip: an idempotent producer that waits for all replicas and sends each
 * message at once, without Nagle holding it back. */
static rd_kafka_t *
producer_new(const char *brokers)
{
  static const char *const settings[][2] = {
    { "client.id", "ctlfs-producer-rtt" },
    { "socket.nagle.disable", "true" },
    { "reconnect.backoff.ms", "20" },
    { "reconnect.backoff.max.ms", "500" },
    { "enable.idempotence", "true" },
    { "acks", "all" },
    { "linger.ms", "0" },
    { "message.timeout.ms", "5000" },
  };
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  gboolean ok = conf_set(conf, "bootstrap.servers", brokers);
  for (gsize i = 0; ok && i < G_N_ELEMENTS(settings); i++)
    ok = conf_set(conf, settings[i][0], settings[i][1]);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    exit(2);   /* a bad --brokers value lands here */
  }
  char err[256];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    fprintf(stderr, "ctlfs-producer-rtt: kafka client: %s\n", err);
    exit(1);
  }
  return rk;
}

/* A value the size and shape of a ctlfs command message (~250 bytes), so the
 * broker handles as many bytes per message as it does for ctlfs. */
static char *
command_value(int i)
{
  return g_strdup_printf(
      "{\"id\":\"rtt-%08d-5f1c2a9e-7b3d-4e6a-9c8f-1a2b3c4d5e6f\",\"runtime\":\"rt1\","
      "\"resource\":\"svc\",\"verb\":\"%s\",\"issued_at\":\"2026-01-01T00:00:00.000Z\","
      "\"issued_by\":{\"uid\":1000,\"user\":\"bench\",\"pid\":4242,\"comm\":\"sh\","
      "\"host\":\"ctlfs-bench-host\"}}",
      i, i % 2 == 0 ? "pause" : "resume");
}

/* Produces message I and waits for its delivery report; the round trip in
 * microseconds, or -1 if the message was not delivered. */
static gint64
round_trip(rd_kafka_t *rk, const char *topic, int i)
{
  char *value = command_value(i);
  Delivery d = { FALSE, RD_KAFKA_RESP_ERR_NO_ERROR };
  gint64 t0 = g_get_monotonic_time();
  /* Keyed and with a header like ctlfs's messages, copied as ctlfs does. */
  rd_kafka_resp_err_t err = rd_kafka_producev(rk,
      RD_KAFKA_V_TOPIC(topic),
      RD_KAFKA_V_PARTITION(0),
      RD_KAFKA_V_KEY("svc", 3),
      RD_KAFKA_V_VALUE(value, strlen(value)),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER("ctlfs-version", "1", 1),
      RD_KAFKA_V_OPAQUE(&d),
      RD_KAFKA_V_END);
  g_free(value);
  if (err) {
    fprintf(stderr, "ctlfs-producer-rtt: produce: %s\n", rd_kafka_err2str(err));
    return -1;
  }
  /* A 1 ms poll timeout: the report is served as soon as it is queued, and the
   * loop wakes often enough to see d.done right after. */
  while (!d.done)
    rd_kafka_poll(rk, 1);
  gint64 elapsed = g_get_monotonic_time() - t0;
  if (d.err) {
    fprintf(stderr, "ctlfs-producer-rtt: message %d not delivered: %s\n", i,
            rd_kafka_err2str(d.err));
    return -1;
  }
  return elapsed;
}

/* ---- statistics ---- */

static gint
compare_gint64(gconstpointer a, gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
  return (x > y) - (x < y);
}

/* The P-th percentile of SORTED by ctlfs-bench's rule (the sample at index
 * round(P/100 * (n - 1)), ties to even like Python's round()), so both tools
 * report the same statistic. Integer arithmetic keeps it exact. */
static gint64
percentile(const gint64 *sorted, gsize n, guint p)
{
  gsize scaled = (gsize) p * (n - 1);
  gsize index = scaled / 100, rest = scaled % 100;
  if (rest > 50 || (rest == 50 && index % 2 == 1))
    index++;
  return sorted[MIN(index, n - 1)];
}

static void
print_report(GArray *samples)
{
  g_array_sort(samples, compare_gint64);
  const gint64 *s = (const gint64 *) (gpointer) samples->data;
  gsize n = samples->len;
  printf("{\"producer_rtt_p50_ms\": %.3f, \"producer_rtt_p99_ms\": %.3f, \"samples\": %u}\n",
         percentile(s, n, 50) / 1000.0, percentile(s, n, 99) / 1000.0, (guint) n);
}

int
main(int argc, char **argv)
{
  Options o;
  memset(&o, 0, sizeof o);
  parse_options(&argc, &argv, &o);
  rd_kafka_t *rk = producer_new(o.brokers);
  GArray *samples = g_array_sized_new(FALSE, FALSE, sizeof(gint64), (guint) o.count);
  int status = 0;
  /* Warm-up messages pay for the connection, metadata and the idempotent
   * producer id; only the long-lived producer's steady state is measured. */
  for (int i = 0; i < o.warmup + o.count; i++) {
    gint64 us = round_trip(rk, o.topic, i);
    if (us < 0) {
      status = 1;
      break;
    }
    if (i >= o.warmup)
      g_array_append_val(samples, us);
  }
  if (status == 0)
    print_report(samples);
  g_array_unref(samples);
  rd_kafka_flush(rk, 1000);
  rd_kafka_destroy(rk);
  g_free(o.brokers);
  g_free(o.topic);
  return status;
}
