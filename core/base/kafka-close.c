/* Ending librdkafka clients, bounded (kafka-close.h). */
#include "kafka-close.h"

void
ctl_kafka_consumer_close(rd_kafka_t *rk, int timeout_ms)
{
  if (!rk)
    return;
  /* The close runs on librdkafka's threads and reports on QUEUE; we poll it
   * until the consumer says it is closed or the time is up. */
  rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
  rd_kafka_error_t *error = rd_kafka_consumer_close_queue(rk, queue);
  if (error) {
    g_debug("kafka: consumer close: %s", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
  } else {
    gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
    while (!rd_kafka_consumer_closed(rk) && g_get_monotonic_time() < deadline) {
      rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 50);
      if (ev)
        rd_kafka_event_destroy(ev);
    }
    if (!rd_kafka_consumer_closed(rk))
      g_message("kafka: consumer not closed within %d ms (broker gone?): destroyed as it is",
                timeout_ms);
  }
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}
