/* Topic administration on the GLib main loop (see topic-admin.h). */
#include "topic-admin.h"

#include <string.h>

#include "queue-wake.h"

G_DEFINE_QUARK(ctl-topic-admin-error-quark, ctl_topic_admin_error)
#define CTL_TOPIC_ADMIN_ERROR (ctl_topic_admin_error_quark())

/* After the Admin API was found unavailable, it is not asked for so long. */
#define UNAVAILABLE_RETRY_US (300 * G_USEC_PER_SEC)

typedef struct {
  CtlTopicAdmin *ta;
  char          *topic;
  CtlTopicRole   role;
  int            partitions;   /* from the metadata; -1 unknown */
  int            replicas;
  gboolean       exists;       /* CreateTopics said TOPIC_ALREADY_EXISTS */
} Req;

struct CtlTopicAdmin {
  rd_kafka_t          *rk;
  CtlTopicSettings     settings;
  CtlTopicAdminResult  cb;
  gpointer             user_data;
  CtlQueueWake        *wake;      /* owns the queue the Admin API answers on */
  rd_kafka_queue_t    *queue;
  GHashTable          *reqs;      /* topic -> Req*: every check under way */
  GPtrArray           *waiting;   /* Req* for the next metadata request */
  GPtrArray           *looking;   /* Req* of the metadata request in flight */
  GThread             *thread;    /* that request */
  guint                done_src;  /* the thread's answer, on the loop */
  const struct rd_kafka_metadata *md;   /* the thread's result */
  rd_kafka_resp_err_t  md_err;
  char                *unavailable;     /* why the Admin API is not asked */
  gint64               unavailable_until;
  gboolean             warned;
};

static void
req_free(Req *req)
{
  g_free(req->topic);
  g_free(req);
}

static void look_up_next(CtlTopicAdmin *ta);

/* The one answer of a check. */
static void
finish(Req *req, CtlTopicOutcome outcome, const char *detail)
{
  CtlTopicAdmin *ta = req->ta;
  g_hash_table_steal(ta->reqs, req->topic);
  g_debug("topic %s (%s): %s: %s", req->topic, ctl_topic_role_name(req->role),
          ctl_topic_outcome_name(outcome), detail);
  if (ta->cb)
    ta->cb(req->topic, req->role, outcome, detail, ta->user_data);
  req_free(req);
}

/* The Admin API did not answer: said once per start in the daemon's log,
 * and not asked again for a while. */
static void
admin_unavailable(Req *req, const char *why)
{
  CtlTopicAdmin *ta = req->ta;
  if (why != ta->unavailable) {   /* a new finding, not the one remembered */
    g_free(ta->unavailable);
    ta->unavailable = g_strdup(why);
    ta->unavailable_until = g_get_monotonic_time() + UNAVAILABLE_RETRY_US;
  }
  if (!ta->warned)
    g_warning("kafka admin unavailable: %s; topics are not checked or created "
              "(asked again after 5 minutes)", why);
  ta->warned = TRUE;
  char *diff = ctl_topic_compare(&ta->settings, req->role, req->partitions, req->replicas, NULL);
  char *detail = g_strdup_printf("admin unavailable: %s%s%s", why, diff ? "; " : "",
                                 diff ? diff : "");
  finish(req, CTL_TOPIC_UNAVAILABLE, detail);
  g_free(detail);
  g_free(diff);
}

static gboolean
admin_known_unavailable(CtlTopicAdmin *ta)
{
  return ta->unavailable && g_get_monotonic_time() < ta->unavailable_until;
}

/* Errors of a whole Admin API request that mean "no Admin API here". */
static gboolean
unavailable_err(rd_kafka_resp_err_t err)
{
  return err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE
         || err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION
         || err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
         || err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT;
}

static char *
unavailable_text(CtlTopicAdmin *ta, const char *op, rd_kafka_resp_err_t err, const char *errstr)
{
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    return g_strdup_printf("%s timed out after %d ms (broker may not support the Admin API)",
                           op, ta->settings.timeout_ms);
  if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE || err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION)
    return g_strdup_printf("%s not supported by the broker", op);
  return g_strdup_printf("%s: %s", op, errstr && *errstr ? errstr : rd_kafka_err2str(err));
}

