/* The Mia-Platform Fast Data dialect's codec (core/dialect-mia.h): state
 * (command) messages and feedback, against the shapes of Mia-Platform's
 * published schemas. */
#include "dialect-mia.h"

#include <jansson.h>
#include <string.h>

#define ID1 "0196f6a2-7c3d-7a10-8b2e-1234567890ab"
#define T1_MS G_GINT64_CONSTANT(1795428000123)

static CtlCommandMsg
command(const char *resource, const char *verb)
{
  CtlCommandMsg c = {
    .id = ID1, .runtime = "rt1", .resource = (char *) resource, .verb = (char *) verb,
    .issued_at_ms = T1_MS, .uid = 1000, .user = "alice", .pid = 4242, .comm = "bash",
    .host = "adm1",
  };
  return c;
}

static json_t *
parse(const char *text)
{
  json_t *j = json_loads(text, 0, NULL);
  g_assert_nonnull(j);
  return j;
}

static const char *
path_string(json_t *root, const char *const *path)
{
  json_t *j = root;
  for (; *path; path++)
    j = json_object_get(j, *path);
  return json_string_value(j);
}

/* ---- commands ---------------------------------------------------------- */

static void
test_key(void)
{
  g_autofree char *key = ctl_mia_command_key("rt1");
  g_assert_cmpstr(key, ==, "{\"id\":\"rt1\"}");
  g_autofree char *fkey = ctl_mia_feedback_key("p-1", "rt1");
  g_assert_cmpstr(fkey, ==, "{\"pipeline\":{\"id\":\"p-1\",\"name\":\"rt1\"}}");
  g_autofree char *id = NULL, *name = NULL;
  g_assert_true(ctl_mia_feedback_key_decode(fkey, strlen(fkey), &id, &name));
  g_assert_cmpstr(id, ==, "p-1");
  g_assert_cmpstr(name, ==, "rt1");
  g_autofree char *id2 = NULL, *name2 = NULL;
  g_assert_false(ctl_mia_feedback_key_decode("rt1", 3, &id2, &name2));
  g_assert_null(id2);
}

/* The value has Mia's nesting: pipelines -> the runtime's pipeline -> its
 * artifacts, each {"state","name"}, keyed by id when one is known; the ctlfs
 * command rides along. */
static void
test_encode_shape(void)
{
  CtlCommandMsg c = command("svc", "pause");
  CtlMiaDesired d[] = { { NULL, "db", FALSE }, { NULL, "svc", TRUE } };
  g_autofree char *text = ctl_mia_command_encode(&c, NULL, FALSE, d, 2);
  json_t *v = parse(text);
  const char *top[] = { "pipelines", "state", NULL };
  g_assert_cmpstr(path_string(v, top), ==, "resume");
  const char *pl[] = { "pipelines", "override", "rt1", "state", NULL };
  g_assert_cmpstr(path_string(v, pl), ==, "resume");
  const char *pn[] = { "pipelines", "override", "rt1", "name", NULL };
  g_assert_cmpstr(path_string(v, pn), ==, "rt1");
  const char *svc[] = { "pipelines", "override", "rt1", "override", "svc", "state", NULL };
  g_assert_cmpstr(path_string(v, svc), ==, "pause");
  const char *svcn[] = { "pipelines", "override", "rt1", "override", "svc", "name", NULL };
  g_assert_cmpstr(path_string(v, svcn), ==, "svc");
  const char *db[] = { "pipelines", "override", "rt1", "override", "db", "state", NULL };
  g_assert_cmpstr(path_string(v, db), ==, "resume");
  const char *id[] = { "ctlfs", "id", NULL };
  g_assert_cmpstr(path_string(v, id), ==, ID1);
  const char *user[] = { "ctlfs", "issued_by", "user", NULL };
  g_assert_cmpstr(path_string(v, user), ==, "alice");
  json_decref(v);
}

