/* librdkafka writes a byte to a pipe when a queue goes from empty to
 * non-empty (rd_kafka_queue_io_event_enable); the pipe's read end is the
 * GSource. */
#include "queue-wake.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <unistd.h>

struct CtlQueueWake {
  rd_kafka_queue_t *queue;
  int               fds[2];
  guint             source;
  CtlQueueWakeFunc  fn;
  gpointer          data;
};

static gboolean
on_readable(gint fd, GIOCondition cond, gpointer data)
{
  CtlQueueWake *w = data;
  char buf[256];
  /* The bytes only say "no longer empty": what counts is what FN serves. */
  while (read(fd, buf, sizeof buf) > 0)
    ;
  w->fn(w->data);
  return G_SOURCE_CONTINUE;
}

/* Nonblocking both ways: librdkafka must never wait on a full pipe, and
 * draining it must stop when it is empty. */
static gboolean
open_pipe(int fds[2], GError **error)
{
  return g_unix_open_pipe(fds, FD_CLOEXEC, error)
      && g_unix_set_fd_nonblocking(fds[0], TRUE, error)
      && g_unix_set_fd_nonblocking(fds[1], TRUE, error);
}

CtlQueueWake *
ctl_queue_wake_new(rd_kafka_queue_t *queue, CtlQueueWakeFunc fn, gpointer data, GError **error)
{
  CtlQueueWake *w = g_new0(CtlQueueWake, 1);
  w->queue = queue;
  w->fds[0] = w->fds[1] = -1;
  w->fn = fn;
  w->data = data;
  if (!open_pipe(w->fds, error)) {
    ctl_queue_wake_free(w);
    return NULL;
  }
  rd_kafka_queue_io_event_enable(queue, w->fds[1], "1", 1);
  w->source = g_unix_fd_add(w->fds[0], G_IO_IN, on_readable, w);
  /* Whatever was queued before the pipe was set raised no byte. */
  ctl_queue_wake_kick(w);
  return w;
}

void
ctl_queue_wake_kick(CtlQueueWake *w)
{
  if (write(w->fds[1], "1", 1) < 0)
    g_debug("wakeup pipe full: a wakeup is pending anyway");
}

void
ctl_queue_wake_free(CtlQueueWake *w)
{
  if (w == NULL)
    return;
  g_clear_handle_id(&w->source, g_source_remove);
  if (w->queue != NULL) {
    /* Before the queue goes (and the pipe with it): librdkafka's threads
     * write to the descriptor until told not to. */
    rd_kafka_queue_io_event_enable(w->queue, -1, NULL, 0);
    rd_kafka_queue_destroy(w->queue);
  }
  for (int i = 0; i < 2; i++)
    if (w->fds[i] >= 0)
      close(w->fds[i]);
  g_free(w);
}
