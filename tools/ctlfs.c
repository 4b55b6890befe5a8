/* ctlfs: the filesystem daemon. A thin main: options and config, the store,
 * the (embedded) broker, the engine, the mount, the main loop. */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "backend.h"
#include "engine.h"
#include "fs.h"
#include "kafka-props.h"
#include "mockbroker.h"

#define EXIT_USAGE 2

typedef struct {
  GHashTable *settings;     /* key -> value, command line over config */
  GPtrArray  *kafka;        /* -o kafka.KEY=VALUE: key, value, ... in their order */
  GPtrArray  *fuse_opts;    /* -o options for libfuse */
  gboolean    foreground;
  gboolean    debug;
  char       *mountpoint;
} Options;

static void G_GNUC_NORETURN G_GNUC_PRINTF(1, 2)
die_usage(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  fprintf(stderr, "ctlfs: %s\n", msg);
  g_free(msg);
  exit(EXIT_USAGE);
}

/* A setting's name from -o (dashes or underscores), or NULL. */
static const char *
canonical_key(const char *key)
{
  char *k = g_strdelimit(g_strdup(key), "_", '-');
  gboolean config = strcmp(k, "config") == 0;
  g_free(k);
  return config ? "config" : ctl_config_key(key);
}

/* Options that mount(8) and mount.fuse3 pass on from an fstab line or -o and
 * that mean nothing to a FUSE filesystem, which libfuse would refuse: the
 * atime and other VFS flags libfuse does not know, and fstab's own words
 * (which mount(8) normally keeps to itself). Dropped, so that any fstab line
 * mounts. */
static gboolean
ignored_mount_opt(const char *key)
{
  static const char *const ignored[] = {
    "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser",
    "owner", "group", "comment", "diratime", "nodiratime", "relatime", "norelatime",
    "strictatime", "nostrictatime", "lazytime", "nolazytime", "mand", "nomand",
    "iversion", "noiversion", "silent", "loud", NULL,
  };
  if (g_str_has_prefix(key, "x-"))
    return TRUE;
  for (int i = 0; ignored[i]; i++)
    if (strcmp(key, ignored[i]) == 0)
      return TRUE;
  return FALSE;
}

/* -o a=b,c: our keys become settings, the rest goes to libfuse. */
static void
parse_mount_opts(Options *o, const char *opts)
{
  char **items = g_strsplit(opts, ",", -1);
  for (int i = 0; items[i]; i++) {
    if (!*items[i])
      continue;
    char *eq = strchr(items[i], '=');
    char *key = g_strndup(items[i], eq ? (gsize) (eq - items[i]) : strlen(items[i]));
    const char *known = canonical_key(key);
    if (g_str_has_prefix(key, "kafka.") && eq) {
      /* Applied over the config file's [kafka] group (build_config). */
      g_ptr_array_add(o->kafka, g_strdup(key + strlen("kafka.")));
      g_ptr_array_add(o->kafka, g_strdup(eq + 1));
    } else if (g_str_has_prefix(key, "kafka."))
      die_usage("option -o %s needs a value", key);
    else if (known && eq)
      g_hash_table_replace(o->settings, g_strdup(known), g_strdup(eq + 1));
    else if (known)
      die_usage("option -o %s needs a value", key);
    else if (strcmp(key, "foreground") == 0)
      o->foreground = TRUE;
    else if (ignored_mount_opt(key))
      g_debug("ignoring mount option %s", items[i]);
    else
      g_ptr_array_add(o->fuse_opts, g_strdup(items[i]));
    g_free(key);
  }
  g_strfreev(items);
}

