/* Kafka through librdkafka, on the GLib main loop. */
#include "bus.h"

#include <gio/gio.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "kafka-props.h"
#include "message.h"
#include "metadata-worker.h"
#include "queue-wake.h"
#include "topic-admin.h"

/* A topic the consumer reads, every partition of it. */
typedef struct Watch {
  rd_kafka_topic_t *rkt;       /* the consumer's handle: makes the topic one that
                                  a metadata request for "known topics" covers */
  int               partitions; /* known from metadata (0: not yet) */
  int               assigned;   /* partitions 0 .. assigned-1 are assigned */
  GArray           *at_end;     /* gboolean per assigned partition: read to its
                                   end at least once */
} Watch;

/* What the watchdog (below) knows of one client. */
typedef struct {
  gboolean          up;          /* a broker connection in state UP, by its statistics */
  gint64            seen_up;     /* when it last had one, or was made (monotonic us) */
  int               patience_ms; /* how long without one before it is made anew */
} BusHealth;

struct CtlBus {
  rd_kafka_t       *producer;
  rd_kafka_t       *consumer;
  CtlQueueWake     *pwake, *cwake;
  GHashTable       *watched;      /* topic -> Watch* */
  GHashTable       *assigned;     /* topic -> how many partitions the consumer has */
  guint             reassign_src; /* a reassignment waiting for the loop to be idle */
  GHashTable       *topics;       /* producer topic handles, made ahead of use */
  GHashTable       *grouped;      /* topics whose handles use partition_by_group */
  gboolean          link_up;
  CtlMetadataWorker *discovery;   /* the watched topics' partition counts */
  gint64            auth_warned_us; /* when an authentication error was last a warning */
  CtlTopicAdmin    *admin;        /* ctl_bus_set_topic_settings(), or the first ensure */
  CtlTopicSettings  topic_settings; /* the admin's: ctl_bus_set_topic_settings(), or defaults */
  /* the watchdog: what a client is made anew from, and how each one fares */
  char             *brokers;
  char            **kafka_props;
  int               message_timeout_ms;
  BusHealth         producer_health, consumer_health;
  gint64            auth_error_us;  /* when credentials or TLS were last refused */
  gint64            answering_since; /* probes succeeded since (0: the last failed) */
  int               grace_ms;     /* how long the broker answers before a client is judged */
  guint             watchdog_src;
  struct BusProbe  *probe;        /* a TCP probe under way, or NULL */
  rd_kafka_t       *retired;      /* a producer being replaced: its purged
                                     messages go to the new one (on_delivery) */
  CtlBusCallbacks   cb;
  gpointer          user_data;
};

/* the consumer's side, further down */
static void watch_free(gpointer data);
static void discovery_start(CtlBus *bus);
static void discovery_stop(CtlBus *bus);
/* the watchdog, at the end */
static void health_note(BusHealth *h, gboolean up);
static gboolean hand_over(CtlBus *bus, const rd_kafka_message_t *msg);
static void watchdog_start(CtlBus *bus);
static void watchdog_stop(CtlBus *bus);

G_DEFINE_QUARK(ctl-bus-error-quark, ctl_bus_error)
#define CTL_BUS_ERROR (ctl_bus_error_quark())

static void
set_link(CtlBus *bus, gboolean up)
{
  if (bus->link_up == up)
    return;
  bus->link_up = up;
  g_info("broker link %s", up ? "up" : "down");
  if (bus->cb.link)
    bus->cb.link(up, bus->user_data);
}

/* ---- callbacks librdkafka calls from rd_kafka_poll (main thread) ---- */

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
  CtlBus *bus = opaque;
  if (rk == bus->retired && hand_over(bus, msg))
    return;
  gboolean ok = msg->err == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (ok)
    set_link(bus, TRUE);
  gboolean timed_out = msg->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
                       || msg->err == RD_KAFKA_RESP_ERR__TIMED_OUT
                       || msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE;
  gboolean maybe = !ok && rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
  bus->cb.delivered(msg->_private, ok, msg->partition, msg->offset, ok ? NULL : rd_kafka_err2str(msg->err),
                    timed_out, maybe, bus->user_data);
}