/* Ids known: the override keys are the ids, the names stay inside; the
 * runtime-wide state is the top's and the pipeline's. */
static void
test_encode_ids(void)
{
  CtlCommandMsg c = command("svc", "resume");
  CtlMiaDesired d[] = { { "a-svc", "svc", FALSE } };
  g_autofree char *text = ctl_mia_command_encode(&c, "p-1", TRUE, d, 1);
  json_t *v = parse(text);
  const char *top[] = { "pipelines", "state", NULL };
  g_assert_cmpstr(path_string(v, top), ==, "pause");
  const char *pl[] = { "pipelines", "override", "p-1", "state", NULL };
  g_assert_cmpstr(path_string(v, pl), ==, "pause");
  const char *pn[] = { "pipelines", "override", "p-1", "name", NULL };
  g_assert_cmpstr(path_string(v, pn), ==, "rt1");
  const char *svc[] = { "pipelines", "override", "p-1", "override", "a-svc", "name", NULL };
  g_assert_cmpstr(path_string(v, svc), ==, "svc");
  json_decref(v);
  CtlMiaState s;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_mia_state_decode(text, strlen(text), TRUE, &s, &error));
  g_assert_false(ctl_mia_state_pauses_by_id(&s, "p-1", "rt1", "a-svc", "svc"));
  g_assert_false(ctl_mia_state_pauses_by_id(&s, "p-1", NULL, NULL, "svc"));
  g_assert_true(ctl_mia_state_pauses_by_id(&s, "p-1", "rt1", "a-db", "db"));
  g_assert_nonnull(ctl_mia_state_pipeline(&s, "p-1", NULL));
  g_assert_nonnull(ctl_mia_state_pipeline(&s, "other", "rt1"));
  ctl_mia_state_clear(&s);
}

static void
test_round_trip(void)
{
  CtlCommandMsg c = command("svc", "pause");
  CtlMiaDesired d[] = { { NULL, "db", FALSE }, { NULL, "svc", TRUE } };
  g_autofree char *text = ctl_mia_command_encode(&c, NULL, FALSE, d, 2);
  CtlMiaState s;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_mia_state_decode(text, strlen(text), TRUE, &s, &error));
  g_assert_no_error(error);
  g_assert_true(s.has_ctlfs);
  g_assert_cmpstr(s.ctlfs.id, ==, ID1);
  g_assert_cmpstr(s.ctlfs.resource, ==, "svc");
  g_assert_cmpstr(s.ctlfs.verb, ==, "pause");
  g_assert_cmpint(s.ctlfs.uid, ==, 1000);
  g_assert_true(ctl_mia_state_pauses(&s, "rt1", "svc"));
  g_assert_false(ctl_mia_state_pauses(&s, "rt1", "db"));
  /* not in the override: the runtime-wide default */
  g_assert_false(ctl_mia_state_pauses(&s, "rt1", "other"));
  g_autoptr(GPtrArray) names = ctl_mia_state_artifacts(&s, "rt1");
  g_assert_cmpuint(names->len, ==, 2);
  ctl_mia_state_clear(&s);
}

/* Mia's own example (fast-data-control-plane-state.schema.json): UUID keys,
 * names inside, three levels; the innermost state that names an artifact
 * wins, by key or by name. */