static void
parse_args(Options *o, int argc, char **argv)
{
  char *brokers = NULL, *db = NULL, *config = NULL, *prefix = NULL, *mode = NULL;
  char *admin_group = NULL, **mount_opts = NULL, **rest = NULL;
  char *backend = NULL, *dialect = NULL, *expire = NULL, *rama_cli = NULL;
  int ack = G_MININT, stale = G_MININT, discover = G_MININT;  /* G_MININT: not given */
  int expire_after = G_MININT, rama_timeout = G_MININT, rama_refresh = G_MININT;
  gboolean rama_internal = FALSE;
  gboolean version = FALSE;
  GOptionEntry entries[] = {
    { "brokers", 0, 0, G_OPTION_ARG_STRING, &brokers, "Kafka bootstrap servers (default: start an embedded broker)", "HOST:PORT,..." },
    { "db", 0, 0, G_OPTION_ARG_FILENAME, &db, "SQLite database", "PATH" },
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &config, "Config file (GKeyFile, group [ctlfs])", "FILE" },
    { "topic-prefix", 0, 0, G_OPTION_ARG_STRING, &prefix, "Topic prefix (default ctlfs)", "PREFIX" },
    { "write-mode", 0, 0, G_OPTION_ARG_STRING, &mode, "durable (default) or queued", "MODE" },
    { "ack-timeout-ms", 0, 0, G_OPTION_ARG_INT, &ack, "Durable writes fail with ETIMEDOUT after this (default 5000)", "MS" },
    { "stale-after-ms", 0, 0, G_OPTION_ARG_INT, &stale, "observed reads stale after this long without feedback (default 10000)", "MS" },
    { "admin-group", 0, 0, G_OPTION_ARG_STRING, &admin_group, "Group whose members may issue commands", "GROUP" },
    { "discover-max", 0, 0, G_OPTION_ARG_INT, &discover, "Feedback creates resources only while a runtime has fewer (default 10000)", "N" },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend, "Runtimes' backend: kafka (default) or lifecycle (start/stop, mode)", "KIND" },
    { "dialect", 0, 0, G_OPTION_ARG_STRING, &dialect, "Runtimes' message shape: ctlfs (default) or mia", "DIALECT" },
    { "expire-after-ms", 0, 0, G_OPTION_ARG_INT, &expire_after, "A runtime silent this long is inactive (default 0: never)", "MS" },
    { "expire", 0, 0, G_OPTION_ARG_STRING, &expire, "What happens to inactive runtimes: mark (default) or remove", "ACTION" },
    { "rama-cli", 0, 0, G_OPTION_ARG_FILENAME, &rama_cli, "The Rama CLI for modules/ (default rama on PATH)", "PATH" },
    { "rama-timeout-ms", 0, 0, G_OPTION_ARG_INT, &rama_timeout, "A Rama CLI call is killed after this (default 30000)", "MS" },
    { "rama-refresh-ms", 0, 0, G_OPTION_ARG_INT, &rama_refresh, "rama moduleStatus runs this often (default 10000, 0: never)", "MS" },
    { "rama-internal-hostnames", 0, 0, G_OPTION_ARG_NONE, &rama_internal, "Pass --useInternalHostnames to the Rama commands that take it", NULL },
    { "foreground", 'f', 0, G_OPTION_ARG_NONE, &o->foreground, "Stay in the foreground", NULL },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &o->debug, "Foreground, with FUSE and debug messages", NULL },
    { "options", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &mount_opts, "Mount options, ours (key=value) and libfuse's", "OPT,..." },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, "[SOURCE] MOUNTPOINT" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new("[SOURCE] MOUNTPOINT - the ctlfs filesystem daemon");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *error = NULL;
  gboolean parsed = g_option_context_parse(ctx, &argc, &argv, &error);
  g_option_context_free(ctx);
  if (!parsed) {
    /* Freed before exit so that a sanitizer build exits 2, not with a leak. */
    char *msg = g_strdup(error->message);
    g_error_free(error);
    static char *last_words;
    last_words = msg;
    die_usage("%s (try --help)", last_words);
  }
  if (version) {
    printf("ctlfs %s\n", CTLFS_VERSION);
    exit(0);
  }
  for (int i = 0; mount_opts && mount_opts[i]; i++)
    parse_mount_opts(o, mount_opts[i]);
  g_strfreev(mount_opts);