static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
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
    set_link(bus, FALSE);
}

/* The link is up when a connection of the producer to some broker (bootstrap
 * or learned) is in state UP. Its statistics arrive every half second, so a
 * broker coming back shows within a second; losing every broker is reported
 * at once by on_error(). The consumer's statistics are the watchdog's only. */
static int
on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
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
    health_note(rk == bus->producer ? &bus->producer_health : &bus->consumer_health, up);
  if (root && rk == bus->producer)
    set_link(bus, up);
  json_decref(root);
  return 0;
}

static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
  /* librdkafka's own chatter is debugging detail; its errors reach on_error. */
  g_debug("rdkafka %s: %s", fac, buf);
}

/* ---- the queues' wakeups (queue-wake.h) ---- */

static void
on_producer_ready(gpointer data)
{
  CtlBus *bus = data;
  while (rd_kafka_poll(bus->producer, 0) > 0)
    ;
}

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
    set_link(bus, TRUE);
    handle_message(bus, m);
    rd_kafka_message_destroy(m);
  } while (++n < BATCH_MAX && (m = rd_kafka_consumer_poll(bus->consumer, 0)) != NULL);
  bus->cb.batch_end(bus->user_data);
  if (n == BATCH_MAX)   /* more may wait: come back after other sources ran */
    ctl_queue_wake_kick(bus->cwake);
}

static gboolean
conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, GError **error)
{
  char err[256];
  if (rd_kafka_conf_set(conf, key, value, err, sizeof err) == RD_KAFKA_CONF_OK)
    return TRUE;
  g_set_error(error, CTL_BUS_ERROR, 0, "kafka option %s=%s: %s", key, value, err);
  return FALSE;
}

static rd_kafka_t *
client_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, GError **error)
{
  char err[256];
  rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    g_set_error(error, CTL_BUS_ERROR, 0, "kafka client: %s", err);
  }
  return rk;
}

/* ctlfs's defaults for both clients, then the user's KAFKA_PROPS over them
 * (those that producer_new and consumer_new set after this are reserved:
 * kafka-props.c). */
static rd_kafka_conf_t *
base_conf(CtlBus *bus, const char *brokers, const char *const *kafka_props, GError **error)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_opaque(conf, bus);
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_log_cb(conf, on_log);
  if (conf_set(conf, "bootstrap.servers", brokers, error)
      && conf_set(conf, "client.id", "ctlfs", error)
      && conf_set(conf, "socket.nagle.disable", "true", error)
      && conf_set(conf, "reconnect.backoff.ms", "20", error)
      && conf_set(conf, "reconnect.backoff.max.ms", "500", error)
      /* librdkafka's own tracing, for a bug report: CTLFS_KAFKA_DEBUG=all or
       * a list such as "consumer,fetch,topic" (see librdkafka's "debug"). */
      && (!g_getenv("CTLFS_KAFKA_DEBUG")
          || conf_set(conf, "debug", g_getenv("CTLFS_KAFKA_DEBUG"), error))
      && ctl_kafka_props_apply(conf, kafka_props, error))
    return conf;
  rd_kafka_conf_destroy(conf);
  return NULL;
}