static rd_kafka_AdminOptions_t *
options(Req *req, rd_kafka_admin_op_t op)
{
  CtlTopicAdmin *ta = req->ta;
  char err[256];
  rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(ta->rk, op);
  if (rd_kafka_AdminOptions_set_request_timeout(o, ta->settings.timeout_ms, err, sizeof err))
    g_warning("kafka admin: request timeout: %s", err);
  if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS
      && rd_kafka_AdminOptions_set_operation_timeout(o, ta->settings.timeout_ms, err, sizeof err))
    g_warning("kafka admin: operation timeout: %s", err);
  rd_kafka_AdminOptions_set_opaque(o, req);
  return o;
}

static void
describe(Req *req)
{
  rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, req->topic);
  rd_kafka_AdminOptions_t *o = options(req, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
  rd_kafka_DescribeConfigs(req->ta->rk, &res, 1, o, req->ta->queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ConfigResource_destroy(res);
}

static void
create(Req *req)
{
  CtlTopicAdmin *ta = req->ta;
  char err[256];
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(req->topic, ta->settings.partitions,
                                                  ta->settings.replication_factor, err, sizeof err);
  if (!nt) {
    char *why = g_strdup_printf("CreateTopics: %s", err);
    finish(req, CTL_TOPIC_FAILED, why);
    g_free(why);
    return;
  }
  char **configs = ta->settings.configs[req->role];
  for (gsize i = 0; configs && configs[i] && configs[i + 1]; i += 2)
    rd_kafka_NewTopic_set_config(nt, configs[i], configs[i + 1]);
  rd_kafka_AdminOptions_t *o = options(req, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_CreateTopics(ta->rk, &nt, 1, o, ta->queue);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_NewTopic_destroy(nt);
}

/* A whole request's error (OP: its name): unavailable or failed, then
 * TRUE; FALSE when the request itself went through. */
static gboolean
request_failed(Req *req, const char *op, rd_kafka_event_t *ev)
{
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  if (!err)
    return FALSE;
  char *why = unavailable_text(req->ta, op, err, rd_kafka_event_error_string(ev));
  if (unavailable_err(err))
    admin_unavailable(req, why);
  else
    finish(req, CTL_TOPIC_FAILED, why);
  g_free(why);
  return TRUE;
}

/* The broker refused the request for this topic (ERR, with TEXT if any). */
static void
topic_refused(Req *req, const char *op, rd_kafka_resp_err_t err, const char *text)
{
  char *why = g_strdup_printf("%s: %s: %s", op, rd_kafka_err2name(err),
                              text && *text ? text : rd_kafka_err2str(err));
  finish(req, CTL_TOPIC_FAILED, why);
  g_free(why);
}

static void
on_created(Req *req, rd_kafka_event_t *ev)
{
  CtlTopicAdmin *ta = req->ta;
  if (request_failed(req, "CreateTopics", ev))
    return;
  size_t n = 0;
  const rd_kafka_topic_result_t **res =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  rd_kafka_resp_err_t err = n ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__BAD_MSG;
  if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && !req->exists) {
    /* Another host, or the broker's auto-creation, was first: compare, as
     * any existing topic, after its metadata once more (describing it at
     * once left its partition count uncompared: a topic of 3 partitions
     * where 2 were wanted was "matching"). EXISTS: never created twice,
     * even if the metadata does not show it yet. */
    req->exists = TRUE;
    g_ptr_array_add(ta->waiting, req);
    look_up_next(ta);
    return;
  }
  if (err) {
    topic_refused(req, "CreateTopics", err, n ? rd_kafka_topic_result_error_string(res[0]) : NULL);
    return;
  }
  char *configs = ctl_topic_configs_format((const char *const *) ta->settings.configs[req->role]);
  char p[16] = "default", r[16] = "default";
  if (ta->settings.partitions > 0)
    g_snprintf(p, sizeof p, "%d", ta->settings.partitions);
  if (ta->settings.replication_factor > 0)
    g_snprintf(r, sizeof r, "%d", ta->settings.replication_factor);
  char *detail = g_strdup_printf("partitions=%s replication-factor=%s%s%s", p, r,
                                 *configs ? " " : "", configs);
  finish(req, CTL_TOPIC_CREATED, detail);
  g_free(detail);
  g_free(configs);
}

static void
on_described(Req *req, rd_kafka_event_t *ev)
{
  CtlTopicAdmin *ta = req->ta;
  if (request_failed(req, "DescribeConfigs", ev))
    return;
  size_t n = 0;
  const rd_kafka_ConfigResource_t **res =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
  rd_kafka_resp_err_t err = n ? rd_kafka_ConfigResource_error(res[0]) : RD_KAFKA_RESP_ERR__BAD_MSG;
  if (err) {
    topic_refused(req, "DescribeConfigs", err,
                  n ? rd_kafka_ConfigResource_error_string(res[0]) : NULL);
    return;
  }
  size_t nc = 0;
  const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(res[0], &nc);
  GPtrArray *described = g_ptr_array_new();
  for (size_t i = 0; i < nc; i++) {
    const char *value = rd_kafka_ConfigEntry_value(entries[i]);
    g_ptr_array_add(described, (gpointer) rd_kafka_ConfigEntry_name(entries[i]));
    g_ptr_array_add(described, (gpointer) (value ? value : ""));
  }
  g_ptr_array_add(described, NULL);
  char *diff = ctl_topic_compare(&ta->settings, req->role, req->partitions, req->replicas,
                                 (const char *const *) described->pdata);
  g_ptr_array_free(described, TRUE);
  if (diff) {
    finish(req, CTL_TOPIC_DIFFERING, diff);
  } else {
    char *detail = req->partitions >= 0 ? g_strdup_printf("partitions=%d", req->partitions)
                                        : g_strdup("as configured");
    finish(req, CTL_TOPIC_MATCHING, detail);
    g_free(detail);
  }
  g_free(diff);
}

/* The Admin API's answers (queue-wake.h: served until the queue is empty). */
static void
on_admin_ready(gpointer data)
{
  CtlTopicAdmin *ta = data;
  rd_kafka_event_t *ev;
  while ((ev = rd_kafka_queue_poll(ta->queue, 0)) != NULL) {
    Req *req = rd_kafka_event_opaque(ev);
    if (req) {
      switch (rd_kafka_event_type(ev)) {
      case RD_KAFKA_EVENT_CREATETOPICS_RESULT:
        on_created(req, ev);
        break;
      case RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT:
        on_described(req, ev);
        break;
      default:
        break;
      }
    }
    rd_kafka_event_destroy(ev);
  }
}

/* ---- step 1: the cluster's metadata, on a worker thread ---- */

static gboolean on_looked_up(gpointer data);

static gpointer
look_up(gpointer data)
{
  CtlTopicAdmin *ta = data;
  /* All topics: a request that names the topic may create it (the
   * broker's auto.create.topics.enable, and always on librdkafka's mock). */
  ta->md_err = rd_kafka_metadata(ta->rk, 1, NULL, &ta->md, ta->settings.timeout_ms);
  ta->done_src = g_idle_add(on_looked_up, ta);
  return NULL;
}

static void
look_up_next(CtlTopicAdmin *ta)
{
  if (ta->thread || ta->waiting->len == 0)
    return;
  GPtrArray *t = ta->looking;
  ta->looking = ta->waiting;
  ta->waiting = t;
  ta->md = NULL;
  ta->thread = g_thread_new("ctlfs-topics", look_up, ta);
}

/* The metadata of one topic in MD: FALSE when the cluster does not have it. */
static gboolean
find_topic(const struct rd_kafka_metadata *md, Req *req)
{
  for (int i = 0; md && i < md->topic_cnt; i++) {
    const struct rd_kafka_metadata_topic *t = &md->topics[i];
    if (strcmp(t->topic, req->topic) != 0)
      continue;
    if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
      return FALSE;
    if (t->err) {
      /* It exists, but its partitions are not told (LEADER_NOT_AVAILABLE
       * right after its creation): not compared, rather than "partitions=0". */
      req->partitions = req->replicas = -1;
      return TRUE;
    }
    req->partitions = t->partition_cnt;
    req->replicas = t->partition_cnt > 0 ? t->partitions[0].replica_cnt : -1;
    return TRUE;
  }
  return FALSE;
}

static gboolean
on_looked_up(gpointer data)
{
  CtlTopicAdmin *ta = data;
  g_thread_join(ta->thread);    /* it is done but for returning; its writes are seen */
  ta->thread = NULL;
  ta->done_src = 0;
  const struct rd_kafka_metadata *md = ta->md;
  ta->md = NULL;
  GPtrArray *reqs = ta->looking;
  ta->looking = g_ptr_array_new();
  for (guint i = 0; i < reqs->len; i++) {
    Req *req = reqs->pdata[i];
    if (ta->md_err) {
      char *why = g_strdup_printf("no metadata within %d ms: %s (broker unreachable?)",
                                  ta->settings.timeout_ms, rd_kafka_err2str(ta->md_err));
      finish(req, CTL_TOPIC_UNAVAILABLE, why);
      g_free(why);
      continue;
    }
    gboolean exists = find_topic(md, req) || req->exists;
    if (!exists && !ta->settings.create)
      finish(req, CTL_TOPIC_MISSING, "no such topic, and [topics] create=false");
    else if (admin_known_unavailable(ta))
      admin_unavailable(req, ta->unavailable);
    else if (exists)
      describe(req);
    else
      create(req);
  }
  g_ptr_array_free(reqs, TRUE);
  if (md)
    rd_kafka_metadata_destroy(md);
  look_up_next(ta);
  return G_SOURCE_REMOVE;
}

/* ---- the interface ---- */

CtlTopicAdmin *
ctl_topic_admin_new(rd_kafka_t *rk, const CtlTopicSettings *settings, CtlTopicAdminResult cb,
                    gpointer user_data, GError **error)
{
  CtlTopicAdmin *ta = g_new0(CtlTopicAdmin, 1);
  ta->rk = rk;
  ctl_topic_settings_copy(&ta->settings, settings);
  ta->cb = cb;
  ta->user_data = user_data;
  ta->reqs = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) req_free);
  ta->waiting = g_ptr_array_new();
  ta->looking = g_ptr_array_new();
  ta->queue = rd_kafka_queue_new(rk);
  ta->wake = ctl_queue_wake_new(ta->queue, on_admin_ready, ta, error);
  if (!ta->wake) {
    ta->queue = NULL;   /* destroyed by ctl_queue_wake_new() */
    ctl_topic_admin_free(ta);
    return NULL;
  }
  return ta;
}