static void
test_decode_mia_example(void)
{
  const char *text =
    "{\"pipelines\":{\"state\":\"pause\",\"override\":{"
    "\"b52c98ec-4910-456a-9ac4-13ad82dac404\":{\"state\":\"pause\",\"name\":\"sv_orders\","
    "\"override\":{\"7e738df3-d963-4554-a8aa-3ca3c55bcf22\":{\"state\":\"resume\",\"name\":\"base-prj\","
    "\"override\":{\"b9dc\":{\"state\":\"pause\",\"name\":\"aggregation\"}}}}}}}}";
  CtlMiaState s;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_mia_state_decode(text, strlen(text), FALSE, &s, &error));
  g_assert_false(s.has_ctlfs);
  g_assert_false(ctl_mia_state_pauses(&s, "sv_orders", "base-prj"));
  g_assert_false(ctl_mia_state_pauses(&s, "b52c98ec-4910-456a-9ac4-13ad82dac404",
                                      "7e738df3-d963-4554-a8aa-3ca3c55bcf22"));
  g_assert_true(ctl_mia_state_pauses(&s, "sv_orders", "other"));   /* the pipeline's */
  g_assert_true(ctl_mia_state_pauses(&s, "elsewhere", "x"));       /* the top's */
  ctl_mia_state_clear(&s);
  /* ctlfs hosts record only what a ctlfs host sent */
  g_assert_false(ctl_mia_state_decode(text, strlen(text), TRUE, &s, &error));
  g_assert_nonnull(strstr(error->message, "\"ctlfs\""));
}

/* ctlfs's own shape on a mia runtime's topic is understood too. */
static void
test_decode_plain_ctlfs(void)
{
  CtlCommandMsg c = command("svc", "resume");
  g_autofree char *text = ctl_command_msg_encode(&c);
  CtlMiaState s;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_mia_state_decode(text, strlen(text), TRUE, &s, &error));
  g_assert_null(s.pipelines);
  g_assert_true(s.has_ctlfs);
  g_assert_cmpstr(s.ctlfs.verb, ==, "resume");
  ctl_mia_state_clear(&s);
}

static void
expect_state_error(const char *text, const char *needle)
{
  CtlMiaState s;
  g_autoptr(GError) error = NULL;
  g_assert_false(ctl_mia_state_decode(text, strlen(text), FALSE, &s, &error));
  g_assert_nonnull(error);
  g_test_message("reason: %s", error->message);
  g_assert_true(error->domain == CTL_MESSAGE_ERROR);
  g_assert_null(strchr(error->message, '\n'));
  g_assert_nonnull(strstr(error->message, needle));
  g_assert_null(s.pipelines);
  g_assert_null(s.ctlfs.id);
}

static void
test_decode_errors(void)
{
  expect_state_error("", "invalid JSON");
  expect_state_error("[1]", "not a JSON object");
  expect_state_error("{\"pipelines\":1}", "\"pipelines\"");
  expect_state_error("{\"pipelines\":{}}", "\"pipelines.state\"");
  expect_state_error("{\"pipelines\":{\"state\":\"stop\"}}", "\"pipelines.state\"");
  expect_state_error("{\"pipelines\":{\"state\":\"pause\",\"override\":[]}}", "\"pipelines.override\"");
  expect_state_error("{\"pipelines\":{\"state\":\"pause\",\"override\":{\"p\":{\"state\":\"pause\"}}}}",
                     "\"pipelines.override.p.name\"");
  expect_state_error("{\"pipelines\":{\"state\":\"pause\"},\"ctlfs\":5}", "\"ctlfs\"");
  expect_state_error("{\"pipelines\":{\"state\":\"pause\"},\"ctlfs\":{\"id\":\"x\"}}", "ctlfs field \"id\"");
  expect_state_error("{\"pipelines\":{\"state\":\"pause\"},\"pipelines\":{\"state\":\"pause\"}}",
                     "invalid JSON");
  /* the override and the ctlfs command must agree */
  CtlCommandMsg c = command("svc", "pause");
  CtlMiaDesired d[] = { { NULL, "svc", FALSE } };
  g_autofree char *text = ctl_mia_command_encode(&c, NULL, FALSE, d, 1);
  expect_state_error(text, "does not pause svc");
  /* the limit comes before parsing */
  g_autofree char *big = g_malloc(CTL_MSG_MAX_BYTES + 2);
  memset(big, ' ', CTL_MSG_MAX_BYTES + 1);
  big[CTL_MSG_MAX_BYTES + 1] = '\0';
  expect_state_error(big, "over the limit");
}

