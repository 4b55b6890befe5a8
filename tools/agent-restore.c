/* See agent-restore.h. */
#include "agent-restore.h"

#include <string.h>

static rd_kafka_t *
restore_consumer(const char *brokers, GError **error)
{
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  const char *props[] = {
    "bootstrap.servers", brokers,
    "client.id", "ctlfs-agent-restore",
    /* a group.id only because a consumer handle wants one; nothing is
     * committed under it (partitions are assigned, auto commit off) */
    "group.id", "ctlfs-agent-restore",
    "enable.auto.commit", "false",
    "enable.partition.eof", "true",
    "fetch.wait.max.ms", "5",
    NULL,
  };
  for (int i = 0; props[i]; i += 2)
    if (rd_kafka_conf_set(conf, props[i], props[i + 1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: %s", props[i], errstr);
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_poll_set_consumer(rk);
  return rk;
}

/* The partitions of TOPIC holding messages, each from its low watermark,
 * with its high watermark in *ENDS (indexed by partition). NULL: none. */
static rd_kafka_topic_partition_list_t *
partitions_to_read(rd_kafka_t *rk, const char *topic, int timeout_ms, GArray *ends,
                   GError **error)
{
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "metadata %s: %s", topic,
                rd_kafka_err2str(err));
    return NULL;
  }
  rd_kafka_topic_partition_list_t *l = NULL;
  if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    int n = md->topics[0].partition_cnt;
    l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++) {
      int p = md->topics[0].partitions[i].id;
      int64_t lo = 0, hi = 0;
      err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "watermarks %s/%d: %s", topic, p,
                    rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(l);
        l = NULL;
        break;
      }
      if (hi <= lo)
        continue;
      if ((guint) p >= ends->len)
        g_array_set_size(ends, p + 1);
      g_array_index(ends, gint64, p) = hi;
      rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
    }
  }
  rd_kafka_metadata_destroy(md);
  return l;
}

gboolean
agent_restore_read(const char *brokers, const char *topic, int timeout_ms,
                   AgentRestoreFunc fn, gpointer data, GError **error)
{
  rd_kafka_t *rk = restore_consumer(brokers, error);
  if (!rk)
    return FALSE;
  GArray *ends = g_array_new(FALSE, TRUE, sizeof(gint64));
  gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
  gboolean ok = TRUE;
  rd_kafka_topic_partition_list_t *l = partitions_to_read(rk, topic, timeout_ms, ends, error);
  if (!l) {
    ok = error == NULL || *error == NULL;
  } else if (l->cnt > 0 && rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot assign %s", topic);
    ok = FALSE;
  } else {
    int left = l->cnt;
    while (left > 0 && g_get_monotonic_time() < deadline) {
      rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
      if (!m)
        continue;
      gint64 *end = m->partition >= 0 && (guint) m->partition < ends->len
                    ? &g_array_index(ends, gint64, m->partition) : NULL;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && end && m->offset < *end) {
        fn(m, data);
        if (m->offset + 1 >= *end) {
          *end = -1;   /* done with it */
          left--;
        }
      } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && end && *end >= 0) {
        *end = -1;     /* compacted or deleted up to its end */
        left--;
      }
      rd_kafka_message_destroy(m);
    }
    if (left > 0) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                  "%s not read whole within %d ms", topic, timeout_ms);
      ok = FALSE;
    }
  }
  if (l)
    rd_kafka_topic_partition_list_destroy(l);
  g_array_free(ends, TRUE);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return ok;
}
