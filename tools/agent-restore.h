/* ctlfs-agent's memory after a restart: the command topic read from its
 * beginning to its end as of the start, so that the agent can take up each
 * resource's newest command (its desired state) before it first reports, as a
 * real runtime restores its state. Kafka keeps the commands; the agent keeps
 * nothing of its own. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>

/* One message of the topic, in its partition's order. */
typedef void (*AgentRestoreFunc)(const rd_kafka_message_t *m, gpointer data);

/* Reads TOPIC on BROKERS (a consumer of its own, no group: nothing is
 * committed) up to the end each partition had when asked, calling FN for
 * each message. Bounded by TIMEOUT_MS; FALSE with a reason when the topic
 * could not be read whole (what was read was handed on). A topic that does
 * not exist holds nothing to restore: TRUE. */
gboolean agent_restore_read(const char *brokers, const char *topic, int timeout_ms,
                            AgentRestoreFunc fn, gpointer data, GError **error);
