/* The bus's own state, shared by the files that implement bus.h only; one
 * concept a file:
 *   bus.c           the bus made and freed; what both clients are configured with
 *   bus-link.c      the broker link, from the clients' errors and statistics
 *   bus-produce.c   the producer: its client, topic handles, partitioners, reports
 *   bus-consume.c   the consumer: its client, messages in batches, caught up
 *   bus-assign.c    which partitions the consumer reads: watched topics, their
 *                   partition counts (a metadata worker), incremental assignment
 *   bus-admin.c     topic administration (topic-admin.h) through the producer
 *   bus-watchdog.c  whether a client is stuck: its health, a TCP probe
 *   bus-renew.c     a stuck client made anew
 * Everything runs on the main loop, but for the metadata worker's thread and
 * the probe's. */
#pragma once
#include <librdkafka/rdkafka.h>

#include "bus.h"
#include "kafka-close.h"
#include "metadata-worker.h"
#include "queue-wake.h"
#include "topic-admin.h"

GQuark ctl_bus_error_quark(void);
#define CTL_BUS_ERROR (ctl_bus_error_quark())
/* What closing a consumer may wait for its broker (it commits nothing: the
 * positions are the store's), so that a daemon stops with its broker gone. */
#define BUS_CLOSE_TIMEOUT_MS 1000

/* A topic the consumer reads, every partition of it. */
typedef struct Watch {
  rd_kafka_topic_t *rkt;       /* the consumer's handle: makes the topic one that
                                  a metadata request for "known topics" covers */
  int               partitions; /* known from metadata (0: not yet) */
  int               assigned;   /* partitions 0 .. assigned-1 are assigned */
  GArray           *at_end;     /* gboolean per assigned partition: read to its
                                   end at least once */
} Watch;

/* What the watchdog (bus-watchdog.c) knows of one client. */
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
  CtlMetadataWorker *discovery;   /* the watched topics' partition counts (bus-assign.c) */
  gint64            auth_warned_us; /* when an authentication error was last a warning */
  CtlTopicAdmin    *admin;        /* ctl_bus_set_topic_settings(), or the first ensure */
  CtlTopicSettings  topic_settings; /* the admin's: ctl_bus_set_topic_settings(), or defaults */
  /* the watchdog (bus-watchdog.c): what a client is made anew from
   * (bus-renew.c), and how each one fares */
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
                                     messages go to the new one (bus_hand_over) */
  CtlBusCallbacks   cb;
  gpointer          user_data;
};

/* ---- bus.c: what both clients are configured with ---- */
gboolean          bus_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                               GError **error);
/* Takes CONF, also on failure. */
rd_kafka_t       *bus_client_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, GError **error);
/* ctlfs's defaults for both clients, then KAFKA_PROPS over them. */
rd_kafka_conf_t  *bus_base_conf(CtlBus *bus, const char *brokers, const char *const *kafka_props,
                                GError **error);

/* ---- bus-link.c ---- */
void              bus_set_link(CtlBus *bus, gboolean up);
/* librdkafka's error_cb and stats_cb, for both clients (OPAQUE: the bus). */
void              bus_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
int               bus_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque);

/* ---- bus-produce.c ---- */
/* Makes bus->producer and bus->pwake; FALSE + ERROR (either may be set). */
gboolean          bus_producer_new(CtlBus *bus, const char *brokers,
                                   const char *const *kafka_props, int timeout_ms,
                                   GError **error);
/* The producer's handle of TOPIC, made on first use; NULL: refused. */
rd_kafka_topic_t *bus_topic_handle(CtlBus *bus, const char *topic);

/* ---- bus-consume.c ---- */
/* Makes bus->consumer and bus->cwake; FALSE + ERROR (either may be set). */
gboolean          bus_consumer_new(CtlBus *bus, const char *brokers,
                                   const char *const *kafka_props, GError **error);

/* ---- bus-assign.c ---- */
void              bus_watch_free(gpointer watch);
/* After a new consumer: its topic handles, every partition assigned anew. */
void              bus_watches_rebuild(CtlBus *bus);
/* Discovery runs on bus->consumer: stop it before the consumer goes. */
void              bus_discovery_start(CtlBus *bus);
void              bus_discovery_stop(CtlBus *bus);
void              bus_discover_now(CtlBus *bus);

/* ---- bus-admin.c ---- */
/* The admin moved to bus->producer (made anew), checks under way included. */
void              bus_renew_admin(CtlBus *bus);

/* ---- bus-watchdog.c ---- */
/* A client's statistics: whether it has a broker connection UP. */
void              bus_health_note(BusHealth *h, gboolean up);
void              bus_watchdog_start(CtlBus *bus);
void              bus_watchdog_stop(CtlBus *bus);

/* ---- bus-renew.c ---- */
/* A report of the retired producer: TRUE when its message moved to the new
 * one (and is not to be reported). */
gboolean          bus_hand_over(CtlBus *bus, const rd_kafka_message_t *msg);
void              bus_renew_producer(CtlBus *bus);
void              bus_renew_consumer(CtlBus *bus);