static gboolean
producer_new(CtlBus *bus, const char *brokers, const char *const *kafka_props, int timeout_ms,
             GError **error)
{
  rd_kafka_conf_t *conf = base_conf(bus, brokers, kafka_props, error);
  if (!conf)
    return FALSE;
  char timeout[32];
  g_snprintf(timeout, sizeof timeout, "%d", timeout_ms);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_stats_cb(conf, on_stats);
  if (!conf_set(conf, "enable.idempotence", "true", error)
      || !conf_set(conf, "acks", "all", error)
      || !conf_set(conf, "linger.ms", "0", error)
      /* Keyed messages to the partition Java clients and kafkajs pick
       * (murmur2 of the key), so one resource's commands stay in one
       * partition, in order, whoever produced them. */
      || !conf_set(conf, "partitioner", "murmur2_random", error)
      || !conf_set(conf, "message.timeout.ms", timeout, error)
      || !conf_set(conf, "statistics.interval.ms", "500", error)
      /* A topic whose metadata could not be had (broker down at start) is
       * asked for again within seconds, not librdkafka's 5 minutes: until
       * then the outbox's commands would wait in its queue. */
      || !conf_set(conf, "topic.metadata.refresh.interval.ms", "2000", error)
      || !conf_set(conf, "topic.metadata.refresh.fast.interval.ms", "100", error)) {
    rd_kafka_conf_destroy(conf);
    return FALSE;
  }
  bus->producer = client_new(RD_KAFKA_PRODUCER, conf, error);
  if (!bus->producer)
    return FALSE;
  bus->pwake = ctl_queue_wake_new(rd_kafka_queue_get_main(bus->producer), on_producer_ready,
                                  bus, error);
  return bus->pwake != NULL;
}

static gboolean
consumer_new(CtlBus *bus, const char *brokers, const char *const *kafka_props, GError **error)
{
  rd_kafka_conf_t *conf = base_conf(bus, brokers, kafka_props, error);
  if (!conf)
    return FALSE;
  /* Offsets live in SQLite with the state they produced (seed 003); the group id
   * exists only because librdkafka's consumer wants one. */
  if (!conf_set(conf, "group.id", "ctlfs", error)
      || !conf_set(conf, "enable.auto.commit", "false", error)
      || !conf_set(conf, "enable.auto.offset.store", "false", error)
      || !conf_set(conf, "allow.auto.create.topics", "true", error)
      || !conf_set(conf, "auto.offset.reset", "earliest", error)
      /* The end of each partition is an event: ctl_bus_caught_up() */
      || !conf_set(conf, "enable.partition.eof", "true", error)
      /* A real broker answers a fetch as soon as data arrives; librdkafka's mock
       * broker waits the whole time, which a round trip then pays twice. */
      || !conf_set(conf, "fetch.wait.max.ms", "5", error)
      || !conf_set(conf, "fetch.error.backoff.ms", "50", error)
      /* For the watchdog only: whether the consumer has a broker UP. */
      || !conf_set(conf, "statistics.interval.ms", "1000", error)
      || !conf_set(conf, "topic.metadata.refresh.interval.ms", "2000", error)
      /* A topic another host is creating right now (its first command) is
       * looked up again soon, not after librdkafka's 250 ms-and-more. */
      || !conf_set(conf, "topic.metadata.refresh.fast.interval.ms", "20", error)) {
    rd_kafka_conf_destroy(conf);
    return FALSE;
  }
  rd_kafka_conf_set_stats_cb(conf, on_stats);
  bus->consumer = client_new(RD_KAFKA_CONSUMER, conf, error);
  if (!bus->consumer)
    return FALSE;
  rd_kafka_poll_set_consumer(bus->consumer);
  bus->cwake = ctl_queue_wake_new(rd_kafka_queue_get_consumer(bus->consumer), on_consumer_ready,
                                  bus, error);
  return bus->cwake != NULL;
}

