/* ctlfs-agent's partition discovery: how many partitions its command topic
 * has, learnt from metadata, so that the agent reads every one of them.
 *
 * The lookups are a metadata worker's (metadata-worker.h: a thread of its
 * own, results on the main loop): at once, again soon (with a backoff from
 * 20 ms to 2 s) while the topic does not exist yet, and every PERIOD_MS
 * after that, so that partitions added to the topic are found.
 * The callback runs only when the count grew past the last one it took: a
 * topic never shrinks in Kafka, and a failed lookup (broker down) says
 * nothing about it. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>

typedef struct AgentPartitions AgentPartitions;

/* PARTITIONS: the topic's partition count now, larger than any taken
 * before. FALSE when they could not be taken (the next lookup offers them
 * again). */
typedef gboolean (*AgentPartitionsFunc)(int partitions, gpointer data);

/* Watches TOPIC through RK (the consumer: where its broker allows, the
 * lookup creates the topic, as the consumer's allow.auto.create.topics
 * says). FN (DATA) is called on the thread-default main context of the
 * caller. */
AgentPartitions *agent_partitions_new(rd_kafka_t *rk, const char *topic, int period_ms,
                                      AgentPartitionsFunc fn, gpointer data);
/* Stops the thread (waiting for a lookup under way, at most its 2 s
 * timeout): call it before RK is destroyed. NULL is allowed. */
void             agent_partitions_free(AgentPartitions *ap);
