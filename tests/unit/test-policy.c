/* The access policy and the config file that states it. */
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "policy.h"

#define OWNER 1000

static CtlCaller
caller(uid_t uid, gid_t gid, gid_t *groups, int ngroups)
{
  return (CtlCaller) { .uid = uid, .gid = gid, .groups = groups, .ngroups = ngroups };
}

static void
set(CtlPolicy *p, const char *runtime, CtlAccess a, const char *list)
{
  char **items = g_strsplit(list, ",", -1);
  GError *error = NULL;
  g_assert_true(ctl_policy_set(p, runtime, a, (const char *const *) items,
                               g_strv_length(items), &error));
  g_assert_no_error(error);
  g_strfreev(items);
}

static void
test_defaults(void)
{
  CtlPolicy *p = ctl_policy_new(OWNER);
  CtlCaller root = caller(0, 0, NULL, 0), owner = caller(OWNER, OWNER, NULL, 0);
  CtlCaller stranger = caller(2000, 2000, NULL, 0);
  for (int a = 0; a < CTL_ACCESS_COUNT; a++) {
    g_assert_true(ctl_policy_allows(p, a, NULL, &root));
    g_assert_true(ctl_policy_allows(p, a, "rt1", &owner));
  }
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_READ, "rt1", &stranger));
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_COMMAND, "rt1", &stranger));
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_DECLARE, NULL, &stranger));
  g_assert_false(ctl_policy_uses_groups(p));
  ctl_policy_unref(p);
}

static void
test_groups_and_runtimes(void)
{
  CtlPolicy *p = ctl_policy_new(OWNER);
  set(p, NULL, CTL_ACCESS_COMMAND, "@27");
  set(p, "rt1", CTL_ACCESS_COMMAND, "2001");
  g_assert_true(ctl_policy_uses_groups(p));
  gid_t sup[] = { 10, 27 };
  CtlCaller member = caller(2000, 2000, sup, 2);      /* 27 as a supplementary group */
  CtlCaller primary = caller(2002, 27, NULL, 0);       /* 27 as the primary group */
  CtlCaller alice = caller(2001, 2001, NULL, 0);
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_COMMAND, NULL, &member));
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_COMMAND, "rt2", &primary));
  /* rt1's own rule replaces the global one */
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_COMMAND, "rt1", &member));
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_COMMAND, "rt1", &alice));
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_COMMAND, "rt2", &alice));
  /* declare follows command until set on its own */
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_DECLARE, "rt1", &alice));
  set(p, NULL, CTL_ACCESS_DECLARE, "@4");
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_DECLARE, "rt1", &alice));
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_DECLARE, NULL, &member));
  /* an empty read rule: nobody but root and the owner */
  set(p, "rt1", CTL_ACCESS_READ, "");
  g_assert_false(ctl_policy_allows(p, CTL_ACCESS_READ, "rt1", &alice));
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_READ, "rt2", &alice));
  set(p, NULL, CTL_ACCESS_READ, "*");
  g_assert_true(ctl_policy_allows(p, CTL_ACCESS_READ, NULL, &alice));
  ctl_policy_unref(p);
}

static void
test_unknown_principals_are_errors(void)
{
  CtlPolicy *p = ctl_policy_new(OWNER);
  const char *bad[][1] = { { "no-such-user-ctlfs" }, { "@no-such-group-ctlfs" }, { "@" },
                           { "4294967295" } };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    GError *error = NULL;
    g_assert_false(ctl_policy_set(p, NULL, CTL_ACCESS_COMMAND, bad[i], 1, &error));
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, bad[i][0][0] == '@' ? bad[i][0] + 1 : bad[i][0]));
    g_error_free(error);
  }
  /* a failed rule leaves the one before it in force */
  set(p, NULL, CTL_ACCESS_COMMAND, "root,@root,nobody");
  char *d = ctl_policy_describe(p, NULL);
  g_assert_cmpstr(d, ==, "read=* command=root,owner,root,@root,nobody declare=root,owner,root,@root,nobody");
  g_free(d);
  ctl_policy_unref(p);
}

static mode_t
mode_of(CtlPolicy *p, const char *rt, CtlAccess write, gboolean dir, gid_t *gid)
{
  *gid = 99;
  return ctl_policy_mode(p, rt, CTL_ACCESS_READ, write, dir, gid);
}