#define SET(key, val) if (val) g_hash_table_replace(o->settings, g_strdup(key), val)
  SET("brokers", brokers);
  SET("db", db);
  SET("config", config);
  SET("topic-prefix", prefix);
  SET("write-mode", mode);
  SET("admin-group", admin_group);
  SET("backend", backend);
  SET("dialect", dialect);
  SET("expire", expire);
  SET("rama-cli", rama_cli);
#undef SET
  if (ack != G_MININT)
    g_hash_table_replace(o->settings, g_strdup("ack-timeout-ms"), g_strdup_printf("%d", ack));
  if (stale != G_MININT)
    g_hash_table_replace(o->settings, g_strdup("stale-after-ms"), g_strdup_printf("%d", stale));
  if (discover != G_MININT)
    g_hash_table_replace(o->settings, g_strdup("discover-max"), g_strdup_printf("%d", discover));
  if (expire_after != G_MININT)
    g_hash_table_replace(o->settings, g_strdup("expire-after-ms"),
                         g_strdup_printf("%d", expire_after));
  if (rama_timeout != G_MININT)
    g_hash_table_replace(o->settings, g_strdup("rama-timeout-ms"),
                         g_strdup_printf("%d", rama_timeout));
  if (rama_internal)
    g_hash_table_replace(o->settings, g_strdup("rama-internal-hostnames"), g_strdup("true"));
  if (rama_refresh != G_MININT)
    g_hash_table_replace(o->settings, g_strdup("rama-refresh-ms"),
                         g_strdup_printf("%d", rama_refresh));
  /* mount.fuse passes "SOURCE MOUNTPOINT"; the source means nothing to us. */
  guint nrest = rest ? g_strv_length(rest) : 0;
  if (nrest == 0 || nrest > 2)
    die_usage("expected one MOUNTPOINT (try --help)");
  o->mountpoint = g_strdup(rest[nrest - 1]);
  g_strfreev(rest);
  if (o->debug)
    o->foreground = TRUE;
}

static char *
default_db(void)
{
  if (geteuid() == 0)
    return g_strdup("/var/lib/ctlfs/ctlfs.db");
  return g_build_filename(g_get_user_state_dir(), "ctlfs", "ctlfs.db", NULL);
}

/* A daemon killed without unmounting leaves its mount behind: every access
 * then fails with ENOTCONN. Say so, and how to clear it, rather than call it
 * "not a directory". */
static void
check_mountpoint(const char *path)
{
  /* statfs, not stat: the kernel may answer stat from its attribute cache,
   * while statfs always asks the daemon. */
  struct statfs sfs;
  if (statfs(path, &sfs) != 0 && errno == ENOTCONN)
    die_usage("mountpoint %s is a stale FUSE mount (its daemon is gone): "
              "run 'fusermount3 -u %s' first", path, path);
  if (!g_file_test(path, G_FILE_TEST_IS_DIR))
    die_usage("mountpoint %s is not a directory", path);
}

/* The config file first, then the command line over it; an unreadable file,
 * an unknown key or a bad value is a usage error naming it. */
static void
build_config(Options *o, CtlConfig *cfg)
{
  ctl_config_init(cfg);
  GError *error = NULL;
  const char *path = g_hash_table_lookup(o->settings, "config");
  if (path && !ctl_config_load(cfg, path, &error))
    die_usage("%s", error->message);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, o->settings);
  while (g_hash_table_iter_next(&it, &key, &value))
    if (strcmp(key, "config") != 0 && !ctl_config_set(cfg, key, value, &error))
      die_usage("%s", error->message);
  for (guint i = 0; i + 1 < o->kafka->len; i += 2)
    if (!ctl_config_set_kafka(cfg, o->kafka->pdata[i], o->kafka->pdata[i + 1], TRUE, &error))
      die_usage("-o kafka.%s", error->message);
  /* Every client property as librdkafka will take it, now rather than at
   * the first connection: a misspelt key or a bad value stops the start. */
  if (!ctl_kafka_props_check((const char *const *) cfg->kafka_props, &error))
    die_usage("%s", error->message);
  if (!ctl_backends_check(cfg, &error))
    die_usage("%s", error->message);
  if (!cfg->db_path) {
    cfg->db_path = default_db();
    char *dir = g_path_get_dirname(cfg->db_path);
    g_mkdir_with_parents(dir, 0700);
    g_free(dir);
  }
  check_mountpoint(o->mountpoint);
}