/* ---- feedback ---------------------------------------------------------- */

static GPtrArray *
feedback_ok(const char *text)
{
  GPtrArray *edges = NULL, *skipped = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_cmpint(ctl_mia_feedback_decode(text, strlen(text), &edges, &skipped, &error), ==,
                  CTL_MIA_FEEDBACK);
  g_assert_no_error(error);
  g_assert_null(skipped);
  g_assert_nonnull(edges);
  return edges;
}

static void
test_feedback_round_trip(void)
{
  const char *names[] = { "svc", "db" };
  const char *ids[] = { "a-svc", "a-db" };
  const char *states[] = { "paused", "running" };
  g_autofree char *text = ctl_mia_feedback_encode(names, ids, states, 2, "ctlfs-agent");
  g_autoptr(GPtrArray) edges = feedback_ok(text);
  g_assert_cmpuint(edges->len, ==, 2);
  CtlFeedbackMsg *a = edges->pdata[0], *b = edges->pdata[1];
  g_assert_cmpstr(a->resource, ==, "svc");
  g_assert_cmpstr(a->state, ==, "paused");
  g_assert_null(a->command_id);
  g_assert_null(a->message);
  g_assert_cmpstr(b->resource, ==, "db");
  g_assert_cmpstr(b->state, ==, "running");
  g_assert_cmpstr(((CtlMiaEdge *) edges->pdata[1])->artifact_id, ==, "a-db");
}

/* Mia's example (fast-data-control-plane-feedback.schema.json): one artifact
 * with two exec steps that disagree is running (it still consumes), and the
 * steps are named; unknown fields (metadata) are ignored. */
static void
test_feedback_mia_example(void)
{
  const char *text =
    "{\"edges\":["
    "{\"artifact\":{\"id\":\"7a17\",\"name\":\"books_proj\"},\"exec\":{\"id\":\"06e4\",\"name\":\"mapping\"},"
    "\"state\":\"running\"},"
    "{\"artifact\":{\"id\":\"8de9\",\"name\":\"orders_proj\"},\"exec\":{\"id\":\"10c1\",\"name\":\"mapping\"},"
    "\"state\":\"paused\"},"
    "{\"artifact\":{\"id\":\"8de9\",\"name\":\"orders_proj\"},\"exec\":{\"id\":\"b8c1\",\"name\":\"backup\"},"
    "\"state\":\"running\",\"metadata\":{\"throughput\":\"342\"}},"
    "{\"artifact\":{\"id\":\"f719\",\"name\":\"sv\"},\"exec\":{\"id\":\"1\",\"name\":\"a\"},\"state\":\"paused\"},"
    "{\"artifact\":{\"id\":\"f719\",\"name\":\"sv\"},\"exec\":{\"id\":\"2\",\"name\":\"b\"},\"state\":\"paused\"}"
    "],\"future\":true}";
  g_autoptr(GPtrArray) edges = feedback_ok(text);
  g_assert_cmpuint(edges->len, ==, 3);
  CtlFeedbackMsg *books = edges->pdata[0], *orders = edges->pdata[1], *sv = edges->pdata[2];
  g_assert_cmpstr(books->state, ==, "running");
  g_assert_cmpstr(orders->resource, ==, "orders_proj");
  g_assert_cmpstr(orders->state, ==, "running");
  g_assert_cmpstr(orders->message, ==, "mapping=paused backup=running");
  g_assert_cmpstr(sv->state, ==, "paused");
  g_assert_null(sv->message);
}

static void
test_feedback_bare_names(void)
{
  g_autoptr(GPtrArray) edges =
    feedback_ok("{\"edges\":[{\"artifact\":\"svc\",\"state\":\"paused\"}]}");
  g_assert_cmpuint(edges->len, ==, 1);
  g_assert_cmpstr(((CtlFeedbackMsg *) edges->pdata[0])->resource, ==, "svc");
  g_autoptr(GPtrArray) none = feedback_ok("{\"edges\":[]}");
  g_assert_cmpuint(none->len, ==, 0);
}

