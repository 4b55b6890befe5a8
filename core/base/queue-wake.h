/* A librdkafka queue as a GLib source: FN runs on the main loop whenever the
 * queue may hold something, and serves it there (rd_kafka_poll,
 * rd_kafka_consumer_poll), so that nothing ever blocks on Kafka.
 *
 * The contract:
 *  - FN must serve the queue until it is empty (or call ctl_queue_wake_kick()
 *    before returning): librdkafka signals only when the queue goes from
 *    empty to non-empty, so what FN leaves there raises no further call.
 *  - FN runs once on the first turn of the loop after ctl_queue_wake_new(),
 *    whether or not the queue signalled: what was queued before the wake
 *    existed (an error from the first connection attempt, with the broker
 *    down at start) would otherwise sit there for good, and everything queued
 *    behind it -- delivery reports included -- with it.
 *  - The wake owns the queue: ctl_queue_wake_free() stops the signal before
 *    destroying it, so that librdkafka never writes to a closed descriptor.
 *
 * Base layer: glib and librdkafka only, no other module of core/. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>

typedef struct CtlQueueWake CtlQueueWake;

/* Called on the main loop with the DATA given to ctl_queue_wake_new(). */
typedef void (*CtlQueueWakeFunc)(gpointer data);

/* Takes QUEUE (from rd_kafka_queue_get_main(), rd_kafka_queue_get_consumer(),
 * ...) and calls FN (DATA) when it is no longer empty. NULL + ERROR when no
 * pipe can be had; QUEUE is destroyed then too. */
CtlQueueWake *ctl_queue_wake_new(rd_kafka_queue_t *queue, CtlQueueWakeFunc fn, gpointer data,
                                 GError **error);
/* Makes FN run again on a later turn of the loop, after the other sources
 * ready by then: for an FN that serves a batch at a time. */
void          ctl_queue_wake_kick(CtlQueueWake *w);
/* Stops the calls and destroys the queue (not its client). NULL is allowed. */
void          ctl_queue_wake_free(CtlQueueWake *w);
