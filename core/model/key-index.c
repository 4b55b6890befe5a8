#include "key-index.h"

/* Holes allowed beyond one per object before the array gives way. */
#define SLACK 1024

struct CtlKeyIndex {
  GPtrArray  *array;   /* key -> object or NULL; NULL once `set` is used */
  GHashTable *set;     /* the objects, hashed as the gint64 each starts with */
  guint       count;
};

CtlKeyIndex *
ctl_key_index_new(void)
{
  CtlKeyIndex *ix = g_new0(CtlKeyIndex, 1);
  ix->array = g_ptr_array_new();
  return ix;
}

void
ctl_key_index_free(CtlKeyIndex *ix)
{
  if (!ix)
    return;
  if (ix->array)
    g_ptr_array_free(ix->array, TRUE);
  if (ix->set)
    g_hash_table_unref(ix->set);
  g_free(ix);
}

static gint64
key_of(gconstpointer obj)
{
  return *(const gint64 *) obj;
}

static void
to_set(CtlKeyIndex *ix)
{
  ix->set = g_hash_table_new(g_int64_hash, g_int64_equal);
  for (guint i = 0; i < ix->array->len; i++)
    if (ix->array->pdata[i])
      g_hash_table_add(ix->set, ix->array->pdata[i]);
  g_ptr_array_free(ix->array, TRUE);
  ix->array = NULL;
}

void
ctl_key_index_add(CtlKeyIndex *ix, gpointer obj)
{
  gint64 key = key_of(obj);
  ix->count++;
  if (ix->array && key >= 0 && (guint64) key >= ix->array->len
      && (guint64) key >= 2 * (guint64) ix->count + SLACK)
    to_set(ix);
  if (!ix->array) {
    g_hash_table_add(ix->set, obj);
    return;
  }
  g_return_if_fail(key >= 0);
  if ((guint64) key >= ix->array->len)
    g_ptr_array_set_size(ix->array, key + 1);
  ix->array->pdata[key] = obj;
}

void
ctl_key_index_remove(CtlKeyIndex *ix, gpointer obj)
{
  gint64 key = key_of(obj);
  if (ctl_key_index_lookup(ix, key) != obj)
    return;
  ix->count--;
  if (!ix->array) {
    g_hash_table_remove(ix->set, obj);
    return;
  }
  ix->array->pdata[key] = NULL;
  if (ix->array->len >= 2 * (guint64) ix->count + SLACK)
    to_set(ix);
}

gpointer
ctl_key_index_lookup(CtlKeyIndex *ix, gint64 key)
{
  if (!ix->array)
    return g_hash_table_lookup(ix->set, &key);
  return key >= 0 && (guint64) key < ix->array->len ? ix->array->pdata[key] : NULL;
}

void
ctl_key_index_foreach(CtlKeyIndex *ix, GFunc fn, gpointer user_data)
{
  if (ix->array) {
    for (guint i = 0; i < ix->array->len; i++)
      if (ix->array->pdata[i])
        fn(ix->array->pdata[i], user_data);
    return;
  }
  GHashTableIter it;
  gpointer obj;
  g_hash_table_iter_init(&it, ix->set);
  while (g_hash_table_iter_next(&it, &obj, NULL))
    fn(obj, user_data);
}
