/* libFuzzer target: ctl_feedback_msg_decode() (core/message.h), which reads
 * every message a runtime (or anyone able to write to a feedback topic)
 * sends. Input: a Kafka message value, any bytes. */
#include "message.h"
#include "name.h"
#include "fuzz.h"

#include <jansson.h>

static void
check_refused(const CtlFeedbackMsg *msg, const GError *error)
{
  CHECK(error != NULL && error->domain == CTL_MESSAGE_ERROR);
  CHECK_REASON(error->message);
  /* "leaves OUT cleared": nothing half-decoded reaches the caller. */
  CHECK(msg->resource == NULL && msg->state == NULL && msg->command_id == NULL
        && msg->message == NULL && msg->metrics_json == NULL && msg->ts_ms == 0);
}

/* metrics_json is the "metrics" object re-serialised: a JSON object. */
static gboolean
is_json_object(const char *text)
{
  json_t *v = json_loads(text, 0, NULL);
  gboolean ok = json_is_object(v);
  json_decref(v);
  return ok;
}

static void
check_accepted(const CtlFeedbackMsg *msg)
{
  /* The resource may become a directory: the name rule holds. */
  CHECK(ctl_name_valid(msg->resource));
  CHECK(ctl_observed_state_valid(msg->state) && strcmp(msg->state, "stale") != 0);
  CHECK(msg->command_id == NULL || g_uuid_string_is_valid(msg->command_id));
  CHECK(fuzz_text_ok(msg->message));
  CHECK(msg->metrics_json == NULL
        || (fuzz_text_ok(msg->metrics_json) && is_json_object(msg->metrics_json)));
}

/* What the decoder accepted, the encoder writes and the decoder reads back
 * unchanged: ctlfs-agent and the tests build feedback with the encoder. */
static void
check_roundtrip(const CtlFeedbackMsg *msg)
{
  char *text = ctl_feedback_msg_encode(msg);
  CHECK(text != NULL);
  CtlFeedbackMsg again;
  GError *error = NULL;
  gboolean ok = ctl_feedback_msg_decode(text, strlen(text), &again, &error);
  if (!ok)
    fprintf(stderr, "re-decoding %s: %s\n", text, error->message);
  CHECK(ok);
  CHECK(fuzz_same(again.resource, msg->resource));
  CHECK(fuzz_same(again.state, msg->state));
  CHECK(fuzz_same(again.command_id, msg->command_id));
  CHECK(fuzz_same(again.message, msg->message));
  CHECK(fuzz_same(again.metrics_json, msg->metrics_json));
  CHECK(again.ts_ms == msg->ts_ms);
  ctl_feedback_msg_clear(&again);
  g_free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  CtlFeedbackMsg msg;
  GError *error = NULL;
  if (!ctl_feedback_msg_decode(data, size, &msg, &error)) {
    check_refused(&msg, error);
    g_error_free(error);
    return 0;
  }
  CHECK(error == NULL);
  check_accepted(&msg);
  check_roundtrip(&msg);
  ctl_feedback_msg_clear(&msg);
  return 0;
}
