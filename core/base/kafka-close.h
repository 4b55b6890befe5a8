/* Ending librdkafka clients without waiting on a broker that is gone.
 *
 * rd_kafka_consumer_close() waits, without a bound, for what the consumer
 * still owes its group coordinator; with the broker gone (a ctlfs unmounted
 * with its embedded broker, a cluster down at shutdown) a SIGTERM would then
 * never end the process. These wait at most TIMEOUT_MS for the broker and
 * then destroy the client all the same.
 *
 * Base layer: librdkafka and glib only. */
#pragma once
#include <glib.h>
#include <librdkafka/rdkafka.h>

/* Closes consumer RK (leaving its group, committing what the configuration
 * says) waiting at most TIMEOUT_MS, then destroys it. NULL is allowed. */
void ctl_kafka_consumer_close(rd_kafka_t *rk, int timeout_ms);