CtlBus *
ctl_bus_new(const char *brokers, const char *const *kafka_props, int message_timeout_ms,
            const CtlBusCallbacks *cb, gpointer user_data, GError **error)
{
  CtlBus *bus = g_new0(CtlBus, 1);
  bus->cb = *cb;
  bus->user_data = user_data;
  bus->watched = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, watch_free);
  bus->assigned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  bus->topics = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify) rd_kafka_topic_destroy);
  bus->grouped = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  bus->brokers = g_strdup(brokers);
  bus->kafka_props = g_strdupv((char **) kafka_props);
  bus->message_timeout_ms = message_timeout_ms;
  ctl_topic_settings_init(&bus->topic_settings);
  if (!producer_new(bus, brokers, kafka_props, message_timeout_ms, error)
      || !consumer_new(bus, brokers, kafka_props, error)) {
    ctl_kafka_props_mask_error(error ? *error : NULL, kafka_props);
    ctl_bus_free(bus, 0);
    return NULL;
  }
  discovery_start(bus);
  /* Ask once at start, briefly, so that status tells the truth from the first
   * read rather than from the first statistics half a second later. */
  const struct rd_kafka_metadata *md = NULL;
  if (rd_kafka_metadata(bus->producer, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    bus->link_up = TRUE;
    rd_kafka_metadata_destroy(md);
  }
  watchdog_start(bus);
  return bus;
}

void
ctl_bus_free(CtlBus *bus, int flush_ms)
{
  if (!bus)
    return;
  if (bus->reassign_src)
    g_source_remove(bus->reassign_src);
  watchdog_stop(bus);
  ctl_topic_admin_free(bus->admin);   /* uses the producer */
  ctl_topic_settings_clear(&bus->topic_settings);
  /* The wakes go before their clients: each holds a reference to a queue. */
  discovery_stop(bus);
  ctl_queue_wake_free(bus->cwake);
  g_hash_table_remove_all(bus->watched);   /* their topic handles, before the client */
  if (bus->consumer) {
    rd_kafka_consumer_close(bus->consumer);
    rd_kafka_destroy(bus->consumer);
  }
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

static int32_t partition_by_group(const rd_kafka_topic_t *rkt, const void *key, size_t len,
                                  int32_t count, void *topic_opaque, void *msg_opaque);

/* The producer's handle of TOPIC, made on first use; `grouped` says which
 * partitioner, so that a producer made anew (the watchdog) makes the same. */
static rd_kafka_topic_t *
topic_handle(CtlBus *bus, const char *topic)
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
  topic_handle(bus, topic);
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
  topic_handle(bus, topic);
}

