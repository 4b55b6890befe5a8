/* The files of an object, looked up in the type core/ gives it: tree.c and
 * file.c translate requests into calls on these rows (name, mode, show,
 * store), in the manner of kernfs. */
#include "fs-private.h"

#include <string.h>

CtlChildren
ctl_node_children(CtlFs *fs, CtlObject *dir)
{
  return ctl_engine_type(fs->engine, dir)->children;
}

const CtlNode *
ctl_nodes(CtlFs *fs, CtlObject *obj, guint *count)
{
  const CtlType *type = ctl_engine_type(fs->engine, obj);
  *count = type->n_attrs;
  return type->attrs;
}

const CtlNode *
ctl_node_find(CtlFs *fs, CtlObject *obj, const char *name, guint *slot)
{
  guint n;
  const CtlNode *nodes = ctl_nodes(fs, obj, &n);
  for (guint i = 0; i < n; i++) {
    if (strcmp(nodes[i].name, name) == 0) {
      *slot = i + 1;
      return &nodes[i];
    }
  }
  return NULL;
}

const CtlNode *
ctl_node_at(CtlFs *fs, CtlObject *obj, guint slot)
{
  if (slot == 0)
    return ctl_engine_type(fs->engine, obj)->self;
  guint n;
  const CtlNode *nodes = ctl_nodes(fs, obj, &n);
  return slot <= n ? &nodes[slot - 1] : NULL;
}

const char *
ctl_node_name(const CtlNode *node, CtlObject *obj)
{
  return *node->name ? node->name : obj->name;
}
