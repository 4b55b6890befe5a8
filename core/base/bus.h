/* The bus: one idempotent Kafka producer (acks=all) for commands and one
 * consumer for feedback, both driven by the GLib main loop. librdkafka's queues
 * wake the loop (queue-wake.h), so delivery reports and messages are handled
 * on the main thread, never blocking. Only partition discovery (metadata,
 * a blocking call) and the watchdog's TCP probe run on threads of the bus's
 * own. A client that has no broker connection while the broker answers is
 * made anew (bus-watchdog.c, "the watchdog"); the callbacks do not see it,
 * but for a new consumer's position() calls, as at start. */
#pragma once
#include <glib.h>

#include "topic-settings.h"

typedef struct CtlBus CtlBus;

typedef struct {
  /* The broker acknowledged (OK) or refused/timed out (!OK) a produced message.
   * POSSIBLY_PERSISTED: the failure came after the request was sent. */
  void (*delivered)(gpointer opaque, gboolean ok, int partition, gint64 offset, const char *reason,
                    gboolean timed_out, gboolean possibly_persisted, gpointer user_data);
  /* Consumed messages come in batches, so that a batch is one transaction. */
  void (*batch_begin)(gpointer user_data);
  /* COMMAND_ID: the message's ctlfs-id header (NULL: none, or not a plausible
   * id). A hint only: anyone who can write to a topic can set it. */
  void (*message)(const char *topic, int partition, gint64 offset, const char *key, gsize key_len,
                  const char *value, gsize value_len, const char *command_id,
                  gpointer user_data);
  void (*batch_end)(gpointer user_data);
  /* The broker link went up or down. */
  void (*link)(gboolean up, gpointer user_data);
  /* Where reading PARTITION of TOPIC starts when the bus first assigns it:
   * the next offset stored with the state, -1 none (from the beginning). */
  gint64 (*position)(const char *topic, int partition, gpointer user_data);
  /* The answer to ctl_bus_ensure_topic() (topic-admin.h); NULL: not told. */
  void (*topic_checked)(const char *topic, CtlTopicRole role, CtlTopicOutcome outcome,
                        const char *detail, gpointer user_data);
} CtlBusCallbacks;

/* KAFKA_PROPS: the user's librdkafka properties for both clients (key,
 * value, ..., NULL; NULL: none), applied over ctlfs's defaults; checked
 * beforehand with ctl_kafka_props_check() (kafka-props.h). Credentials among
 * them never appear in ERROR. MESSAGE_TIMEOUT_MS: how long the producer may
 * try to deliver one message before failing it (0: forever, for the queued
 * outbox). */
CtlBus  *ctl_bus_new(const char *brokers, const char *const *kafka_props, int message_timeout_ms,
                     const CtlBusCallbacks *cb, gpointer user_data, GError **error);
/* Waits up to FLUSH_MS for outstanding deliveries, then destroys the clients. */
void     ctl_bus_free(CtlBus *bus, int flush_ms);

/* Produces VALUE to TOPIC with KEY (the partition murmur2 of KEY picks, as
 * Java clients and kafkajs do), the ctlfs-version header and
 * HEADERS (NULL, or name, value, ..., NULL). OPAQUE comes back in delivered().
 * FALSE + ERROR when librdkafka refuses it at once (queue full, bad topic). */
gboolean ctl_bus_produce(CtlBus *bus, const char *topic, const char *key, const char *value,
                         const char *const *headers, gpointer opaque, GError **error);
/* Makes the producer look TOPIC up now, so that the first command to it does
 * not wait for metadata (and creates it where the broker auto-creates). */
void     ctl_bus_prepare_topic(CtlBus *bus, const char *topic);
/* As ctl_bus_prepare_topic(), for a topic whose keys are paths ("rt1",
 * "rt1/svc"): keys that share their part before the first '/' share a
 * partition (murmur2 of that part), so that their messages keep their order
 * among themselves. Call before the first message to TOPIC. */
void     ctl_bus_prepare_grouped_topic(CtlBus *bus, const char *topic);
/* Drops messages still waiting in the producer's queue (not yet sent): each
 * comes back through delivered() as failed. */
void     ctl_bus_purge_queued(CtlBus *bus);

/* Consume every partition of TOPIC, each from position() on, partitions
 * added later included (learnt from metadata within DISCOVER_PERIOD_MS). */
void     ctl_bus_watch(CtlBus *bus, const char *topic);
void     ctl_bus_unwatch(CtlBus *bus, const char *topic);

gboolean ctl_bus_link_up(CtlBus *bus);
/* The link is up and every partition assigned has been read to its end at
 * least once: what is not read yet was produced a moment ago, not a backlog
 * from before the start. A topic that does not exist yet does not count. */
gboolean ctl_bus_caught_up(CtlBus *bus);

/* Topic administration (topic-admin.h) through the producer. SETTINGS is
 * copied; until this is called, the defaults (ctl_topic_settings_init)
 * apply. Call it once, before the first ctl_bus_ensure_topic(): calling it
 * again drops the checks under way (no topic_checked for them). */
void     ctl_bus_set_topic_settings(CtlBus *bus, const CtlTopicSettings *settings);
/* Checks TOPIC as ROLE wants it, creating it when it is missing and the
 * settings say create; the answer comes once through topic_checked(), on the
 * main loop, within a few times the settings' timeout_ms. Call it before the
 * topic is first watched or produced to, where the broker auto-creates
 * topics: else the auto-created topic (broker defaults) is what is found. */
void     ctl_bus_ensure_topic(CtlBus *bus, const char *topic, CtlTopicRole role);