gboolean
ctl_bus_produce(CtlBus *bus, const char *topic, const char *key, const char *value,
                const char *const *headers, gpointer opaque, GError **error)
{
  rd_kafka_topic_t *rkt = topic_handle(bus, topic);
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

/* ---- the consumer: every partition of every watched topic ----
 *
 * Positions are the engine's (stored in SQLite with the state they
 * produced): the bus asks for one only when it first assigns a partition, and
 * then follows the messages it hands out. How many partitions a topic has is
 * learnt from metadata, asked for on a thread of its own (rd_kafka_metadata
 * blocks: metadata-worker.h), for every watched topic at once: when a topic
 * is watched, again soon while one is missing (not created yet), and every
 * DISCOVER_PERIOD_MS for partitions added to a topic. */

#define DISCOVER_TIMEOUT_MS 1000   /* also how long a stop may wait for the thread */
#define DISCOVER_PERIOD_MS  10000

static void
watch_free(gpointer data)
{
  Watch *w = data;
  if (w->rkt)
    rd_kafka_topic_destroy(w->rkt);
  g_array_unref(w->at_end);
  g_free(w);
}

static void
apply_increment(CtlBus *bus, rd_kafka_topic_partition_list_t *list, gboolean add)
{
  if (list->cnt == 0)
    return;
  rd_kafka_error_t *err = add ? rd_kafka_incremental_assign(bus->consumer, list)
                              : rd_kafka_incremental_unassign(bus->consumer, list);
  if (err) {
    g_warning("kafka %s: %s", add ? "assign" : "unassign", rd_kafka_error_string(err));
    rd_kafka_error_destroy(err);
  }
}

/* Where partition P of TOPIC starts: the engine's stored position, else 0.
 * Offset 0, not "beginning": a logical offset is first resolved with the
 * partition's leader, and when that is not known yet librdkafka retries only
 * after half a second. Where retention removed offset 0,
 * auto.offset.reset=earliest takes over. */
static gint64
start_of(CtlBus *bus, const char *topic, int p)
{
  gint64 next = bus->cb.position ? bus->cb.position(topic, p, bus->user_data) : -1;
  return next >= 0 ? next : 0;
}

/* The consumer's assignment follows `watched` by increments, once per
 * main-loop iteration: only partitions that come or go are touched, and
 * several changes in a row (a runtime's two topics, every runtime at start,
 * rmdir then mkdir) cost one step. A whole-list rd_kafka_assign() stops and
 * restarts every partition; done twice in quick succession, librdkafka 2.0
 * can then abort on a partition stopped twice (the "rktp_started" assertion,
 * librdkafka issue 5573). */
static gboolean
reassign(gpointer data)
{
  CtlBus *bus = data;
  bus->reassign_src = 0;
  rd_kafka_topic_partition_list_t *gone = rd_kafka_topic_partition_list_new(4);
  rd_kafka_topic_partition_list_t *fresh = rd_kafka_topic_partition_list_new(4);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, bus->assigned);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    Watch *w = g_hash_table_lookup(bus->watched, key);
    if (w && w->assigned == 0) {   /* unwatched and watched again: keeps reading */
      w->assigned = GPOINTER_TO_INT(value);
      g_array_set_size(w->at_end, w->assigned);
    }
    if (w)
      continue;
    for (int p = 0; p < GPOINTER_TO_INT(value); p++)
      rd_kafka_topic_partition_list_add(gone, key, p);
    g_hash_table_iter_remove(&it);
  }
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    Watch *w = value;
    if (w->assigned >= w->partitions)
      continue;
    for (int p = w->assigned; p < w->partitions; p++)
      rd_kafka_topic_partition_list_add(fresh, key, p)->offset = start_of(bus, key, p);
    w->assigned = w->partitions;
    g_array_set_size(w->at_end, w->assigned);
    g_hash_table_replace(bus->assigned, g_strdup(key), GINT_TO_POINTER(w->assigned));
  }
  apply_increment(bus, gone, FALSE);
  apply_increment(bus, fresh, TRUE);
  rd_kafka_topic_partition_list_destroy(gone);
  rd_kafka_topic_partition_list_destroy(fresh);
  return G_SOURCE_REMOVE;
}

static void
reassign_soon(CtlBus *bus)
{
  if (!bus->reassign_src)
    bus->reassign_src = g_idle_add(reassign, bus);
}

/* ---- partition discovery (a metadata worker: metadata-worker.h) ---- */

static void
discover_now(CtlBus *bus)
{
  ctl_metadata_worker_ask(bus->discovery);
}

/* Takes in what a lookup learnt: more partitions than assigned are assigned.
 * TRUE (asked again soon) while a watched topic is missing: one created by
 * someone else is read within milliseconds. */
static gboolean
on_discovered(const struct rd_kafka_metadata *md, gpointer data)
{
  CtlBus *bus = data;
  for (int i = 0; md && i < md->topic_cnt; i++) {
    const struct rd_kafka_metadata_topic *t = &md->topics[i];
    Watch *w = g_hash_table_lookup(bus->watched, t->topic);
    if (!w || t->err || t->partition_cnt <= w->partitions)
      continue;
    if (w->partitions > 0)
      g_info("kafka: %s has %d partitions now (was %d)", t->topic, t->partition_cnt,
             w->partitions);
    w->partitions = t->partition_cnt;
    reassign_soon(bus);
  }

  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, NULL, &value))
    if (((Watch *) value)->partitions == 0)
      return TRUE;
  return FALSE;
}

/* Known topics only (no topic named): the watched ones, which have a handle
 * on the consumer. */
