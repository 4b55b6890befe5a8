/* rd_kafka_metadata() on a thread of its own (metadata-worker.h). */
#include "metadata-worker.h"

#define RETRY_MIN_MS 20
#define RETRY_MAX_MS 2000

struct CtlMetadataWorker {
  rd_kafka_t       *rk;           /* the caller's */
  rd_kafka_topic_t *rkt;          /* the one topic looked up, or NULL: the known ones */
  int               timeout_ms;
  CtlMetadataFunc   fn;
  gpointer          data;
  int               backoff_ms;   /* the next retry's delay while something is missing */
  guint             retry_src, period_src;
  GMainContext     *context;      /* the creator's: where FN runs */
  GThread          *thread;
  GMutex            lock;         /* guards the four below */
  GCond             cond;
  gboolean          wanted, quit;
  const struct rd_kafka_metadata *result;   /* the latest lookup's, not taken yet */
  GSource          *result_src;   /* on_result(), attached while a result waits */
};

static gboolean on_result(gpointer data);

/* NULL when the broker did not answer. */
static const struct rd_kafka_metadata *
lookup(CtlMetadataWorker *w)
{
  const struct rd_kafka_metadata *md = NULL;
  if (rd_kafka_metadata(w->rk, 0, w->rkt, &md, w->timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return NULL;
  return md;
}

/* Under the lock: RESULT replaces one not taken yet, and the main loop is
 * woken once for however many arrive before it runs. */
static void
post_result(CtlMetadataWorker *w, const struct rd_kafka_metadata *md)
{
  if (w->result)
    rd_kafka_metadata_destroy(w->result);
  w->result = md;
  if (!w->result_src) {
    w->result_src = g_idle_source_new();
    g_source_set_callback(w->result_src, on_result, w, NULL);
    g_source_attach(w->result_src, w->context);
  }
}

static gpointer
worker_thread(gpointer data)
{
  CtlMetadataWorker *w = data;
  g_mutex_lock(&w->lock);
  for (;;) {
    while (!w->wanted && !w->quit)
      g_cond_wait(&w->cond, &w->lock);
    if (w->quit)
      break;
    w->wanted = FALSE;
    g_mutex_unlock(&w->lock);   /* asks meanwhile make one more lookup */
    const struct rd_kafka_metadata *md = lookup(w);
    g_mutex_lock(&w->lock);
    post_result(w, md);
  }
  g_mutex_unlock(&w->lock);
  return NULL;
}

void
ctl_metadata_worker_ask(CtlMetadataWorker *w)
{
  g_mutex_lock(&w->lock);
  w->wanted = TRUE;
  g_cond_signal(&w->cond);
  g_mutex_unlock(&w->lock);
}

static gboolean
on_retry(gpointer data)
{
  CtlMetadataWorker *w = data;
  w->retry_src = 0;
  ctl_metadata_worker_ask(w);
  return G_SOURCE_REMOVE;
}

static gboolean
on_period(gpointer data)
{
  ctl_metadata_worker_ask(data);
  return G_SOURCE_CONTINUE;
}

/* One retry pending at most: a result that finds something still missing
 * while one waits does not shorten or stack it. */
static void
retry_while_missing(CtlMetadataWorker *w, gboolean missing)
{
  if (!missing) {
    w->backoff_ms = RETRY_MIN_MS;
  } else if (!w->retry_src) {
    w->retry_src = g_timeout_add(w->backoff_ms, on_retry, w);
    w->backoff_ms = MIN(w->backoff_ms * 2, RETRY_MAX_MS);
  }
}

static gboolean
on_result(gpointer data)
{
  CtlMetadataWorker *w = data;
  g_mutex_lock(&w->lock);
  const struct rd_kafka_metadata *md = g_steal_pointer(&w->result);
  g_clear_pointer(&w->result_src, g_source_unref);
  g_mutex_unlock(&w->lock);

  gboolean missing = w->fn(md, w->data);
  if (md)
    rd_kafka_metadata_destroy(md);
  retry_while_missing(w, missing);
  return G_SOURCE_REMOVE;
}

CtlMetadataWorker *
ctl_metadata_worker_new(rd_kafka_t *rk, const char *topic, int timeout_ms, int period_ms,
                        const char *name, CtlMetadataFunc fn, gpointer data)
{
  CtlMetadataWorker *w = g_new0(CtlMetadataWorker, 1);
  w->rk = rk;
  w->rkt = topic ? rd_kafka_topic_new(rk, topic, NULL) : NULL;
  w->timeout_ms = timeout_ms;
  w->fn = fn;
  w->data = data;
  w->backoff_ms = RETRY_MIN_MS;
  w->context = g_main_context_ref_thread_default();
  g_mutex_init(&w->lock);
  g_cond_init(&w->cond);
  w->thread = g_thread_new(name, worker_thread, w);
  if (period_ms > 0)
    w->period_src = g_timeout_add(period_ms, on_period, w);
  return w;
}

void
ctl_metadata_worker_free(CtlMetadataWorker *w)
{
  if (!w)
    return;
  g_mutex_lock(&w->lock);
  w->quit = TRUE;
  g_cond_signal(&w->cond);
  g_mutex_unlock(&w->lock);
  g_thread_join(w->thread);
  if (w->result_src) {
    g_source_destroy(w->result_src);
    g_source_unref(w->result_src);
  }
  g_clear_pointer(&w->result, rd_kafka_metadata_destroy);
  g_clear_handle_id(&w->retry_src, g_source_remove);
  g_clear_handle_id(&w->period_src, g_source_remove);
  if (w->rkt)
    rd_kafka_topic_destroy(w->rkt);
  g_main_context_unref(w->context);
  g_mutex_clear(&w->lock);
  g_cond_clear(&w->cond);
  g_free(w);
}