/* ---- logging ----
 * Every message goes through GLib's structured log (core/log.h adds ctlfs's
 * fields) to one of:
 *   journal  systemd's journal, every field kept; INFO and up (each event of
 *            the tree's logs is an INFO message), DEBUG with -d or
 *            G_MESSAGES_DEBUG;
 *   syslog   syslog(3), facility daemon, the MESSAGE only; same levels;
 *   stderr   GLib's default: WARNING and up, INFO and DEBUG with -d or
 *            G_MESSAGES_DEBUG.
 * CTLFS_LOG=journal|syslog|stderr picks one. Unset (or auto): the journal
 * when stderr is a stream into it (a systemd service), else stderr; and a
 * daemon that detached from its terminal logs to the journal when its socket
 * exists, else to syslog, rather than into /dev/null. */

typedef enum { TO_STDERR, TO_JOURNAL, TO_SYSLOG } LogTarget;

static LogTarget log_target = TO_STDERR;
static gboolean  log_chosen;      /* CTLFS_LOG said where */
static gboolean  log_detached;    /* stderr is /dev/null (daemon mode) */

static const char *
log_field(const GLogField *fields, gsize n, const char *key)
{
  for (gsize i = 0; i < n; i++)
    if (strcmp(fields[i].key, key) == 0 && fields[i].length < 0)
      return fields[i].value;
  return NULL;
}

static GLogWriterOutput
log_to_syslog(GLogLevelFlags level, const GLogField *fields, gsize n)
{
  static gboolean opened;
  if (!opened) {
    openlog("ctlfs", LOG_PID, LOG_DAEMON);
    opened = TRUE;
  }
  const char *prio = log_field(fields, n, "PRIORITY");
  const char *msg = log_field(fields, n, "MESSAGE");
  syslog(prio && g_ascii_isdigit(*prio) ? *prio - '0' : LOG_INFO, "%s", msg ? msg : "");
  return G_LOG_WRITER_HANDLED;
}

static GLogWriterOutput
log_writer(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
  if (log_target == TO_STDERR)
    return g_log_writer_default(level, fields, n, data);
  if ((level & G_LOG_LEVEL_DEBUG)
      && g_log_writer_default_would_drop(level, log_field(fields, n, "GLIB_DOMAIN")))
    return G_LOG_WRITER_HANDLED;
  if (log_target == TO_JOURNAL) {
    /* SYSLOG_IDENTIFIER, so that `journalctl -t ctlfs` finds it too. */
    GLogField *all = g_newa(GLogField, n + 1);
    memcpy(all, fields, n * sizeof *fields);
    all[n] = (GLogField) { "SYSLOG_IDENTIFIER", "ctlfs", -1 };
    if (g_log_writer_journald(level, all, n + 1, data) == G_LOG_WRITER_HANDLED)
      return G_LOG_WRITER_HANDLED;
    /* no journal after all: not into /dev/null */
  }
  if (log_target == TO_SYSLOG || log_detached)
    return log_to_syslog(level, fields, n);
  return g_log_writer_default(level, fields, n, data);
}

static void
setup_logging(void)
{
  const char *want = g_getenv("CTLFS_LOG");
  log_chosen = TRUE;
  if (g_strcmp0(want, "journal") == 0)
    log_target = TO_JOURNAL;
  else if (g_strcmp0(want, "syslog") == 0)
    log_target = TO_SYSLOG;
  else if (g_strcmp0(want, "stderr") == 0)
    log_target = TO_STDERR;
  else if (!want || !*want || strcmp(want, "auto") == 0) {
    log_chosen = FALSE;
    log_target = g_log_writer_is_journald(fileno(stderr)) ? TO_JOURNAL : TO_STDERR;
  } else
    die_usage("CTLFS_LOG=%s: expected journal, syslog, stderr or auto", want);
  g_log_set_writer_func(log_writer, NULL, NULL);
}

