/* The lifecycle backend's pure parts: the verbs of each backend, the states on
 * the way to a verb's target, the `mode` value, and the command message's
 * optional "mode" field. */
#include <glib.h>
#include <string.h>

#include "backend.h"
#include "lifecycle.h"
#include "message.h"

#define ID1 "0196f6a2-7c3d-7a10-8b2e-1234567890ab"
#define CMD_HEAD "{\"id\":\"" ID1 "\",\"runtime\":\"flows\",\"resource\":\"f1\"," \
                 "\"verb\":\"start\",\"issued_at\":\"2026-11-23T10:00:00.123Z\""

static void
test_backend_verbs(void)
{
  const CtlBackend *lifecycle = ctl_backend_for("lifecycle", "ctlfs");
  const CtlBackend *kafka = ctl_backend_for("kafka", "ctlfs");
  g_assert_nonnull(lifecycle);
  g_assert_nonnull(kafka);
  g_assert_null(ctl_backend_for("lifecycle", "klingon"));
  const char *all[] = { "pause", "resume", "start", "stop" };
  for (gsize i = 0; i < G_N_ELEMENTS(all); i++)
    g_assert_true(ctl_backend_takes(lifecycle, all[i]));
  g_assert_true(ctl_backend_takes(kafka, "pause"));
  g_assert_true(ctl_backend_takes(kafka, "resume"));
  g_assert_false(ctl_backend_takes(kafka, "start"));
  g_assert_false(ctl_backend_takes(kafka, "stop"));
  g_assert_false(ctl_backend_takes(lifecycle, "restart"));
  g_assert_false(ctl_backend_takes(lifecycle, NULL));
  /* a flow has no runtime-wide state to inherit */
  g_assert_true(ctl_backend_takes(kafka, "inherit"));
  g_assert_false(ctl_backend_takes(lifecycle, "inherit"));
  char *verbs = ctl_backend_verbs_text(kafka);
  g_assert_cmpstr(verbs, ==, "pause, resume, inherit");
  g_free(verbs);
}

static void
test_underway(void)
{
  const CtlBackend *lifecycle = ctl_backend_for("lifecycle", "ctlfs");
  g_assert_true(ctl_backend_underway(lifecycle, "start", "starting"));
  g_assert_true(ctl_backend_underway(lifecycle, "stop", "stopping"));
  g_assert_true(ctl_backend_underway(lifecycle, "pause", "pausing"));
  g_assert_true(ctl_backend_underway(lifecycle, "resume", "resuming"));
  /* arrived, or somewhere else: the command settles */
  g_assert_false(ctl_backend_underway(lifecycle, "start", "running"));
  g_assert_false(ctl_backend_underway(lifecycle, "start", "stopping"));
  g_assert_false(ctl_backend_underway(lifecycle, "stop", "starting"));
  g_assert_false(ctl_backend_underway(lifecycle, "pause", "sleeping"));
  g_assert_false(ctl_backend_underway(lifecycle, NULL, "starting"));
}

static void
test_mode_parse(void)
{
  struct { const char *in; const char *want; } cases[] = {
    { "ordinary", "ordinary" }, { "ordinary\n", "ordinary" },
    { "realtime", "realtime" }, { "realtime\n", "realtime" },
    { "", NULL }, { "\n", NULL }, { "realtime\n\n", NULL }, { "REALTIME", NULL },
    { " realtime", NULL }, { "realtime ", NULL }, { "real", NULL }, { "realtimes", NULL },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    char *reason = NULL;
    const char *got = ctl_lifecycle_mode_parse(cases[i].in, strlen(cases[i].in), &reason);
    g_assert_cmpstr(got, ==, cases[i].want);
    g_assert_true((got == NULL) == (reason != NULL));
    g_free(reason);
  }
  /* a NUL inside is not the end of the value */
  char *reason = NULL;
  g_assert_null(ctl_lifecycle_mode_parse("realtime\0x", 10, &reason));
  g_free(reason);
}

static void
test_command_mode_round_trip(void)
{
  CtlCommandMsg msg = {
    .id = ID1, .runtime = "flows", .resource = "f1", .verb = "start",
    .issued_at_ms = 1795428000123, .uid = -1, .pid = -1, .mode = "realtime",
  };
  g_autofree char *json = ctl_command_msg_encode(&msg);
  g_assert_nonnull(strstr(json, "\"mode\":\"realtime\""));
  CtlCommandMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(json, strlen(json), &out, &error));
  g_assert_cmpstr(out.mode, ==, "realtime");
  ctl_command_msg_clear(&out);
  /* absent: not in the message, NULL when decoded */
  msg.mode = NULL;
  g_autofree char *plain = ctl_command_msg_encode(&msg);
  g_assert_null(strstr(plain, "\"mode\""));
  g_assert_true(ctl_command_msg_decode(plain, strlen(plain), &out, &error));
  g_assert_null(out.mode);
  ctl_command_msg_clear(&out);
}

static void
test_command_mode_rejected(void)
{
  const char *bad[] = { "\"fast\"", "\"\"", "\"REALTIME\"", "1", "true", "{}" };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autofree char *json = g_strdup_printf(CMD_HEAD ",\"mode\":%s}", bad[i]);
    CtlCommandMsg out;
    g_autoptr(GError) error = NULL;
    g_assert_false(ctl_command_msg_decode(json, strlen(json), &out, &error));
    g_assert_nonnull(strstr(error->message, "\"mode\""));
    g_assert_null(out.mode);
  }
  /* null is absent, as for the other optional fields */
  const char *json = CMD_HEAD ",\"mode\":null}";
  CtlCommandMsg out;
  g_autoptr(GError) error = NULL;
  g_assert_true(ctl_command_msg_decode(json, strlen(json), &out, &error));
  g_assert_null(out.mode);
  ctl_command_msg_clear(&out);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/lifecycle/backend-verbs", test_backend_verbs);
  g_test_add_func("/lifecycle/underway", test_underway);
  g_test_add_func("/lifecycle/mode-parse", test_mode_parse);
  g_test_add_func("/lifecycle/command-mode-round-trip", test_command_mode_round_trip);
  g_test_add_func("/lifecycle/command-mode-rejected", test_command_mode_rejected);
  return g_test_run();
}
