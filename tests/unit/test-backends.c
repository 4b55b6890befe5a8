/* The backend registry: every control plane is found the way the engine and
 * the configuration look for it, and a configuration naming none is refused
 * with a line a user can act on. */
#include <glib.h>
#include <string.h>

#include "backend.h"
#include "config.h"

static void
test_every_backend_is_complete(void)
{
  guint n = 0;
  for (const CtlBackend *const *b = ctl_backends; *b; b++, n++) {
    g_assert_nonnull((*b)->name);
    g_assert_nonnull((*b)->type);
    g_assert_nonnull((*b)->verbs);
    /* a runtime backend or a tree backend, never both, never neither */
    g_assert_true(((*b)->backend != NULL) != ((*b)->kinds != 0));
    if ((*b)->backend) {
      g_assert_nonnull((*b)->dialect);
      g_assert_nonnull((*b)->command_key);
      g_assert_nonnull((*b)->command_encode);
      g_assert_nonnull((*b)->command_decode);
      g_assert_nonnull((*b)->feedback);
      g_assert_true(ctl_backend_for((*b)->backend, (*b)->dialect) == *b);
    }
  }
  g_assert_cmpuint(n, ==, 4);
}

static void
test_kinds_have_one_owner(void)
{
  for (guint kind = 0; kind < CTL_KIND_COUNT; kind++) {
    guint owners = 0;
    for (const CtlBackend *const *b = ctl_backends; *b; b++)
      owners += ((*b)->kinds >> kind) & 1;
    g_assert_cmpuint(owners, <=, 1);
  }
}

static gboolean
check(const char *text, GError **error)
{
  CtlConfig cfg;
  ctl_config_init(&cfg);
  gboolean ok = ctl_config_parse(&cfg, text, strlen(text), "test.conf", error)
                && ctl_backends_check(&cfg, error);
  ctl_config_clear(&cfg);
  return ok;
}

/* reconcile= and reconcile-attempts=: [ctlfs] for every runtime, [runtime RT]
 * for one; resend and 5 when neither says. */
static void
test_reconcile_per_runtime(void)
{
  CtlConfig cfg;
  ctl_config_init(&cfg);
  g_assert_cmpint(ctl_config_reconcile(&cfg, "any"), ==, CTL_RECONCILE_RESEND);
  g_assert_cmpint(ctl_config_reconcile_attempts(&cfg, "any"), ==, 5);
  const char *text = "[ctlfs]\nreconcile=report\n"
                     "[runtime a]\nreconcile=off\n"
                     "[runtime b]\nreconcile-attempts=2\n";
  GError *error = NULL;
  g_assert_true(ctl_config_parse(&cfg, text, strlen(text), "test.conf", &error));
  g_assert_no_error(error);
  g_assert_cmpint(ctl_config_reconcile(&cfg, "a"), ==, CTL_RECONCILE_OFF);
  g_assert_cmpint(ctl_config_reconcile(&cfg, "b"), ==, CTL_RECONCILE_REPORT);
  g_assert_cmpint(ctl_config_reconcile_attempts(&cfg, "b"), ==, 2);
  g_assert_cmpint(ctl_config_reconcile_attempts(&cfg, "c"), ==, 5);
  g_assert_cmpstr(ctl_reconcile_name(ctl_config_reconcile(&cfg, "c")), ==, "report");
  ctl_config_clear(&cfg);
  g_assert_false(check("[runtime a]\nreconcile=always\n", &error));
  g_assert_nonnull(strstr(error->message, "expected off, report or resend"));
  g_clear_error(&error);
  g_assert_false(check("[ctlfs]\nreconcile-attempts=0\n", &error));
  g_clear_error(&error);
}

/* The bounds on reported metrics: [ctlfs] only; 0 series exports none. */
static void
test_metrics_bounds(void)
{
  CtlConfig cfg;
  ctl_config_init(&cfg);
  g_assert_cmpint(cfg.metrics_per_resource, ==, 32);
  g_assert_cmpint(cfg.metrics_series_max, ==, 1000);
  const char *text = "[ctlfs]\nmetrics-per-resource=4\nmetrics-series-max=0\n";
  GError *error = NULL;
  g_assert_true(ctl_config_parse(&cfg, text, strlen(text), "test.conf", &error));
  g_assert_no_error(error);
  g_assert_cmpint(cfg.metrics_per_resource, ==, 4);
  g_assert_cmpint(cfg.metrics_series_max, ==, 0);
  ctl_config_clear(&cfg);
  g_assert_false(check("[ctlfs]\nmetrics-per-resource=0\n", &error));
  g_assert_nonnull(strstr(error->message, "metrics-per-resource"));
  g_clear_error(&error);
  g_assert_false(check("[ctlfs]\nmetrics-series-max=-1\n", &error));
  g_assert_nonnull(strstr(error->message, "0: none exported"));
  g_clear_error(&error);
  g_assert_false(check("[runtime a]\nmetrics-series-max=5\n", &error));
  g_clear_error(&error);
}

static void
test_config_is_checked(void)
{
  GError *error = NULL;
  g_assert_true(check("", &error));
  g_assert_true(check("[ctlfs]\nbackend=lifecycle\n[runtime m]\nbackend=kafka\ndialect=mia\n",
                      &error));
  g_assert_no_error(error);

  g_assert_false(check("[runtime rt1]\nbackend=carrier-pigeon\n", &error));
  g_assert_nonnull(strstr(error->message, "backend"));
  g_assert_nonnull(strstr(error->message, "carrier-pigeon"));
  g_assert_nonnull(strstr(error->message, "kafka or lifecycle"));
  g_assert_nonnull(strstr(error->message, "[runtime rt1]"));
  g_clear_error(&error);

  g_assert_false(check("[ctlfs]\ndialect=klingon\n", &error));
  g_assert_nonnull(strstr(error->message, "ctlfs or mia"));
  g_clear_error(&error);

  /* both known, but no backend speaks that pair */
  g_assert_false(check("[runtime f]\nbackend=lifecycle\ndialect=mia\n", &error));
  g_assert_nonnull(strstr(error->message, "lifecycle"));
  g_assert_nonnull(strstr(error->message, "mia"));
  g_clear_error(&error);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/backends/complete", test_every_backend_is_complete);
  g_test_add_func("/backends/kinds", test_kinds_have_one_owner);
  g_test_add_func("/backends/config", test_config_is_checked);
  g_test_add_func("/backends/reconcile", test_reconcile_per_runtime);
  g_test_add_func("/backends/metrics-bounds", test_metrics_bounds);
  return g_test_run();
}
