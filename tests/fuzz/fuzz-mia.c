/* libFuzzer target: the Mia-Platform dialect's decoders (core/dialect-mia.h),
 * which read what a Fast Data runtime (or anyone able to write to a mia
 * runtime's feedback or command topic) sends. Input: a Kafka message value,
 * any bytes; the first byte picks the decoder, the rest is the value. */
#include "dialect-mia.h"
#include "name.h"
#include "fuzz.h"

static void
check_edges(GPtrArray *edges)
{
  /* Each edge may become a resource directory and an observed state. */
  CHECK(edges != NULL);
  for (guint i = 0; i < edges->len; i++) {
    const CtlMiaEdge *edge = edges->pdata[i];
    const CtlFeedbackMsg *fb = &edge->fb;
    CHECK(ctl_name_valid(fb->resource));
    CHECK(ctl_observed_state_valid(fb->state) && strcmp(fb->state, "stale") != 0);
    CHECK(fb->command_id == NULL);
    CHECK(fuzz_text_ok(fb->message));
  }
}

static void
fuzz_feedback(const uint8_t *data, size_t size)
{
  GPtrArray *edges = NULL, *skipped = NULL;
  GError *error = NULL;
  switch (ctl_mia_feedback_decode(data, size, &edges, &skipped, &error)) {
  case CTL_MIA_FEEDBACK:
    CHECK(error == NULL);
    check_edges(edges);
    /* each unusable edge is one line in a log */
    for (guint i = 0; skipped && i < skipped->len; i++)
      CHECK_REASON(skipped->pdata[i]);
    break;
  case CTL_MIA_NOT_MIA:
    CHECK(error == NULL && skipped == NULL);
    break;
  case CTL_MIA_MALFORMED:
    CHECK(error != NULL && error->domain == CTL_MESSAGE_ERROR);
    CHECK_REASON(error->message);
    g_error_free(error);
    break;
  default:
    CHECK(!"unknown result");
  }
  if (edges)
    g_ptr_array_unref(edges);
  if (skipped)
    g_ptr_array_unref(skipped);
}

/* An accepted state message names valid objects only, and what it says of
 * any artifact can be asked without harm. */
static void
fuzz_state(const uint8_t *data, size_t size, gboolean require_ctlfs)
{
  CtlMiaState st;
  GError *error = NULL;
  if (!ctl_mia_state_decode(data, size, require_ctlfs, &st, &error)) {
    CHECK(error != NULL && error->domain == CTL_MESSAGE_ERROR);
    CHECK_REASON(error->message);
    g_error_free(error);
    return;
  }
  CHECK(error == NULL);
  if (require_ctlfs || st.has_ctlfs) {
    CHECK(st.has_ctlfs);
    CHECK(ctl_name_valid(st.ctlfs.runtime) && ctl_name_valid(st.ctlfs.resource));
    CHECK(ctl_verb_valid(st.ctlfs.verb));
  }
  if (st.pipelines && st.has_ctlfs) {
    (void) ctl_mia_state_pauses(&st, st.ctlfs.runtime, st.ctlfs.resource);
    GPtrArray *names = ctl_mia_state_artifacts(&st, st.ctlfs.runtime);
    for (guint i = 0; names && i < names->len; i++)
      CHECK(names->pdata[i] != NULL);
    if (names)
      g_ptr_array_unref(names);
  }
  ctl_mia_state_clear(&st);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  switch (data[0] % 3) {
  case 0: fuzz_feedback(data + 1, size - 1); break;
  case 1: fuzz_state(data + 1, size - 1, TRUE); break;
  default: fuzz_state(data + 1, size - 1, FALSE); break;
  }
  return 0;
}
