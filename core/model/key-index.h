/* The model's objects by key. Keys are dense: a stored object's is its store
 * id + 15, ids are given in order and only removals leave holes. So the index
 * is an array indexed by key, one pointer per key, walked in key order (the
 * order objects were loaded in, and lie in memory); when holes would
 * outnumber the objects (a database that saw many more objects come and go
 * than it holds), it becomes a hash set of the objects for good. */
#pragma once
#include <glib.h>

typedef struct CtlKeyIndex CtlKeyIndex;

/* Entries are objects that start with their gint64 key (CtlObject). */
CtlKeyIndex *ctl_key_index_new(void);
void         ctl_key_index_free(CtlKeyIndex *ix);
void         ctl_key_index_add(CtlKeyIndex *ix, gpointer obj);
void         ctl_key_index_remove(CtlKeyIndex *ix, gpointer obj);
gpointer     ctl_key_index_lookup(CtlKeyIndex *ix, gint64 key);
/* Calls FN on every object; FN may free the one it is given (nothing else),
 * as long as nothing adds or removes entries meanwhile. */
void         ctl_key_index_foreach(CtlKeyIndex *ix, GFunc fn, gpointer user_data);