static void
discovery_start(CtlBus *bus)
{
  bus->discovery = ctl_metadata_worker_new(bus->consumer, NULL, DISCOVER_TIMEOUT_MS,
                                           DISCOVER_PERIOD_MS, "ctlfs-discover", on_discovered,
                                           bus);
}

/* Before the consumer goes: the thread may be inside rd_kafka_metadata().
 * The watchdog starts it again on the new consumer. */
static void
discovery_stop(CtlBus *bus)
{
  g_clear_pointer(&bus->discovery, ctl_metadata_worker_free);
}

void
ctl_bus_watch(CtlBus *bus, const char *topic)
{
  Watch *w = g_new0(Watch, 1);
  w->rkt = rd_kafka_topic_new(bus->consumer, topic, NULL);
  w->at_end = g_array_new(FALSE, TRUE, sizeof(gboolean));
  g_hash_table_replace(bus->watched, g_strdup(topic), w);
  reassign_soon(bus);
  discover_now(bus);
}

void
ctl_bus_unwatch(CtlBus *bus, const char *topic)
{
  if (g_hash_table_remove(bus->watched, topic))
    reassign_soon(bus);
}

gboolean
ctl_bus_link_up(CtlBus *bus)
{
  return bus->link_up;
}

/* ---- topic administration (topic-admin.h) ---- */

static void
on_topic_checked(const char *topic, CtlTopicRole role, CtlTopicOutcome outcome,
                 const char *detail, gpointer data)
{
  CtlBus *bus = data;
  if (bus->cb.topic_checked)
    bus->cb.topic_checked(topic, role, outcome, detail, bus->user_data);
}

/* From the settings kept, so that a producer made anew gets the same. */
static void
admin_new(CtlBus *bus)
{
  GError *error = NULL;
  bus->admin = ctl_topic_admin_new(bus->producer, &bus->topic_settings, on_topic_checked, bus,
                                   &error);
  if (!bus->admin) {
    g_warning("kafka admin: %s", error->message);
    g_error_free(error);
  }
}

void
ctl_bus_set_topic_settings(CtlBus *bus, const CtlTopicSettings *settings)
{
  g_clear_pointer(&bus->admin, ctl_topic_admin_free);
  ctl_topic_settings_clear(&bus->topic_settings);
  ctl_topic_settings_copy(&bus->topic_settings, settings);
  admin_new(bus);
}

void
ctl_bus_ensure_topic(CtlBus *bus, const char *topic, CtlTopicRole role)
{
  if (!bus->admin)
    admin_new(bus);
  if (bus->admin)
    ctl_topic_admin_ensure(bus->admin, topic, role);
  else
    on_topic_checked(topic, role, CTL_TOPIC_UNAVAILABLE, "admin unavailable: no queue", bus);
}

/* ---- the watchdog ----
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
 * A new consumer is assigned every partition anew, each from its stored
 * position (the `position` callback), as at start; ctl_bus_caught_up() waits
 * for every end again. A new producer takes over the old one's unsent
 * messages (hand_over()), its topic handles (made again by topic_handle())
 * and the topic admin, checks under way included. */

#define BUS_STUCK_MS        5000    /* a healthy client reconnects within ~1 s */
#define BUS_PATIENCE_MAX_MS 300000  /* renewals that do not help: rarely */
#define BUS_PROBE_S         1       /* the probe's connect timeout */
#define BUS_PROBE_AFTER_MS  1000    /* a client down this long: probes, a second apart */
#define BUS_HANDOVER_MS     2000    /* the old producer's reports, at most */

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

static void
health_note(BusHealth *h, gboolean up)
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

/* ---- the producer made anew ---- */

/* A purged message of the retired producer: produced again on the new one
 * when it certainly never reached the broker. TRUE: handled here; FALSE: it
 * is reported failed as usual (it may be on the broker). */