/* stderr now goes nowhere: keep the messages. */
static void
logging_detached(void)
{
  log_detached = TRUE;
  if (!log_chosen && log_target == TO_STDERR)
    log_target = g_file_test("/run/systemd/journal/socket", G_FILE_TEST_EXISTS)
                 ? TO_JOURNAL : TO_SYSLOG;
}

/* The service manager's readiness protocol (sd_notify(3)): READY=1 once the
 * mount is usable, STOPPING=1 when the daemon stops. Without NOTIFY_SOCKET
 * (not started by systemd as Type=notify), nothing. */
static void
notify_manager(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
  int r = sd_notify(0, state);
  if (r < 0)
    g_warning("cannot notify the service manager (%s): %s", state, g_strerror(-r));
#else
  (void) state;
#endif
}

/* ---- daemon mode ----
 * The parent stays until the child has mounted (or failed), relays what the
 * child prints for the user (the embedded broker's address), and exits with
 * the child's verdict: a script that runs `ctlfs` can use the mount right after. */

static int ready_fd = -1;
#define READY_MARK "\001ready\n"

static void
daemonize(void)
{
  int p[2];
  if (pipe(p) != 0) {
    perror("ctlfs: pipe");
    exit(1);
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("ctlfs: fork");
    exit(1);
  }
  if (pid == 0) {
    close(p[0]);
    ready_fd = p[1];
    setsid();
    return;
  }
  close(p[1]);
  char buf[512];
  ssize_t n;
  gboolean ready = FALSE;
  GString *all = g_string_new(NULL);
  while ((n = read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0)
      g_string_append_len(all, buf, n);
  char *mark = strstr(all->str, READY_MARK);
  if (mark) {
    ready = TRUE;
    *mark = '\0';
  }
  fputs(all->str, stdout);
  fflush(stdout);
  if (ready)
    exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

/* A line for the user: to stdout, or through the pipe to the waiting parent. */
static void
announce(const char *line)
{
  if (ready_fd >= 0) {
    if (write(ready_fd, line, strlen(line)) < 0 || write(ready_fd, "\n", 1) < 0)
      g_warning("cannot announce '%s'", line);
    return;
  }
  printf("%s\n", line);
  fflush(stdout);
}

static void
announce_ready(const char *mountpoint)
{
  char *ready = g_strdup_printf("READY=1\nSTATUS=mounted on %s", mountpoint);
  notify_manager(ready);
  g_free(ready);
  if (ready_fd < 0)
    return;
  if (write(ready_fd, READY_MARK, strlen(READY_MARK)) < 0)
    g_warning("cannot tell the parent that the mount is ready");
  close(ready_fd);
  ready_fd = -1;
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2)
      close(null);
  }
  logging_detached();
}

static gboolean
on_signal(gpointer loop)
{
  g_main_loop_quit(loop);
  return G_SOURCE_CONTINUE;
}

static void
fail(int status, const char *what, GError *error)
{
  fprintf(stderr, "ctlfs: %s: %s\n", what, error->message);
  g_error_free(error);
  exit(status);
}

/* Static, so that what a usage error leaves behind at exit() is still
 * reachable and no leak report changes the exit status. */
static Options o;
/* The same for the session, made before anything else. */
static CtlFs *fs;

/* A failure once mounted: the mount goes first, so that nothing is left
 * behind. */
static void
unmount_and_fail(int status, const char *what, GError *error)
{
  ctl_fs_free(fs);
  fs = NULL;
  fail(status, what, error);
}

