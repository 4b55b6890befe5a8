/* The two Kafka message formats (core/message.h), the time format
 * (core/timefmt.h) and command ids (UUIDv7). */
#include "message.h"
#include "timefmt.h"

#include <jansson.h>
#include <string.h>

#define ID1 "0196f6a2-7c3d-7a10-8b2e-1234567890ab"
#define T1  "2026-11-23T10:00:00.123Z"
#define T1_MS G_GINT64_CONSTANT(1795428000123)

/* A valid command with every field, for tests to break one field at a time. */
static const char *good_command =
  "{\"id\":\"" ID1 "\",\"runtime\":\"rt1\",\"resource\":\"svc\",\"verb\":\"pause\","
  "\"issued_at\":\"" T1 "\","
  "\"issued_by\":{\"uid\":1000,\"user\":\"alice\",\"pid\":4242,\"comm\":\"bash\",\"host\":\"adm1\"}}";

/* ---- helpers ------------------------------------------------------------ */

/* Asserts that a decode failed with CODE, a one-line reason naming FIELD. */
static void
assert_error(GError *error, int code, const char *field)
{
  g_assert_nonnull(error);
  g_test_message("reason: %s", error->message);
  g_assert_true(error->domain == CTL_MESSAGE_ERROR);
  g_assert_cmpint(error->code, ==, code);
  g_assert_null(strchr(error->message, '\n'));
  g_assert_null(strchr(error->message, '\r'));
  g_assert_true(g_utf8_validate(error->message, -1, NULL));
  if (field != NULL) {
    g_autofree char *quoted = g_strdup_printf("\"%s\"", field);
    g_assert_nonnull(strstr(error->message, quoted));
  }
}

static void
expect_command_error_len(const char *buf, gsize len, int code, const char *field)
{
  CtlCommandMsg msg;
  g_autoptr(GError) error = NULL;
  g_assert_false(ctl_command_msg_decode(buf, len, &msg, &error));
  assert_error(error, code, field);
  /* OUT is left cleared. */
  g_assert_null(msg.id);
  g_assert_null(msg.runtime);
  g_assert_null(msg.resource);
  g_assert_null(msg.verb);
  g_assert_null(msg.user);
  g_assert_cmpint(msg.uid, ==, -1);
  g_assert_cmpint(msg.pid, ==, -1);
}

static void
expect_command_error(const char *json, int code, const char *field)
{
  expect_command_error_len(json, strlen(json), code, field);
}

static void
expect_feedback_error(const char *json, int code, const char *field)
{
  CtlFeedbackMsg msg;
  g_autoptr(GError) error = NULL;
  g_assert_false(ctl_feedback_msg_decode(json, strlen(json), &msg, &error));
  assert_error(error, code, field);
  g_assert_null(msg.resource);
  g_assert_null(msg.state);
  g_assert_null(msg.metrics_json);
}

/* good_command with KEY set to the JSON text VALUE (NULL: removed). */
static char *
command_with(const char *key, const char *value)
{
  json_t *obj = json_loads(good_command, 0, NULL);
  g_assert_nonnull(obj);
  if (value == NULL)
    json_object_del(obj, key);
  else
    json_object_set_new(obj, key, json_loads(value, JSON_DECODE_ANY, NULL));
  char *out = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  return out;
}

static char *
issued_by_with(const char *key, const char *value)
{
  json_t *obj = json_loads(good_command, 0, NULL);
  json_t *by = json_object_get(obj, "issued_by");
  json_object_set_new(by, key, json_loads(value, JSON_DECODE_ANY, NULL));
  char *out = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  return out;
}

/* ---- commands ----------------------------------------------------------- */