static void
test_modes(void)
{
  CtlPolicy *p = ctl_policy_new(OWNER);
  gid_t gid;
  g_assert_cmpint(mode_of(p, NULL, CTL_ACCESS_COUNT, FALSE, &gid), ==, 0444);
  g_assert_cmpint(mode_of(p, "rt1", CTL_ACCESS_COMMAND, FALSE, &gid), ==, 0644);
  g_assert_cmpint(mode_of(p, NULL, CTL_ACCESS_DECLARE, TRUE, &gid), ==, 0755);
  g_assert_cmpint(gid, ==, 99);
  set(p, NULL, CTL_ACCESS_COMMAND, "@27");
  g_assert_cmpint(mode_of(p, "rt1", CTL_ACCESS_COMMAND, FALSE, &gid), ==, 0664);
  g_assert_cmpint(gid, ==, 27);
  g_assert_cmpint(mode_of(p, NULL, CTL_ACCESS_DECLARE, TRUE, &gid), ==, 0775);
  /* a user the modes cannot name: everyone gets the bit, the daemon decides */
  set(p, "rt1", CTL_ACCESS_COMMAND, "2001");
  g_assert_cmpint(mode_of(p, "rt1", CTL_ACCESS_COMMAND, FALSE, &gid), ==, 0666);
  /* reading only for one group; dirs stay traversable */
  set(p, "rt2", CTL_ACCESS_READ, "@27");
  g_assert_cmpint(mode_of(p, "rt2", CTL_ACCESS_COUNT, FALSE, &gid), ==, 0440);
  g_assert_cmpint(mode_of(p, "rt2", CTL_ACCESS_COMMAND, FALSE, &gid), ==, 0660);
  g_assert_cmpint(gid, ==, 27);
  set(p, "rt3", CTL_ACCESS_READ, "");
  g_assert_cmpint(mode_of(p, "rt3", CTL_ACCESS_COUNT, TRUE, &gid), ==, 0511);
  ctl_policy_unref(p);
}

static void
test_config_file(void)
{
  static const char text[] =
    "# an admin host\n"
    "[ctlfs]\n"
    "brokers=k1:9092,k2:9092\n"
    "write_mode=queued\n"
    "ack-timeout-ms=250\n"
    "[access]\n"
    "command=@root; nobody\n"
    "read=*\n"
    "[access rt1]\n"
    "command=daemon\n";
  CtlConfig cfg;
  ctl_config_init(&cfg);
  GError *error = NULL;
  g_assert_true(ctl_config_parse(&cfg, text, strlen(text), "test.conf", &error));
  g_assert_no_error(error);
  g_assert_cmpstr(cfg.brokers, ==, "k1:9092,k2:9092");
  g_assert_cmpint(cfg.write_mode, ==, CTL_WRITE_QUEUED);
  g_assert_cmpint(cfg.ack_timeout_ms, ==, 250);
  g_assert_cmpint(cfg.stale_after_ms, ==, 10000);
  g_assert_cmpstr(cfg.topic_prefix, ==, "ctlfs");
  char *d = ctl_policy_describe(cfg.policy, "rt1");
  g_assert_cmpstr(d, ==, "read=* command=root,owner,daemon declare=root,owner,daemon");
  g_free(d);
  ctl_config_clear(&cfg);
}

static void
test_config_errors_name_what_is_wrong(void)
{
  static const struct { const char *text, *named; } cases[] = {
    { "[ctlfs]\nwrite-mode=sometimes\n", "write-mode" },
    { "[ctlfs]\nno-such-key=1\n", "no-such-key" },
    { "[ctlfs]\nack-timeout-ms=0\n", "ack-timeout-ms" },
    { "[ctlfs]\ntopic-prefix=a/b\n", "topic-prefix" },
    { "[ctlfs]\nadmin-group=no-such-group-ctlfs\n", "no-such-group-ctlfs" },
    { "[access]\nwrite=@root\n", "write" },
    { "[access]\ncommand=no-such-user-ctlfs\n", "no-such-user-ctlfs" },
    { "[access ../x]\nread=*\n", "../x" },
    { "[elsewhere]\na=b\n", "elsewhere" },
    { "not a key file\n", "test.conf" },
    { "[ctlfs]\nbrokers=\xff\n", "brokers" },
    /* a bad escape: GKeyFile returns "*" with an error; the error decides
     * (found by tests/fuzz/fuzz-config) */
    { "[access]\ncommand=*\\\n", "command" },
    { "[ctlfs]\ndb=/tmp/\\q\n", "db" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    CtlConfig cfg;
    ctl_config_init(&cfg);
    GError *error = NULL;
    g_assert_false(ctl_config_parse(&cfg, cases[i].text, strlen(cases[i].text), "test.conf",
                                    &error));
    g_assert_nonnull(error);
    if (!strstr(error->message, cases[i].named))
      g_error("case %zu: '%s' does not name '%s'", i, error->message, cases[i].named);
    g_assert_nonnull(strstr(error->message, "test.conf"));
    g_assert_null(strchr(error->message, '\n'));
    g_error_free(error);
    ctl_config_clear(&cfg);
  }
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/policy/defaults", test_defaults);
  g_test_add_func("/policy/groups-and-runtimes", test_groups_and_runtimes);
  g_test_add_func("/policy/unknown-principals-are-errors", test_unknown_principals_are_errors);
  g_test_add_func("/policy/modes", test_modes);
  g_test_add_func("/config/file", test_config_file);
  g_test_add_func("/config/errors-name-what-is-wrong", test_config_errors_name_what_is_wrong);
  return g_test_run();
}