static gboolean
hand_over(CtlBus *bus, const rd_kafka_message_t *msg)
{
  if ((msg->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && msg->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
      || rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED)
    return FALSE;
  rd_kafka_topic_t *rkt = topic_handle(bus, rd_kafka_topic_name(msg->rkt));
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

static void
ask_again(const char *topic, CtlTopicRole role, gpointer bus)
{
  ctl_bus_ensure_topic(bus, topic, role);
}

/* The admin uses the producer: one on the new producer takes over the
 * checks under way, so that each still gets its one answer. Before the old
 * producer goes: the old admin may be asking it for metadata. */
static void
renew_admin(CtlBus *bus)
{
  CtlTopicAdmin *old = g_steal_pointer(&bus->admin);
  if (!old)
    return;
  admin_new(bus);
  ctl_topic_admin_foreach_pending(old, ask_again, bus);
  ctl_topic_admin_free(old);
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

static void
renew_producer(CtlBus *bus)
{
  rd_kafka_t *old = bus->producer;
  CtlQueueWake *old_wake = bus->pwake;
  bus->producer = NULL;
  bus->pwake = NULL;
  GError *error = NULL;
  if (!producer_new(bus, bus->brokers, (const char *const *) bus->kafka_props,
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
  renew_admin(bus);
  retire_producer(bus, old);
}

/* ---- the consumer made anew ---- */

/* The new consumer's topic handles, and no partition assigned: reassign()
 * assigns them all, each from position(); every end is waited for again. */
static void
watches_rebuild(CtlBus *bus)
{
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, bus->watched);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    Watch *w = value;
    if (w->rkt)
      rd_kafka_topic_destroy(w->rkt);    /* the old consumer's */
    w->rkt = rd_kafka_topic_new(bus->consumer, key, NULL);
    w->assigned = 0;
    g_array_set_size(w->at_end, 0);
  }
  g_hash_table_remove_all(bus->assigned);  /* the old consumer's assignment */
  reassign_soon(bus);
}

static void
drop_consumer(rd_kafka_t *rk, CtlQueueWake *wake)
{
  ctl_queue_wake_free(wake);   /* before its client: it holds a reference to a queue */
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
}

static void
renew_consumer(CtlBus *bus)
{
  rd_kafka_t *old = bus->consumer;
  CtlQueueWake *old_wake = bus->cwake;
  discovery_stop(bus);   /* its thread asks the consumer for metadata */
  bus->consumer = NULL;
  bus->cwake = NULL;
  GError *error = NULL;
  if (consumer_new(bus, bus->brokers, (const char *const *) bus->kafka_props, &error)) {
    watches_rebuild(bus);    /* before the old consumer goes: its topic handles */
    drop_consumer(old, old_wake);
  } else {
    ctl_kafka_props_mask_error(error, (const char *const *) bus->kafka_props);
    g_warning("kafka watchdog: new consumer: %s; keeping the old one", error->message);
    g_error_free(error);
    drop_consumer(bus->consumer, bus->cwake);
    bus->consumer = old;
    bus->cwake = old_wake;
  }
  discovery_start(bus);
  discover_now(bus);       /* partitions added while the old one was stuck */
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
    renew_producer(bus);
  if (give_up_on(bus, &bus->consumer_health, "consumer", now))
    renew_consumer(bus);
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

static void
watchdog_start(CtlBus *bus)
{
  health_reset(&bus->producer_health, BUS_STUCK_MS);
  health_reset(&bus->consumer_health, BUS_STUCK_MS);
  bus->grace_ms = grace_of(bus->producer);
  bus->watchdog_src = g_timeout_add_seconds(1, on_watchdog, bus);
}

static void
watchdog_stop(CtlBus *bus)
{
  g_clear_handle_id(&bus->watchdog_src, g_source_remove);
  if (bus->probe)
    probe_free(g_steal_pointer(&bus->probe));
}
