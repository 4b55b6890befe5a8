/* The model's index of objects by key (core/model/key-index.h): an array
 * while keys are dense, a hash set once holes would outnumber objects; the
 * same answers either way. And the shared state words (core/base/kv.h). */
#include "key-index.h"
#include "kv.h"

typedef struct {
  gint64 key;          /* first, as in CtlObject */
  int    seen;
} Obj;

static void
count_seen(gpointer obj, gpointer total)
{
  ((Obj *) obj)->seen++;
  (*(guint *) total)++;
}

static void
check_all(CtlKeyIndex *ix, Obj *objs, guint n, gboolean (*present)(guint))
{
  for (guint i = 0; i < n; i++) {
    objs[i].seen = 0;
    g_assert_true(ctl_key_index_lookup(ix, objs[i].key) == (present(i) ? &objs[i] : NULL));
  }
  guint total = 0;
  ctl_key_index_foreach(ix, count_seen, &total);
  guint want = 0;
  for (guint i = 0; i < n; i++) {
    g_assert_cmpint(objs[i].seen, ==, present(i) ? 1 : 0);
    want += present(i);
  }
  g_assert_cmpuint(total, ==, want);
}

static gboolean all(guint i) { return TRUE; }
static gboolean every_100th(guint i) { return i % 100 == 0; }

/* Dense keys, then most of them removed: the index turns into a set on the
 * way, and every lookup and walk answers the same before and after. */
static void
test_dense_then_sparse(void)
{
  const guint n = 50000;
  Obj *objs = g_new0(Obj, n);
  CtlKeyIndex *ix = ctl_key_index_new();
  for (guint i = 0; i < n; i++) {
    objs[i].key = i;
    ctl_key_index_add(ix, &objs[i]);
  }
  check_all(ix, objs, n, all);
  g_assert_null(ctl_key_index_lookup(ix, n));
  g_assert_null(ctl_key_index_lookup(ix, -1));
  for (guint i = 0; i < n; i++)
    if (!every_100th(i))
      ctl_key_index_remove(ix, &objs[i]);
  check_all(ix, objs, n, every_100th);
  /* removing one that is not there changes nothing */
  ctl_key_index_remove(ix, &objs[1]);
  check_all(ix, objs, n, every_100th);
  ctl_key_index_free(ix);
  g_free(objs);
}

/* A database whose first object has a large id (many came and went before):
 * no array that long is made, and keys are found all the same. */
static void
test_sparse_from_start(void)
{
  Obj objs[3] = { { 0, 0 }, { 10000000, 0 }, { 20000000, 0 } };
  CtlKeyIndex *ix = ctl_key_index_new();
  for (guint i = 0; i < G_N_ELEMENTS(objs); i++)
    ctl_key_index_add(ix, &objs[i]);
  check_all(ix, objs, G_N_ELEMENTS(objs), all);
  g_assert_null(ctl_key_index_lookup(ix, 10000001));
  ctl_key_index_remove(ix, &objs[1]);
  g_assert_null(ctl_key_index_lookup(ix, 10000000));
  g_assert_true(ctl_key_index_lookup(ix, 20000000) == &objs[2]);
  ctl_key_index_free(ix);
}

/* A shared word is never freed (ASan would tell) and a field that held one
 * takes any value, and back. */
static void
test_shared_words(void)
{
  char *a = ctl_str_share("running");
  char *b = ctl_str_share("running");
  g_assert_true(a == b);
  g_assert_cmpstr(a, ==, "running");
  char *c = ctl_str_share("starting");
  g_assert_cmpstr(c, ==, "starting");
  char *d = ctl_str_share("starting");
  g_assert_true(c != d);   /* not a shared word: a copy each */
  ctl_str_free(d);
  g_assert_true(ctl_set_str(&a, "paused"));
  g_assert_cmpstr(a, ==, "paused");
  g_assert_false(ctl_set_str(&a, "paused"));
  g_assert_true(ctl_set_str(&b, NULL));
  g_assert_null(b);
  ctl_str_free(a);
  ctl_str_free(c);
  ctl_str_free(ctl_str_share("stopped"));
  ctl_str_free(ctl_str_share(NULL));
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/key-index/dense-then-sparse", test_dense_then_sparse);
  g_test_add_func("/key-index/sparse-from-start", test_sparse_from_start);
  g_test_add_func("/kv/shared-words", test_shared_words);
  return g_test_run();
}