static void
expect_feedback(const char *text, CtlMiaFeedbackResult want, const char *needle)
{
  GPtrArray *edges = NULL, *skipped = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_cmpint(ctl_mia_feedback_decode(text, strlen(text), &edges, &skipped, &error), ==, want);
  g_assert_null(edges);
  g_assert_null(skipped);
  if (needle) {
    g_assert_nonnull(error);
    g_test_message("reason: %s", error->message);
    g_assert_nonnull(strstr(error->message, needle));
  } else {
    g_assert_no_error(error);
  }
}

/* A message with one unusable edge (reason NEEDLE) and GOOD usable ones. */
static void
expect_skipped(const char *text, guint good, const char *needle)
{
  GPtrArray *edges = NULL, *skipped = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_cmpint(ctl_mia_feedback_decode(text, strlen(text), &edges, &skipped, &error), ==,
                  CTL_MIA_FEEDBACK);
  g_assert_no_error(error);
  g_assert_cmpuint(edges->len, ==, good);
  g_assert_cmpuint(skipped->len, ==, 1);
  g_test_message("reason: %s", (char *) skipped->pdata[0]);
  g_assert_nonnull(strstr(skipped->pdata[0], needle));
  g_ptr_array_unref(edges);
  g_ptr_array_unref(skipped);
}

static void
test_feedback_errors(void)
{
  /* ctlfs's own feedback: not Mia's shape, for the caller to decode */
  expect_feedback("{\"resource\":\"svc\",\"state\":\"paused\"}", CTL_MIA_NOT_MIA, NULL);
  expect_feedback("{", CTL_MIA_MALFORMED, "invalid JSON");
  expect_feedback("[\"edges\"]", CTL_MIA_MALFORMED, "not a JSON object");
  expect_feedback("{\"edges\":{}}", CTL_MIA_MALFORMED, "\"edges\"");
  /* one unusable edge costs only itself */
  expect_skipped("{\"edges\":[7]}", 0, "\"edges[0]\"");
  expect_skipped("{\"edges\":[{\"state\":\"paused\"}]}", 0, "\"edges[0].artifact\"");
  expect_skipped("{\"edges\":[{\"artifact\":{\"id\":\"x\"},\"state\":\"paused\"}]}", 0,
                 "\"edges[0].artifact\"");
  expect_skipped("{\"edges\":[{\"artifact\":\"ok\",\"state\":\"paused\"},"
                 "{\"artifact\":\"../etc\",\"state\":\"paused\"}]}",
                 1, "\"edges[1].artifact\": not a valid name");
  expect_skipped("{\"edges\":[{\"artifact\":\"svc\",\"state\":\"stale\"},"
                 "{\"artifact\":\"db\",\"state\":\"running\"}]}", 1, "\"edges[0].state\"");
  expect_skipped("{\"edges\":[{\"artifact\":\"svc\"}]}", 0, "\"edges[0].state\"");
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/mia/key", test_key);
  g_test_add_func("/mia/command/encode-shape", test_encode_shape);
  g_test_add_func("/mia/command/encode-ids", test_encode_ids);
  g_test_add_func("/mia/command/round-trip", test_round_trip);
  g_test_add_func("/mia/command/mia-example", test_decode_mia_example);
  g_test_add_func("/mia/command/plain-ctlfs", test_decode_plain_ctlfs);
  g_test_add_func("/mia/command/errors", test_decode_errors);
  g_test_add_func("/mia/feedback/round-trip", test_feedback_round_trip);
  g_test_add_func("/mia/feedback/mia-example", test_feedback_mia_example);
  g_test_add_func("/mia/feedback/bare-names", test_feedback_bare_names);
  g_test_add_func("/mia/feedback/errors", test_feedback_errors);
  return g_test_run();
}