static void
test_command_decode(void)
{
  CtlCommandMsg msg;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(good_command, strlen(good_command), &msg, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(msg.id, ==, ID1);
  g_assert_cmpstr(msg.runtime, ==, "rt1");
  g_assert_cmpstr(msg.resource, ==, "svc");
  g_assert_cmpstr(msg.verb, ==, "pause");
  g_assert_cmpint(msg.issued_at_ms, ==, T1_MS);
  g_assert_cmpint(msg.expires_at_ms, ==, 0);
  g_assert_cmpint(msg.uid, ==, 1000);
  g_assert_cmpstr(msg.user, ==, "alice");
  g_assert_cmpint(msg.pid, ==, 4242);
  g_assert_cmpstr(msg.comm, ==, "bash");
  g_assert_cmpstr(msg.host, ==, "adm1");
  ctl_command_msg_clear(&msg);
  g_assert_null(msg.id);
  g_assert_cmpint(msg.uid, ==, -1);
}

static void
test_command_round_trip(void)
{
  CtlCommandMsg in = {
    .id = (char *) ID1, .runtime = (char *) "rt-1.a", .resource = (char *) "svc_2",
    .verb = (char *) "resume", .issued_at_ms = T1_MS, .expires_at_ms = T1_MS + 5000,
    .uid = 0, .user = (char *) "root", .pid = 1, .comm = (char *) "sh -c \"x\"",
    .host = (char *) "h\xc3\xa9te",
  };
  g_autofree char *json = ctl_command_msg_encode(&in);
  g_assert_nonnull(json);
  g_assert_null(strchr(json, '\n'));   /* compact */

  CtlCommandMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(json, strlen(json), &out, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(out.id, ==, in.id);
  g_assert_cmpstr(out.runtime, ==, in.runtime);
  g_assert_cmpstr(out.resource, ==, in.resource);
  g_assert_cmpstr(out.verb, ==, in.verb);
  g_assert_cmpint(out.issued_at_ms, ==, in.issued_at_ms);
  g_assert_cmpint(out.expires_at_ms, ==, in.expires_at_ms);
  g_assert_cmpint(out.uid, ==, 0);       /* root is a uid, not "absent" */
  g_assert_cmpstr(out.user, ==, in.user);
  g_assert_cmpint(out.pid, ==, 1);
  g_assert_cmpstr(out.comm, ==, in.comm);
  g_assert_cmpstr(out.host, ==, in.host);
  ctl_command_msg_clear(&out);
}

/* Absent audit fields stay absent through a round trip. */
static void
test_command_minimal(void)
{
  CtlCommandMsg in = {
    .id = (char *) ID1, .runtime = (char *) "rt1", .resource = (char *) "svc",
    .verb = (char *) "stop", .issued_at_ms = T1_MS, .uid = -1, .pid = -1,
  };
  g_autofree char *json = ctl_command_msg_encode(&in);
  json_t *obj = json_loads(json, 0, NULL);
  g_assert_nonnull(obj);
  g_assert_cmpstr(json_string_value(json_object_get(obj, "issued_at")), ==, T1);
  g_assert_null(json_object_get(obj, "expires_at"));
  json_t *by = json_object_get(obj, "issued_by");
  g_assert_true(by == NULL || json_object_size(by) == 0);
  json_decref(obj);

  CtlCommandMsg out;
  g_assert_true(ctl_command_msg_decode(json, strlen(json), &out, NULL));
  g_assert_cmpint(out.uid, ==, -1);
  g_assert_cmpint(out.pid, ==, -1);
  g_assert_null(out.user);
  g_assert_null(out.comm);
  g_assert_null(out.host);
  g_assert_cmpint(out.expires_at_ms, ==, 0);
  ctl_command_msg_clear(&out);

  /* And issued_by may be missing from the wire altogether. */
  g_autofree char *bare = command_with("issued_by", NULL);
  g_assert_true(ctl_command_msg_decode(bare, strlen(bare), &out, NULL));
  g_assert_cmpint(out.uid, ==, -1);
  ctl_command_msg_clear(&out);
}

/* A process comm can be any bytes; the encoder must still emit valid JSON
 * with the field present. */
static void
test_command_encode_invalid_utf8(void)
{
  CtlCommandMsg in = {
    .id = (char *) ID1, .runtime = (char *) "rt1", .resource = (char *) "svc",
    .verb = (char *) "pause", .issued_at_ms = T1_MS, .uid = 5, .pid = 6,
    .comm = (char *) "bad\xff\xfe", .user = (char *) "ok",
  };
  g_autofree char *json = ctl_command_msg_encode(&in);
  g_assert_true(g_utf8_validate(json, -1, NULL));
  CtlCommandMsg out;
  g_assert_true(ctl_command_msg_decode(json, strlen(json), &out, NULL));
  g_assert_nonnull(out.comm);
  g_assert_true(g_str_has_prefix(out.comm, "bad"));
  g_assert_cmpstr(out.user, ==, "ok");
  ctl_command_msg_clear(&out);
}

static void
test_command_unknown_fields(void)
{
  g_autofree char *extra = command_with("future", "{\"nested\":[1,2,{\"x\":null}]}");
  CtlCommandMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(extra, strlen(extra), &out, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(out.verb, ==, "pause");
  ctl_command_msg_clear(&out);

  g_autofree char *extra_by = issued_by_with("groups", "[1,2,3]");
  g_assert_true(ctl_command_msg_decode(extra_by, strlen(extra_by), &out, NULL));
  g_assert_cmpint(out.uid, ==, 1000);
  ctl_command_msg_clear(&out);
}

static void
test_command_bad_json(void)
{
  expect_command_error("", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_command_error("{", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_command_error("{\"id\":", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_command_error("{\"id\":\"x\",}", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_command_error("{} trailing", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_command_error("{'id':'x'}", CTL_MESSAGE_ERROR_JSON, NULL);
  /* A newline inside the offending token must not split the reason. */
  expect_command_error("{\"id\":\"a\nb\"}", CTL_MESSAGE_ERROR_JSON, NULL);
  /* Two "verb" keys: readers could disagree on which counts. */
  g_autofree char *dup = g_strconcat("{\"verb\":\"resume\",", good_command + 1, NULL);
  expect_command_error(dup, CTL_MESSAGE_ERROR_JSON, NULL);
  /* The length is honoured: a valid object cut short is not valid. */
  expect_command_error_len(good_command, strlen(good_command) - 1, CTL_MESSAGE_ERROR_JSON, NULL);
  /* And a NUL after the object is not silently ignored. */
  expect_command_error_len(good_command, strlen(good_command) + 1, CTL_MESSAGE_ERROR_JSON, NULL);
}

static void
test_command_not_object(void)
{
  const char *docs[] = { "[]", "[{\"id\":\"x\"}]", "\"pause\"", "42", "null", "true", NULL };
  for (const char **d = docs; *d != NULL; d++)
    expect_command_error(*d, CTL_MESSAGE_ERROR_JSON, NULL);
}

static void
test_command_invalid_utf8(void)
{
  /* Raw bytes, not \u escapes: jansson must refuse them. */
  const char *docs[] = {
    "{\"id\":\"\xff\"}",
    "{\"resource\":\"sv\xc3\"}",                    /* truncated sequence */
    "{\"user\":\"\xc0\xaf\"}",                      /* overlong "/" */
    "{\"\xed\xa0\x80\":1}",                         /* surrogate as a key */
    NULL,
  };
  for (const char **d = docs; *d != NULL; d++)
    expect_command_error(*d, CTL_MESSAGE_ERROR_JSON, NULL);
  /* A NUL smuggled in as an escape would cut the C string short. */
  expect_command_error("{\"resource\":\"svc\\u0000x\"}", CTL_MESSAGE_ERROR_JSON, NULL);
}

static void
test_command_missing_fields(void)
{
  const char *required[] = { "id", "runtime", "resource", "verb", "issued_at", NULL };
  for (const char **k = required; *k != NULL; k++) {
    g_autofree char *gone = command_with(*k, NULL);
    expect_command_error(gone, CTL_MESSAGE_ERROR_FIELD, *k);
    g_autofree char *nulled = command_with(*k, "null");
    expect_command_error(nulled, CTL_MESSAGE_ERROR_FIELD, *k);
  }
  expect_command_error("{}", CTL_MESSAGE_ERROR_FIELD, NULL);
}

static void
test_command_wrong_types(void)
{
  static const struct { const char *key, *value; } cases[] = {
    { "id", "42" }, { "runtime", "[\"rt1\"]" }, { "resource", "{}" }, { "verb", "true" },
    { "issued_at", "1795428000123" }, { "expires_at", "5" }, { "issued_by", "\"alice\"" },
    { "issued_by", "[]" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *json = command_with(cases[i].key, cases[i].value);
    expect_command_error(json, CTL_MESSAGE_ERROR_FIELD, cases[i].key);
  }
  static const struct { const char *key, *value; } by_cases[] = {
    { "uid", "\"1000\"" }, { "uid", "1.5" }, { "pid", "true" }, { "user", "7" },
    { "comm", "[]" }, { "host", "{}" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(by_cases); i++) {
    g_autofree char *json = issued_by_with(by_cases[i].key, by_cases[i].value);
    expect_command_error(json, CTL_MESSAGE_ERROR_FIELD, by_cases[i].key);
  }
  g_autofree char *neg = issued_by_with("uid", "-1");
  expect_command_error(neg, CTL_MESSAGE_ERROR_VALUE, "uid");
}

static void
test_command_bad_values(void)
{
  g_autofree char *long_name = g_strnfill(129, 'a');
  g_autofree char *long_json = g_strdup_printf("\"%s\"", long_name);
  static const struct { const char *key, *value; } cases[] = {
    { "resource", "\"a/b\"" }, { "resource", "\"..\"" }, { "resource", "\".\"" },
    { "resource", "\"\"" }, { "resource", "\"a b\"" }, { "resource", "\"caf\\u00e9\"" },
    { "runtime", "\"../etc\"" }, { "runtime", "\"rt1\\n\"" },
    { "verb", "\"PAUSE\"" }, { "verb", "\"restart\"" }, { "verb", "\"\"" },
    { "verb", "\"pause \"" },
    { "id", "\"not-a-uuid\"" }, { "id", "\"\"" },
    { "issued_at", "\"yesterday\"" }, { "issued_at", "\"2026-11-23\"" },
    { "issued_at", "\"2026-13-01T00:00:00Z\"" }, { "expires_at", "\"soon\"" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *json = command_with(cases[i].key, cases[i].value);
    expect_command_error(json, CTL_MESSAGE_ERROR_VALUE, cases[i].key);
  }
  g_autofree char *json = command_with("resource", long_json);
  expect_command_error(json, CTL_MESSAGE_ERROR_VALUE, "resource");
  /* 128 bytes is still a name. */
  long_json[129] = '"';
  long_json[130] = '\0';
  g_autofree char *ok = command_with("resource", long_json);
  CtlCommandMsg out;
  g_assert_true(ctl_command_msg_decode(ok, strlen(ok), &out, NULL));
  g_assert_cmpuint(strlen(out.resource), ==, 128);
  ctl_command_msg_clear(&out);
}

/* A runtime-wide command: "scope": "runtime", no resource, pause or resume;
 * it encodes back to the same shape. inherit is a resource's verb. */
static void
test_command_runtime_wide(void)
{
  const char *json = "{\"id\":\"0196f6a2-8a10-7c3e-9a01-5b2d7e6f0c11\",\"runtime\":\"rt1\","
                     "\"scope\":\"runtime\",\"verb\":\"pause\","
                     "\"issued_at\":\"2026-11-23T10:00:00.000Z\"}";
  CtlCommandMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(json, strlen(json), &out, &error));
  g_assert_null(out.resource);
  g_assert_cmpstr(out.verb, ==, "pause");
  g_autofree char *again = ctl_command_msg_encode(&out);
  g_assert_nonnull(strstr(again, "\"scope\":\"runtime\""));
  g_assert_null(strstr(again, "\"resource\""));
  ctl_command_msg_clear(&out);

  g_autofree char *with_resource = command_with("scope", "\"runtime\"");
  expect_command_error(with_resource, CTL_MESSAGE_ERROR_FIELD, "resource");
  g_autofree char *bad_scope = command_with("scope", "\"cluster\"");
  expect_command_error(bad_scope, CTL_MESSAGE_ERROR_VALUE, "scope");
  g_autofree char *one = command_with("scope", "\"resource\"");
  g_assert_true(ctl_command_msg_decode(one, strlen(one), &out, NULL));
  g_assert_nonnull(out.resource);
  ctl_command_msg_clear(&out);
  /* runtime-wide: only pause and resume */
  char *fixed = g_strdup_printf("{\"id\":\"0196f6a2-8a10-7c3e-9a01-5b2d7e6f0c11\","
                                "\"runtime\":\"rt1\",\"scope\":\"runtime\",\"verb\":\"stop\","
                                "\"issued_at\":\"2026-11-23T10:00:00.000Z\"}");
  expect_command_error(fixed, CTL_MESSAGE_ERROR_VALUE, "verb");
  g_free(fixed);
  g_autofree char *inherit = command_with("verb", "\"inherit\"");
  g_assert_true(ctl_command_msg_decode(inherit, strlen(inherit), &out, NULL));
  g_assert_cmpstr(out.verb, ==, "inherit");
  ctl_command_msg_clear(&out);
}

/* A JSON object of exactly SIZE bytes: good_command padded by a junk field. */
static char *
command_of_size(gsize size)
{
  gsize base = strlen(good_command);
  const char *pad_open = ",\"pad\":\"";
  gsize overhead = strlen(pad_open) + 1;   /* + closing quote */
  g_assert_cmpuint(size, >, base + overhead);
  GString *s = g_string_new_len(good_command, base - 1);   /* without '}' */
  g_string_append(s, pad_open);
  for (gsize n = size - base - overhead; n > 0; n--)
    g_string_append_c(s, 'x');
  g_string_append(s, "\"}");
  g_assert_cmpuint(s->len, ==, size);
  return g_string_free(s, FALSE);
}

static void
test_oversized(void)
{
  g_autofree char *at_limit = command_of_size(CTL_MSG_MAX_BYTES);
  CtlCommandMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(at_limit, CTL_MSG_MAX_BYTES, &out, &error));
  g_assert_no_error(error);
  ctl_command_msg_clear(&out);

  g_autofree char *over = command_of_size(CTL_MSG_MAX_BYTES + 1);
  expect_command_error_len(over, CTL_MSG_MAX_BYTES + 1, CTL_MESSAGE_ERROR_JSON, NULL);

  /* Rejected on size alone, before any parsing: garbage gets the same answer. */
  gsize huge = 8 * CTL_MSG_MAX_BYTES;
  g_autofree char *junk = g_malloc(huge);
  memset(junk, '[', huge);
  CtlFeedbackMsg fb;
  g_autoptr(GError) ferr = NULL;
  g_assert_false(ctl_feedback_msg_decode(junk, huge, &fb, &ferr));
  g_assert_error(ferr, CTL_MESSAGE_ERROR, CTL_MESSAGE_ERROR_JSON);
  g_assert_nonnull(strstr(ferr->message, "limit"));
}

/* ---- feedback ----------------------------------------------------------- */

static void
test_feedback_round_trip(void)
{
  CtlFeedbackMsg in = {
    .resource = (char *) "svc", .state = (char *) "paused", .command_id = (char *) ID1,
    .ts_ms = T1_MS + 17, .message = (char *) "line1\nline2 \"quoted\"",
    .metrics_json = (char *) "{ \"lag\" : 5, \"rate\": 1.5 }",
  };
  g_autofree char *json = ctl_feedback_msg_encode(&in);
  g_assert_null(strchr(json, '\n'));

  CtlFeedbackMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_feedback_msg_decode(json, strlen(json), &out, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(out.resource, ==, "svc");
  g_assert_cmpstr(out.state, ==, "paused");
  g_assert_cmpstr(out.command_id, ==, ID1);
  g_assert_cmpint(out.ts_ms, ==, T1_MS + 17);
  g_assert_cmpstr(out.message, ==, in.message);
  g_assert_cmpstr(out.metrics_json, ==, "{\"lag\":5,\"rate\":1.5}");
  ctl_feedback_msg_clear(&out);
  g_assert_null(out.resource);
}

static void
test_feedback_minimal(void)
{
  const char *json = "{\"resource\":\"svc\",\"state\":\"running\"}";
  CtlFeedbackMsg out;
  g_assert_true(ctl_feedback_msg_decode(json, strlen(json), &out, NULL));
  g_assert_cmpstr(out.state, ==, "running");
  g_assert_null(out.command_id);
  g_assert_cmpint(out.ts_ms, ==, 0);
  g_assert_null(out.message);
  g_assert_null(out.metrics_json);
  ctl_feedback_msg_clear(&out);

  /* null optional fields are as good as absent */
  json = "{\"resource\":\"svc\",\"state\":\"stopped\",\"command_id\":null,\"ts\":null,"
         "\"message\":null,\"metrics\":null}";
  g_assert_true(ctl_feedback_msg_decode(json, strlen(json), &out, NULL));
  g_assert_null(out.command_id);
  g_assert_null(out.metrics_json);
  ctl_feedback_msg_clear(&out);

  /* Encoding a minimal struct leaves the optional keys out. */
  CtlFeedbackMsg in = { .resource = (char *) "svc", .state = (char *) "paused" };
  g_autofree char *enc = ctl_feedback_msg_encode(&in);
  g_assert_cmpstr(enc, ==, "{\"resource\":\"svc\",\"state\":\"paused\"}");
}

static void
test_feedback_unknown_fields(void)
{
  const char *json = "{\"runtime\":\"rt1\",\"resource\":\"svc\",\"state\":\"paused\","
                     "\"extra\":{\"deep\":[1,{}]},\"v\":2}";
  CtlFeedbackMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_feedback_msg_decode(json, strlen(json), &out, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(out.resource, ==, "svc");
  ctl_feedback_msg_clear(&out);
}

static void
test_feedback_rejects(void)
{
  expect_feedback_error("not json", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_feedback_error("[\"svc\",\"paused\"]", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_feedback_error("{\"resource\":\"sv\xff\",\"state\":\"paused\"}", CTL_MESSAGE_ERROR_JSON, NULL);
  expect_feedback_error("{\"state\":\"paused\"}", CTL_MESSAGE_ERROR_FIELD, "resource");
  expect_feedback_error("{\"resource\":\"svc\"}", CTL_MESSAGE_ERROR_FIELD, "state");
  expect_feedback_error("{\"resource\":1,\"state\":\"paused\"}", CTL_MESSAGE_ERROR_FIELD, "resource");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":[]}", CTL_MESSAGE_ERROR_FIELD, "state");
  expect_feedback_error("{\"resource\":\"a/b\",\"state\":\"paused\"}", CTL_MESSAGE_ERROR_VALUE, "resource");
  expect_feedback_error("{\"resource\":\"..\",\"state\":\"paused\"}", CTL_MESSAGE_ERROR_VALUE, "resource");
  /* "stale" is ctlfs's own verdict, never a runtime's report. */
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"stale\"}", CTL_MESSAGE_ERROR_VALUE, "state");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"Paused\"}", CTL_MESSAGE_ERROR_VALUE, "state");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"exploded\"}", CTL_MESSAGE_ERROR_VALUE, "state");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"command_id\":7}",
                        CTL_MESSAGE_ERROR_FIELD, "command_id");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"command_id\":\"x\"}",
                        CTL_MESSAGE_ERROR_VALUE, "command_id");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"ts\":12}",
                        CTL_MESSAGE_ERROR_FIELD, "ts");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"ts\":\"now\"}",
                        CTL_MESSAGE_ERROR_VALUE, "ts");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"message\":{}}",
                        CTL_MESSAGE_ERROR_FIELD, "message");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"metrics\":[1]}",
                        CTL_MESSAGE_ERROR_FIELD, "metrics");
  expect_feedback_error("{\"resource\":\"svc\",\"state\":\"paused\",\"metrics\":\"{}\"}",
                        CTL_MESSAGE_ERROR_FIELD, "metrics");
}

static void
test_states_and_verbs(void)
{
  const char *states[] = { "running", "paused", "pausing", "resuming", "starting",
                           "stopping", "stopped", "sleeping", "shutting-down", "unknown", NULL };
  for (const char **s = states; *s != NULL; s++)
    g_assert_true(ctl_observed_state_valid(*s));
  g_assert_false(ctl_observed_state_valid("stale"));
  g_assert_false(ctl_observed_state_valid(""));
  g_assert_false(ctl_observed_state_valid(NULL));

  const char *verbs[] = { "pause", "resume", "start", "stop", NULL };
  for (const char **v = verbs; *v != NULL; v++)
    g_assert_true(ctl_verb_valid(*v));
  g_assert_false(ctl_verb_valid("paused"));
  g_assert_false(ctl_verb_valid("Pause"));
  g_assert_false(ctl_verb_valid(NULL));
}

static void
test_topics(void)
{
  g_autofree char *c = ctl_topic_commands("ctlfs", "rt1");
  g_autofree char *f = ctl_topic_feedback("pfx.x", "rt1");
  g_assert_cmpstr(c, ==, "ctlfs.rt1.commands");
  g_assert_cmpstr(f, ==, "pfx.x.rt1.feedback");
}

/* ---- UUIDv7 ------------------------------------------------------------- */

static void
test_uuid7_format(void)
{
  g_autoptr(GRegex) re = g_regex_new(
      "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", 0, 0, NULL);
  for (int i = 0; i < 200; i++) {
    char id[37];
    gint64 before = ctl_now_ms();
    ctl_uuid7(id);
    gint64 after = ctl_now_ms();
    g_assert_cmpuint(strlen(id), ==, 36);
    g_assert_true(g_regex_match(re, id, 0, NULL));
    g_assert_true(g_uuid_string_is_valid(id));
    /* The first 48 bits are the creation time in ms. */
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    gint64 ms = (gint64) g_ascii_strtoull(hex, NULL, 16);
    g_assert_cmpint(ms, >=, before);
    g_assert_cmpint(ms, <=, after + 1);   /* + a borrowed ms when the counter wraps */
  }
}

static void
test_uuid7_order(void)
{
  /* Many ids inside the same millisecond: still strictly increasing, so a
   * text sort of command ids is issue order. Also all distinct. */
  enum { N = 20000 };
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  char prev[37] = "";
  for (int i = 0; i < N; i++) {
    char id[37];
    ctl_uuid7(id);
    g_assert_cmpstr(prev, <, id);
    g_assert_true(g_hash_table_add(seen, g_strdup(id)));
    memcpy(prev, id, sizeof id);
  }
  g_assert_cmpuint(g_hash_table_size(seen), ==, N);

  /* Across a millisecond boundary too. */
  char a[37], b[37];
  g_usleep(50000);          /* let the clock catch up with any borrowed ms */
  ctl_uuid7(a);
  g_usleep(5000);
  ctl_uuid7(b);
  g_assert_cmpstr(a, <, b);
  g_assert_cmpint(memcmp(a, b, 13), <, 0);  /* the 48-bit timestamp itself moved */
}

/* ---- time --------------------------------------------------------------- */

static void
test_time_format(void)
{
  char buf[CTL_TIME_LEN];
  g_assert_cmpstr(ctl_time_format(0, buf), ==, "1970-01-01T00:00:00.000Z");
  g_assert_cmpstr(ctl_time_format(T1_MS, buf), ==, T1);
  g_assert_cmpstr(ctl_time_format(G_GINT64_CONSTANT(1709251199999), buf), ==,
                  "2024-02-29T23:59:59.999Z");
  g_assert_cmpstr(ctl_time_format(-1, buf), ==, "1969-12-31T23:59:59.999Z");
  g_assert_cmpuint(strlen(ctl_time_format(ctl_now_ms(), buf)), ==, CTL_TIME_LEN - 1);
}

static void
test_time_parse(void)
{
  static const struct { const char *text; gint64 ms; } good[] = {
    { T1, T1_MS },
    { "2026-11-23T10:00:00Z", T1_MS - 123 },
    { "2026-11-23T10:00:00.1Z", T1_MS - 23 },
    { "2026-11-23T10:00:00.123456Z", T1_MS },          /* below ms: dropped */
    { "2026-11-23T12:00:00.123+02:00", T1_MS },
    { "2026-11-23T05:30:00.123-04:30", T1_MS },
    { "2026-11-23t10:00:00.123z", T1_MS },
    { "2026-11-23 10:00:00.123Z", T1_MS },
    { "1970-01-01T00:00:00Z", 0 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
    gint64 ms = -42;
    g_test_message("parsing %s", good[i].text);
    g_assert_true(ctl_time_parse(good[i].text, &ms));
    g_assert_cmpint(ms, ==, good[i].ms);
  }
  const char *bad[] = {
    "", "now", "2026-11-23", "2026-11-23T10:00Z", "2026-11-23T10:00:00",
    "2026-11-23T10:00:00.123", "20261123T100000Z", "2026-W47-1T10:00:00Z",
    "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-23T25:00:00Z",
    "2026-11-23T10:00:00.Z", "2026-11-23T10:00:00.123Z ", " 2026-11-23T10:00:00.123Z",
    "2026-11-23T10:00:00+0200", "2026-11-23T10:00:00.123Zjunk", NULL,
  };
  for (const char **t = bad; *t != NULL; t++) {
    gint64 ms = 7;
    g_test_message("rejecting \"%s\"", *t);
    g_assert_false(ctl_time_parse(*t, &ms));
    g_assert_cmpint(ms, ==, 7);    /* untouched on failure */
  }
  g_assert_false(ctl_time_parse(NULL, NULL));
}

static void
test_time_round_trip(void)
{
  char buf[CTL_TIME_LEN];
  gint64 samples[] = { 0, 1, 999, 1000, T1_MS, ctl_now_ms(), G_GINT64_CONSTANT(253402300799999) };
  for (gsize i = 0; i < G_N_ELEMENTS(samples); i++) {
    gint64 back = -1;
    g_assert_true(ctl_time_parse(ctl_time_format(samples[i], buf), &back));
    g_assert_cmpint(back, ==, samples[i]);
  }
  for (int i = 0; i < 1000; i++) {
    gint64 ms = g_random_int_range(0, G_MAXINT32) * G_GINT64_CONSTANT(1000)
              + g_random_int_range(0, 1000);
    gint64 back = -1;
    g_assert_true(ctl_time_parse(ctl_time_format(ms, buf), &back));
    g_assert_cmpint(back, ==, ms);
  }
}

/* Found by tests/fuzz/fuzz-feedback: an offset could carry a time outside the
 * years that ctl_time_format() can write, which then read back as the epoch. */
static void
test_time_parse_range(void)
{
  gint64 ms = 7;
  g_assert_false(ctl_time_parse("9999-12-31T23:59:59.999-00:01", &ms));
  g_assert_false(ctl_time_parse("0001-01-01T00:00:00+00:01", &ms));
  g_assert_false(ctl_time_parse("0000-12-31T23:59:59Z", &ms));
  g_assert_cmpint(ms, ==, 7);
  g_assert_true(ctl_time_parse("9999-12-31T23:59:59.999+00:01", &ms));
  g_assert_cmpint(ms, ==, CTL_TIME_MAX_MS - 60000);
  g_assert_true(ctl_time_parse("0001-01-01T00:00:00Z", &ms));
  g_assert_cmpint(ms, ==, CTL_TIME_MIN_MS);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/message/command/decode", test_command_decode);
  g_test_add_func("/message/command/round-trip", test_command_round_trip);
  g_test_add_func("/message/command/minimal", test_command_minimal);
  g_test_add_func("/message/command/encode-invalid-utf8", test_command_encode_invalid_utf8);
  g_test_add_func("/message/command/unknown-fields", test_command_unknown_fields);
  g_test_add_func("/message/command/bad-json", test_command_bad_json);
  g_test_add_func("/message/command/not-object", test_command_not_object);
  g_test_add_func("/message/command/invalid-utf8", test_command_invalid_utf8);
  g_test_add_func("/message/command/missing-fields", test_command_missing_fields);
  g_test_add_func("/message/command/wrong-types", test_command_wrong_types);
  g_test_add_func("/message/command/bad-values", test_command_bad_values);
  g_test_add_func("/message/command/runtime-wide", test_command_runtime_wide);
  g_test_add_func("/message/oversized", test_oversized);
  g_test_add_func("/message/feedback/round-trip", test_feedback_round_trip);
  g_test_add_func("/message/feedback/minimal", test_feedback_minimal);
  g_test_add_func("/message/feedback/unknown-fields", test_feedback_unknown_fields);
  g_test_add_func("/message/feedback/rejects", test_feedback_rejects);
  g_test_add_func("/message/states-and-verbs", test_states_and_verbs);
  g_test_add_func("/message/topics", test_topics);
  g_test_add_func("/uuid7/format", test_uuid7_format);
  g_test_add_func("/uuid7/order", test_uuid7_order);
  g_test_add_func("/time/format", test_time_format);
  g_test_add_func("/time/parse", test_time_parse);
  g_test_add_func("/time/round-trip", test_time_round_trip);
  g_test_add_func("/time/parse-range", test_time_parse_range);
  return g_test_run();
}
