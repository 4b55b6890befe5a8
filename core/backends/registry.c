/* Every backend ctlfs has: adding a control plane is its folder under
 * core/backends/ (in core/meson.build) and one line here. Tree backends own
 * kinds of objects; runtime backends are found by their backend= and
 * dialect= values. */
#include "backend.h"

#include "kafka.h"
#include "lifecycle.h"
#include "mia.h"
#include "rama.h"

const CtlBackend *const ctl_backends[] = {
  &ctl_backend_kafka,
  &ctl_backend_mia,
  &ctl_backend_lifecycle,
  &ctl_backend_rama,
  NULL,
};
