/* ctlfs-broker: librdkafka's mock cluster in its own process, for demos and
 * tests. First stdout line: bootstrap=HOST:PORT[,...]. Fault commands on stdin,
 * one per line, each answered with one line on stdout so that a test can wait
 * for the fault to be in place before it goes on; stdin's end ends it.
 * --no-stdin is for running it in the background, where stdin is /dev/null
 * (a script's `&`) or a terminal it may not read (an interactive shell's). */
#define G_LOG_DOMAIN "ctlfs-broker"
#include "mockbroker.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

typedef struct {
  GMainLoop     *loop;
  CtlMockBroker *mb;
  guint          stdin_watch;
} Broker;

static gboolean
on_signal(gpointer data)
{
  Broker *b = data;
  g_main_loop_quit(b->loop);
  return G_SOURCE_CONTINUE;
}

static void
answer(Broker *b, const char *line)
{
  g_autoptr(GError) error = NULL;
  if (ctl_mock_broker_fault(b->mb, line, &error))
    printf("ok %s\n", line);
  else
    printf("error: %s\n", error->message);
  fflush(stdout);
}

/* Reads every complete line available; the channel is non-blocking, so a
 * partial line waits for the next wakeup instead of stalling the loop. */
static gboolean
on_stdin(GIOChannel *ch, GIOCondition cond, gpointer data)
{
  Broker *b = data;
  for (;;) {
    g_autofree char *line = NULL;
    g_autoptr(GError) error = NULL;
    GIOStatus st = g_io_channel_read_line(ch, &line, NULL, NULL, &error);
    if (st == G_IO_STATUS_NORMAL) {
      g_strstrip(line);
      if (*line != '\0')          /* blank lines are not commands */
        answer(b, line);
      continue;
    }
    if (st == G_IO_STATUS_AGAIN)
      return G_SOURCE_CONTINUE;
    if (st == G_IO_STATUS_ERROR)
      g_warning("stdin: %s", error->message);
    /* EOF: whoever started us is gone, so are we. */
    g_main_loop_quit(b->loop);
    b->stdin_watch = 0;
    return G_SOURCE_REMOVE;
  }
}

static int
parse_options(int *argc, char ***argv, int *n_brokers, gboolean *no_stdin)
{
  GOptionEntry entries[] = {
    { "brokers", 0, 0, G_OPTION_ARG_INT, n_brokers, "Number of brokers (default 1)", "N" },
    { "no-stdin", 0, 0, G_OPTION_ARG_NONE, no_stdin,
      "Do not read stdin: run until SIGTERM or SIGINT (for running in the background)", NULL },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
  g_option_context_set_summary(ctx,
      "A Kafka-protocol broker for demos and tests (librdkafka mock cluster).\n"
      "Commands on stdin: down ID, up ID, rtt ID MS, topic NAME PARTITIONS.\n"
      "It ends at the end of stdin, or with --no-stdin at SIGTERM or SIGINT.");
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, argc, argv, &error)) {
    fprintf(stderr, "ctlfs-broker: %s\n", error->message);
    return 2;
  }
  if (*argc > 1) {
    fprintf(stderr, "ctlfs-broker: unexpected argument %s\n", (*argv)[1]);
    return 2;
  }
  if (*n_brokers < 1 || *n_brokers > 64) {
    fprintf(stderr, "ctlfs-broker: --brokers must be 1..64, not %d\n", *n_brokers);
    return 2;
  }
  return 0;
}

static void
watch_stdin(Broker *b)
{
  GIOChannel *ch = g_io_channel_unix_new(STDIN_FILENO);
  /* Raw bytes: a stray non-UTF-8 byte must give "error:", not kill the reader. */
  g_io_channel_set_encoding(ch, NULL, NULL);
  g_io_channel_set_flags(ch, G_IO_FLAG_NONBLOCK, NULL);
  b->stdin_watch = g_io_add_watch(ch, G_IO_IN | G_IO_HUP | G_IO_ERR, on_stdin, b);
  g_io_channel_unref(ch);   /* the watch holds its own reference */
}

int
main(int argc, char **argv)
{
  int n_brokers = 1;
  gboolean no_stdin = FALSE;
  int rc = parse_options(&argc, &argv, &n_brokers, &no_stdin);
  if (rc != 0)
    return rc;
  g_log_writer_default_set_use_stderr(TRUE);

  g_autoptr(GError) error = NULL;
  Broker b = { .loop = g_main_loop_new(NULL, FALSE) };
  b.mb = ctl_mock_broker_new(n_brokers, &error);
  if (b.mb == NULL) {
    fprintf(stderr, "ctlfs-broker: %s\n", error->message);
    g_main_loop_unref(b.loop);
    return 1;
  }
  printf("bootstrap=%s\n", ctl_mock_broker_bootstraps(b.mb));
  fflush(stdout);

  guint sigterm = g_unix_signal_add(SIGTERM, on_signal, &b);
  guint sigint = g_unix_signal_add(SIGINT, on_signal, &b);
  if (!no_stdin)
    watch_stdin(&b);
  g_main_loop_run(b.loop);

  g_source_remove(sigterm);
  g_source_remove(sigint);
  g_clear_handle_id(&b.stdin_watch, g_source_remove);
  ctl_mock_broker_free(b.mb);
  g_main_loop_unref(b.loop);
  return 0;
}
