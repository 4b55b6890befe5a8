/* Kafka in the Mia-Platform Fast Data dialect (seed 000): the runtime
 * backend of backend=kafka, dialect=mia. Message shapes: dialect-mia.h;
 * docs/seeds/mia.md maps them to ctlfs. */
#pragma once
#include "backend.h"

extern const CtlBackend ctl_backend_mia;