int
main(int argc, char **argv)
{
  o.settings = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  o.fuse_opts = g_ptr_array_new_with_free_func(g_free);
  o.kafka = g_ptr_array_new_with_free_func(g_free);
  setup_logging();
  parse_args(&o, argc, argv);
  CtlConfig cfg;
  build_config(&o, &cfg);
  if (o.debug)
    g_setenv("G_MESSAGES_DEBUG", "all", FALSE);
  signal(SIGPIPE, SIG_IGN);

  /* libfuse's options are checked now: a bad one is a usage error (exit 2),
   * found before anything is started or mounted. */
  GError *error = NULL;
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&args, "ctlfs");
  if (o.debug)
    fuse_opt_add_arg(&args, "-d");
  for (guint i = 0; i < o.fuse_opts->len; i++) {
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, o.fuse_opts->pdata[i]);
  }
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, "fsname=ctlfs,subtype=ctlfs");
  fs = ctl_fs_new(&args, &error);
  fuse_opt_free_args(&args);
  if (!fs)
    fail(EXIT_USAGE, "bad option", error);

  /* Fork before anything starts a thread (librdkafka, the mock broker). */
  if (!o.foreground)
    daemonize();

  /* A CA, certificate or key file librdkafka cannot load is still the
   * configuration's fault: exit 2 (the parent relays it), nothing mounted. */
  if (cfg.kafka_props[0]
      && !ctl_kafka_props_try_client((const char *const *) cfg.kafka_props, &error))
    die_usage("%s", error->message);

  /* Mounted before anything is created or printed: a mount that cannot be
   * made (no /dev/fuse, a mount point already mounted) leaves no database
   * and no bootstrap= line behind. Requests wait until the tree is served. */
  if (!ctl_fs_mount(fs, o.mountpoint, &error))
    fail(1, "cannot mount", error);

  CtlStore *store = ctl_store_open(cfg.db_path, &error);
  if (!store) {
    char *what = g_strdup_printf("cannot open database %s", cfg.db_path);
    unmount_and_fail(EXIT_USAGE, what, error);
  }

  CtlMockBroker *embedded = NULL;
  if (!cfg.brokers) {
    embedded = ctl_mock_broker_new(1, &error);
    if (!embedded)
      unmount_and_fail(1, "cannot start the embedded broker", error);
    cfg.brokers = g_strdup(ctl_mock_broker_bootstraps(embedded));
    char *line = g_strdup_printf("bootstrap=%s", cfg.brokers);
    announce(line);
    g_free(line);
  }

  CtlEngine *engine = ctl_engine_new(&cfg, store, &error);
  if (!engine)
    unmount_and_fail(1, "cannot start", error);

  GMainLoop *loop = g_main_loop_new(NULL, FALSE);
  if (!ctl_fs_serve(fs, engine, loop, &error)) {
    ctl_fs_free(fs);
    fs = NULL;
    ctl_engine_free(engine);
    ctl_mock_broker_free(embedded);
    fail(1, "cannot mount", error);
  }

  guint sigs[] = {
    g_unix_signal_add(SIGINT, on_signal, loop),
    g_unix_signal_add(SIGTERM, on_signal, loop),
    g_unix_signal_add(SIGHUP, on_signal, loop),
  };
  g_info("mounted %s (db %s, brokers %s)", o.mountpoint, cfg.db_path, cfg.brokers);
  char *props = ctl_kafka_props_describe((const char *const *) cfg.kafka_props);
  g_info("kafka client properties: %s", props);
  g_free(props);
  announce_ready(o.mountpoint);
  g_main_loop_run(loop);
  notify_manager("STOPPING=1\nSTATUS=unmounting");

  /* Writers still waiting are answered before the session goes away. */
  ctl_fs_stop(fs);
  ctl_engine_free(engine);
  ctl_fs_free(fs);
  ctl_mock_broker_free(embedded);
  for (gsize i = 0; i < G_N_ELEMENTS(sigs); i++)
    g_source_remove(sigs[i]);
  g_main_loop_unref(loop);
  ctl_config_clear(&cfg);
  g_free(o.mountpoint);
  g_hash_table_unref(o.settings);
  g_ptr_array_free(o.fuse_opts, TRUE);
  g_ptr_array_free(o.kafka, TRUE);
  return 0;
}
