/* Topic checks: each topic the engine uses is checked once per start against
 * [topics] (created when missing and create=true, compared when it exists:
 * core/base/topic-admin.c does the Admin API part). The outcome is logged
 * on the root (one line per topic, so that "differing" is seen at start in
 * one place) and on the runtime the topic belongs to, and kept for status.
 *
 * Nothing waits for a check: feedback is read and commands are sent while it
 * runs, since an Admin API that never answers (librdkafka's mock cluster, a
 * proxy) must not hold a runtime up. */
#include "engine-private.h"

#include <string.h>

#include "kv.h"

struct CtlTopicChecks {
  GHashTable *outcome;   /* topic -> Check* */
};

typedef struct {
  gboolean        done;
  CtlTopicOutcome outcome;
  char           *text;   /* "OUTCOME: DETAIL", or "checking" */
} Check;

static Check *
check_new(gboolean done, CtlTopicOutcome outcome, char *text)
{
  Check *c = g_new(Check, 1);
  *c = (Check) { .done = done, .outcome = outcome, .text = text };
  return c;
}

static void
check_free(gpointer p)
{
  Check *c = p;
  g_free(c->text);
  g_free(c);
}

/* What a user has to act on; "unavailable" is said once, by the bus. */
static gboolean
astray(const Check *c)
{
  return c->done && (c->outcome == CTL_TOPIC_DIFFERING || c->outcome == CTL_TOPIC_MISSING
                     || c->outcome == CTL_TOPIC_FAILED);
}

void
ctl_engine_topics_start(CtlEngine *e)
{
  e->topics = g_new0(CtlTopicChecks, 1);
  e->topics->outcome = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, check_free);
  ctl_bus_set_topic_settings(e->bus, &e->cfg.topics);
}

void
ctl_engine_topics_stop(CtlEngine *e)
{
  if (!e->topics)
    return;
  g_hash_table_unref(e->topics->outcome);
  g_free(e->topics);
  e->topics = NULL;
}

/* Asked once per topic and start: a runtime removed and made again keeps
 * the first answer (the topic did not change meanwhile, or not by us). */
void
ctl_engine_topics_ensure(CtlEngine *e, const char *topic, CtlTopicRole role)
{
  if (!e->topics || g_hash_table_contains(e->topics->outcome, topic))
    return;
  g_hash_table_insert(e->topics->outcome, g_strdup(topic), check_new(FALSE, 0, g_strdup("checking")));
  ctl_bus_ensure_topic(e->bus, topic, role);
}

const char *
ctl_engine_topic_check(CtlEngine *e, const char *topic)
{
  Check *c = e->topics && topic ? g_hash_table_lookup(e->topics->outcome, topic) : NULL;
  return c ? c->text : NULL;
}

/* g_ptr_array_sort() hands pointers to the elements */
static int
by_name(gconstpointer a, gconstpointer b)
{
  return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Topics found otherwise than configured, space-separated; NULL: none. */
char *
ctl_engine_topics_astray(CtlEngine *e)
{
  if (!e->topics)
    return NULL;
  GPtrArray *names = g_ptr_array_new();
  GHashTableIter it;
  gpointer topic, c;
  g_hash_table_iter_init(&it, e->topics->outcome);
  while (g_hash_table_iter_next(&it, &topic, &c))
    if (astray(c))
      g_ptr_array_add(names, topic);
  if (names->len == 0) {
    g_ptr_array_free(names, TRUE);
    return NULL;
  }
  g_ptr_array_sort(names, by_name);
  g_ptr_array_add(names, NULL);
  char *out = g_strjoinv(" ", (char **) names->pdata);
  g_ptr_array_free(names, TRUE);
  return out;
}

static void
log_check(CtlEngine *e, CtlObject *obj, const char *details)
{
  GError *error = NULL;
  if (!ctl_model_log(e->model, obj, "topic-checked", details, &error)) {
    g_warning("topics: %s: %s", obj->name, error->message);
    g_error_free(error);
  }
  ctl_model_changed(e->model, obj, CTL_CHANGE_STATE);
}

/* The runtime TOPIC belongs to as ROLE, or NULL (the tree topic, or a
 * runtime removed since the check was asked). */
static CtlObject *
owner(CtlEngine *e, const char *topic, CtlTopicRole role)
{
  if (role == CTL_TOPIC_FEEDBACK)
    return g_hash_table_lookup(e->by_topic, topic);
  if (role == CTL_TOPIC_COMMAND)
    return ctl_engine_command_topic_runtime(e, topic);
  return NULL;
}

void
ctl_engine_topic_checked(const char *topic, CtlTopicRole role, CtlTopicOutcome outcome,
                         const char *detail, gpointer user_data)
{
  CtlEngine *e = user_data;
  if (!e->topics || e->stopping)
    return;
  const char *name = ctl_topic_outcome_name(outcome);
  g_hash_table_insert(e->topics->outcome, g_strdup(topic),
                      check_new(TRUE, outcome, g_strdup_printf("%s: %s", name, detail)));
  GString *d = g_string_new(NULL);
  ctl_kv_append(d, "topic", topic);
  g_string_append_c(d, ' ');
  ctl_kv_append(d, "role", ctl_topic_role_name(role));
  g_string_append_c(d, ' ');
  ctl_kv_append(d, "outcome", name);
  g_string_append_c(d, ' ');
  ctl_kv_append(d, "detail", detail);
  log_check(e, ctl_model_root(e->model), d->str);
  CtlObject *rt = owner(e, topic, role);
  if (rt)
    log_check(e, rt, d->str);
  if (astray(g_hash_table_lookup(e->topics->outcome, topic)))
    g_message("topic %s (%s): %s: %s", topic, ctl_topic_role_name(role), name, detail);
  g_string_free(d, TRUE);
}
