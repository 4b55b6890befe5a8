/* Kafka in ctlfs's own dialect: the default runtime backend. */
#pragma once
#include "backend.h"

extern const CtlBackend ctl_backend_kafka;
