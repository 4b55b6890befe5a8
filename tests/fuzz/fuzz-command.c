/* libFuzzer target: ctl_command_msg_decode() (core/message.h), which
 * ctlfs-agent (and any runtime built on the same code) runs on every message
 * of its command topic. Input: a Kafka message value, any bytes. */
#include "message.h"
#include "name.h"
#include "fuzz.h"

static void
check_refused(const CtlCommandMsg *msg, const GError *error)
{
  CHECK(error != NULL && error->domain == CTL_MESSAGE_ERROR);
  CHECK_REASON(error->message);
  CHECK(msg->id == NULL && msg->runtime == NULL && msg->resource == NULL
        && msg->verb == NULL && msg->user == NULL && msg->comm == NULL
        && msg->host == NULL && msg->uid == -1 && msg->pid == -1);
}

static void
check_accepted(const CtlCommandMsg *msg)
{
  CHECK(g_uuid_string_is_valid(msg->id));
  CHECK(ctl_name_valid(msg->runtime) && ctl_name_valid(msg->resource));
  CHECK(ctl_verb_valid(msg->verb));
  CHECK(msg->uid >= -1 && msg->pid >= -1);   /* -1: absent; never negative otherwise */
  CHECK(fuzz_text_ok(msg->user) && fuzz_text_ok(msg->comm) && fuzz_text_ok(msg->host));
}

/* ctlfs encodes what the agent decodes: whatever the decoder accepts must
 * survive encode + decode unchanged, or the two ends could disagree. */
static void
check_roundtrip(const CtlCommandMsg *msg)
{
  char *text = ctl_command_msg_encode(msg);
  CHECK(text != NULL);
  CtlCommandMsg again;
  GError *error = NULL;
  gboolean ok = ctl_command_msg_decode(text, strlen(text), &again, &error);
  if (!ok)
    fprintf(stderr, "re-decoding %s: %s\n", text, error->message);
  CHECK(ok);
  CHECK(fuzz_same(again.id, msg->id));
  CHECK(fuzz_same(again.runtime, msg->runtime));
  CHECK(fuzz_same(again.resource, msg->resource));
  CHECK(fuzz_same(again.verb, msg->verb));
  CHECK(again.issued_at_ms == msg->issued_at_ms);
  CHECK(again.expires_at_ms == msg->expires_at_ms);
  CHECK(again.uid == msg->uid && again.pid == msg->pid);
  CHECK(fuzz_same(again.user, msg->user));
  CHECK(fuzz_same(again.comm, msg->comm));
  CHECK(fuzz_same(again.host, msg->host));
  ctl_command_msg_clear(&again);
  g_free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  CtlCommandMsg msg;
  GError *error = NULL;
  if (!ctl_command_msg_decode(data, size, &msg, &error)) {
    check_refused(&msg, error);
    g_error_free(error);
    return 0;
  }
  CHECK(error == NULL);
  check_accepted(&msg);
  check_roundtrip(&msg);
  ctl_command_msg_clear(&msg);
  return 0;
}