void
ctl_topic_admin_ensure(CtlTopicAdmin *ta, const char *topic, CtlTopicRole role)
{
  if (g_hash_table_contains(ta->reqs, topic))
    return;
  Req *req = g_new0(Req, 1);
  req->ta = ta;
  req->topic = g_strdup(topic);
  req->role = role;
  req->partitions = req->replicas = -1;
  g_hash_table_insert(ta->reqs, req->topic, req);
  g_ptr_array_add(ta->waiting, req);
  look_up_next(ta);
}

void
ctl_topic_admin_foreach_pending(CtlTopicAdmin *ta,
                                void (*fn)(const char *topic, CtlTopicRole role, gpointer user_data),
                                gpointer user_data)
{
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init(&it, ta->reqs);
  while (g_hash_table_iter_next(&it, NULL, &value))
    fn(((Req *) value)->topic, ((Req *) value)->role, user_data);
}

void
ctl_topic_admin_free(CtlTopicAdmin *ta)
{
  if (!ta)
    return;
  if (ta->thread)
    g_thread_join(ta->thread);
  if (ta->done_src)
    g_source_remove(ta->done_src);
  if (ta->md)
    rd_kafka_metadata_destroy(ta->md);
  /* Answers still due are dropped with the queue; their requests with reqs. */
  ctl_queue_wake_free(ta->wake);
  g_ptr_array_free(ta->waiting, TRUE);
  g_ptr_array_free(ta->looking, TRUE);
  g_hash_table_unref(ta->reqs);
  ctl_topic_settings_clear(&ta->settings);
  g_free(ta->unavailable);
  g_free(ta);
}
