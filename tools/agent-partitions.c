/* Partition discovery for ctlfs-agent (agent-partitions.h). */
#define G_LOG_DOMAIN "ctlfs-agent"
#include "agent-partitions.h"

#define LOOKUP_TIMEOUT_MS 2000
#define RETRY_MIN_MS      20
#define RETRY_MAX_MS      2000

struct AgentPartitions {
  rd_kafka_t          *rk;          /* not owned */
  rd_kafka_topic_t    *rkt;
  AgentPartitionsFunc  fn;
  gpointer             data;
  int                  known;       /* the largest count taken, 0: none yet */
  int                  backoff_ms;
  guint                retry_src, period_src;
  GMainContext        *context;
  GThread             *thread;
  GMutex               lock;        /* guards the four below */
  GCond                cond;
  gboolean             wanted, quit;
  int                  result;      /* the last lookup's count, 0: no topic, -1: failed */
  GSource             *result_src;  /* on_result(), attached while a result waits */
};

/* 0 when the broker does not have the topic (yet), -1 when it did not answer. */
static int
lookup(AgentPartitions *ap)
{
  const struct rd_kafka_metadata *md = NULL;
  if (rd_kafka_metadata(ap->rk, 0, ap->rkt, &md, LOOKUP_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return -1;
  int n = 0;
  for (int i = 0; i < md->topic_cnt; i++)
    if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR
        && g_str_equal(md->topics[i].topic, rd_kafka_topic_name(ap->rkt)))
      n = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return n;
}

static gboolean on_result(gpointer data);

static gpointer
lookup_thread(gpointer data)
{
  AgentPartitions *ap = data;
  g_mutex_lock(&ap->lock);
  for (;;) {
    while (!ap->wanted && !ap->quit)
      g_cond_wait(&ap->cond, &ap->lock);
    if (ap->quit)
      break;
    ap->wanted = FALSE;
    g_mutex_unlock(&ap->lock);
    int n = lookup(ap);
    g_mutex_lock(&ap->lock);
    ap->result = n;
    if (ap->result_src == NULL) {
      ap->result_src = g_idle_source_new();
      g_source_set_callback(ap->result_src, on_result, ap, NULL);
      g_source_attach(ap->result_src, ap->context);
    }
  }
  g_mutex_unlock(&ap->lock);
  return NULL;
}

static void
lookup_now(AgentPartitions *ap)
{
  g_mutex_lock(&ap->lock);
  ap->wanted = TRUE;
  g_cond_signal(&ap->cond);
  g_mutex_unlock(&ap->lock);
}

static gboolean
on_retry(gpointer data)
{
  AgentPartitions *ap = data;
  ap->retry_src = 0;
  lookup_now(ap);
  return G_SOURCE_REMOVE;
}

static gboolean
on_period(gpointer data)
{
  lookup_now(data);
  return G_SOURCE_CONTINUE;
}

/* A topic that does not exist yet is asked for again soon, with a backoff:
 * one created a moment later (ctlfs's first command) is read within
 * milliseconds, and one nobody creates costs a request every two seconds. */
static void
retry_while_missing(AgentPartitions *ap)
{
  if (ap->known > 0) {
    ap->backoff_ms = RETRY_MIN_MS;
    return;
  }
  if (ap->retry_src == 0) {
    ap->retry_src = g_timeout_add(ap->backoff_ms, on_retry, ap);
    ap->backoff_ms = MIN(ap->backoff_ms * 2, RETRY_MAX_MS);
  }
}

static gboolean
on_result(gpointer data)
{
  AgentPartitions *ap = data;
  g_mutex_lock(&ap->lock);
  int n = ap->result;
  g_source_unref(ap->result_src);
  ap->result_src = NULL;
  g_mutex_unlock(&ap->lock);

  if (n == 0 && ap->known == 0)
    g_debug("%s: no such topic yet", rd_kafka_topic_name(ap->rkt));
  if (n > ap->known) {
    if (ap->known > 0)
      g_message("%s has %d partitions now (was %d)", rd_kafka_topic_name(ap->rkt), n, ap->known);
    if (ap->fn(n, ap->data))
      ap->known = n;
  }
  retry_while_missing(ap);
  return G_SOURCE_REMOVE;
}

AgentPartitions *
agent_partitions_new(rd_kafka_t *rk, const char *topic, int period_ms, AgentPartitionsFunc fn,
                     gpointer data)
{
  AgentPartitions *ap = g_new0(AgentPartitions, 1);
  ap->rk = rk;
  ap->rkt = rd_kafka_topic_new(rk, topic, NULL);
  ap->fn = fn;
  ap->data = data;
  ap->backoff_ms = RETRY_MIN_MS;
  ap->context = g_main_context_ref_thread_default();
  g_mutex_init(&ap->lock);
  g_cond_init(&ap->cond);
  ap->wanted = TRUE;   /* the first lookup at once */
  ap->thread = g_thread_new("agent-partitions", lookup_thread, ap);
  ap->period_src = g_timeout_add(period_ms, on_period, ap);
  return ap;
}

void
agent_partitions_free(AgentPartitions *ap)
{
  if (ap == NULL)
    return;
  g_mutex_lock(&ap->lock);
  ap->quit = TRUE;
  g_cond_signal(&ap->cond);
  g_mutex_unlock(&ap->lock);
  g_thread_join(ap->thread);
  if (ap->result_src != NULL) {
    g_source_destroy(ap->result_src);
    g_source_unref(ap->result_src);
  }
  g_clear_handle_id(&ap->retry_src, g_source_remove);
  g_clear_handle_id(&ap->period_src, g_source_remove);
  rd_kafka_topic_destroy(ap->rkt);
  g_main_context_unref(ap->context);
  g_mutex_clear(&ap->lock);
  g_cond_clear(&ap->cond);
  g_free(ap);
}
