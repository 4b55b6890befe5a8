#define G_LOG_DOMAIN "ctlfs-mock"
#include "mockbroker.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* The header leaves the error domain open; callers only show the message. */
#define MOCK_ERROR         g_quark_from_static_string("ctl-mock-broker-error")
#define MOCK_ERROR_FAILED  0
#define MOCK_ERROR_INVALID 1

struct CtlMockBroker {
  rd_kafka_t              *rk;        /* only hosts the cluster; never connects */
  rd_kafka_mock_cluster_t *cluster;
  int                      n_brokers;
  char                    *bootstraps;
};

/* The host handle has no bootstrap.servers and says so at warning level on
 * every start; the cluster's own chatter is debugging material too. */
static void
log_to_debug(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
  g_debug("rdkafka %s: %s", fac, buf);
}

CtlMockBroker *
ctl_mock_broker_new(int n_brokers, GError **error)
{
  g_return_val_if_fail(n_brokers >= 1, NULL);

  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_to_debug);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == NULL) {
    rd_kafka_conf_destroy(conf);
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_FAILED, "mock broker: %s", errstr);
    return NULL;
  }
  rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(rk, n_brokers);
  if (cluster == NULL) {
    rd_kafka_destroy(rk);
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_FAILED,
                "mock broker: could not start a cluster of %d", n_brokers);
    return NULL;
  }

  CtlMockBroker *mb = g_new0(CtlMockBroker, 1);
  mb->rk = rk;
  mb->cluster = cluster;
  mb->n_brokers = n_brokers;
  mb->bootstraps = g_strdup(rd_kafka_mock_cluster_bootstraps(cluster));
  return mb;
}

const char *
ctl_mock_broker_bootstraps(CtlMockBroker *mb)
{
  return mb->bootstraps;
}

static gboolean
parse_number(const char *text, gint64 min, gint64 max, const char *what,
             gint64 *out, GError **error)
{
  g_autoptr(GError) local = NULL;
  if (!g_ascii_string_to_signed(text, 10, min, max, out, &local)) {
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_INVALID,
                "%s: %s", what, local->message);
    return FALSE;
  }
  return TRUE;
}

/* "topic NAME PARTITIONS": the topic made now, with that many partitions
 * (the mock otherwise makes any topic asked for, with 4). */
static gboolean
make_topic(CtlMockBroker *mb, char **words, GError **error)
{
  gint64 partitions;
  if (g_strv_length(words) != 3) {
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_INVALID, "expected \"topic NAME PARTITIONS\"");
    return FALSE;
  }
  if (!parse_number(words[2], 1, 10000, "partitions", &partitions, error))
    return FALSE;
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mb->cluster, words[1], (int) partitions,
                                                       MIN(mb->n_brokers, 3));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_FAILED, "%s", rd_kafka_err2str(err));
    return FALSE;
  }
  return TRUE;
}

static gboolean
apply_fault(CtlMockBroker *mb, char **words, GError **error)
{
  guint n = g_strv_length(words);
  if (g_strcmp0(words[0], "topic") == 0)
    return make_topic(mb, words, error);
  gboolean is_rtt = g_strcmp0(words[0], "rtt") == 0;
  gboolean is_updown = g_strcmp0(words[0], "down") == 0 || g_strcmp0(words[0], "up") == 0;
  if (!(is_rtt && n == 3) && !(is_updown && n == 2)) {
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_INVALID,
                "expected \"down ID\", \"up ID\", \"rtt ID MS\" or \"topic NAME PARTITIONS\"");
    return FALSE;
  }
  gint64 id, ms = 0;
  if (!parse_number(words[1], 1, mb->n_brokers, "broker id", &id, error)
      || (is_rtt && !parse_number(words[2], 0, G_MAXINT, "rtt", &ms, error)))
    return FALSE;

  rd_kafka_resp_err_t err;
  if (is_rtt)
    err = rd_kafka_mock_broker_set_rtt(mb->cluster, (int32_t) id, (int) ms);
  else if (words[0][0] == 'd')
    err = rd_kafka_mock_broker_set_down(mb->cluster, (int32_t) id);
  else
    err = rd_kafka_mock_broker_set_up(mb->cluster, (int32_t) id);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_FAILED, "%s", rd_kafka_err2str(err));
    return FALSE;
  }
  return TRUE;
}

gboolean
ctl_mock_broker_fault(CtlMockBroker *mb, const char *line, GError **error)
{
  /* Split on runs of blanks; empty tokens from repeated separators dropped. */
  g_auto(GStrv) raw = g_strsplit_set(line, " \t\r\n", -1);
  g_autoptr(GPtrArray) words = g_ptr_array_new();
  for (char **w = raw; *w != NULL; w++)
    if (**w != '\0')
      g_ptr_array_add(words, *w);
  g_ptr_array_add(words, NULL);

  if (words->len == 1) {
    g_set_error(error, MOCK_ERROR, MOCK_ERROR_INVALID, "empty fault command");
    return FALSE;
  }
  return apply_fault(mb, (char **) words->pdata, error);
}

void
ctl_mock_broker_free(CtlMockBroker *mb)
{
  if (mb == NULL)
    return;
  rd_kafka_mock_cluster_destroy(mb->cluster);
  rd_kafka_destroy(mb->rk);
  g_free(mb->bootstraps);
  g_free(mb);
}
