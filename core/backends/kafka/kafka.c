/* Kafka in ctlfs's own dialect (SPEC.md, "Messages"): a runtime's resources
 * pause and resume, one by one or the whole runtime at once (runtime-state.c);
 * a command is keyed by resource (a runtime-wide one by runtime), so that one resource's
 * commands keep their order; feedback names the command it settles. The
 * default backend (backend=kafka, dialect=ctlfs): nothing but the engine's
 * defaults. */
#include "kafka.h"

static const char *const verbs[] = { "pause", "resume", "inherit", NULL };

const CtlBackend ctl_backend_kafka = {
  .name = "kafka",
  .backend = "kafka",
  .dialect = "ctlfs",
  .runtime_state = TRUE,
  .verbs = verbs,
  .underway = ctl_underway_pause_resume,
  .type = ctl_type_resource,
  .command_key = ctl_dialect_ctlfs_key,
  .command_encode = ctl_dialect_ctlfs_encode,
  .command_decode = ctl_dialect_ctlfs_decode,
  .feedback = ctl_engine_feedback_ctlfs,
};
