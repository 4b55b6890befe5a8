/* Partition discovery for ctlfs-agent (agent-partitions.h): a metadata
 * worker's results (metadata-worker.h) read as one topic's partition count. */
#define G_LOG_DOMAIN "ctlfs-agent"
#include "agent-partitions.h"

#include "metadata-worker.h"

#define LOOKUP_TIMEOUT_MS 2000

struct AgentPartitions {
  CtlMetadataWorker   *worker;
  char                *topic;
  AgentPartitionsFunc  fn;
  gpointer             data;
  int                  known;       /* the largest count taken, 0: none yet */
};

/* TOPIC's partition count in MD: 0 when the broker does not have the topic
 * (yet), -1 when it did not answer (MD NULL). */
static int
count_in(const struct rd_kafka_metadata *md, const char *topic)
{
  if (!md)
    return -1;
  int n = 0;
  for (int i = 0; i < md->topic_cnt; i++)
    if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && g_str_equal(md->topics[i].topic, topic))
      n = md->topics[i].partition_cnt;
  return n;
}

/* Only growth is news: a topic never shrinks in Kafka, and a failed lookup
 * says nothing about it. Missing (asked again soon) until a count is taken. */
static gboolean
on_metadata(const struct rd_kafka_metadata *md, gpointer data)
{
  AgentPartitions *ap = data;
  int n = count_in(md, ap->topic);
  if (n == 0 && ap->known == 0)
    g_debug("%s: no such topic yet", ap->topic);
  if (n > ap->known) {
    if (ap->known > 0)
      g_message("%s has %d partitions now (was %d)", ap->topic, n, ap->known);
    if (ap->fn(n, ap->data))
      ap->known = n;
  }
  return ap->known == 0;
}

AgentPartitions *
agent_partitions_new(rd_kafka_t *rk, const char *topic, int period_ms, AgentPartitionsFunc fn,
                     gpointer data)
{
  AgentPartitions *ap = g_new0(AgentPartitions, 1);
  ap->topic = g_strdup(topic);
  ap->fn = fn;
  ap->data = data;
  ap->worker = ctl_metadata_worker_new(rk, topic, LOOKUP_TIMEOUT_MS, period_ms,
                                       "agent-partitions", on_metadata, ap);
  ctl_metadata_worker_ask(ap->worker);   /* the first lookup at once */
  return ap;
}

void
agent_partitions_free(AgentPartitions *ap)
{
  if (ap == NULL)
    return;
  ctl_metadata_worker_free(ap->worker);
  g_free(ap->topic);
  g_free(ap);
}
