/* Blocks of anonymous memory, asked to be backed by huge pages: filling one
 * takes a few faults instead of one per 4 KiB page. Fresh mappings are zero,
 * so nothing is cleared. */
#include "arena.h"

#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define SANITIZED 1
#endif

#define BLOCK_SIZE ((gsize) 8 << 20)
#define ALIGN      ((gsize) 8)

struct CtlArena {
  GArray *blocks;      /* Block: mappings made, freed together */
  char   *next;        /* free space in the newest block */
  gsize   left;
};

typedef struct {
  gpointer base;
  gsize    size;
} Block;

CtlArena *
ctl_arena_new(void)
{
  CtlArena *a = g_new0(CtlArena, 1);
  a->blocks = g_array_new(FALSE, FALSE, sizeof(Block));
  return a;
}

static gboolean
add_block(CtlArena *a, gsize need)
{
  gsize size = MAX(BLOCK_SIZE, need);
  gpointer base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return FALSE;
#ifdef MADV_HUGEPAGE
  (void) madvise(base, size, MADV_HUGEPAGE);   /* a hint: 4 KiB pages do as well */
#endif
#ifdef SANITIZED
  /* What the objects here point to is reachable, not leaked. */
  __lsan_register_root_region(base, size);
#endif
  Block b = { base, size };
  g_array_append_val(a->blocks, b);
  a->next = base;
  a->left = size;
  return TRUE;
}

gpointer
ctl_arena_alloc0(CtlArena *a, gsize size)
{
  size = (size + ALIGN - 1) & ~(ALIGN - 1);
  if (size > a->left && !add_block(a, size))
    g_error("arena: out of memory (%" G_GSIZE_FORMAT " bytes)", size);
  gpointer p = a->next;
  a->next += size;
  a->left -= size;
  return p;
}

void
ctl_arena_release(gpointer p, gsize size)
{
#ifdef SANITIZED
  ASAN_POISON_MEMORY_REGION(p, size);
#else
  (void) p;
  (void) size;
#endif
}

void
ctl_arena_free(CtlArena *a)
{
  if (!a)
    return;
  for (guint i = 0; i < a->blocks->len; i++) {
    Block *b = &g_array_index(a->blocks, Block, i);
#ifdef SANITIZED
    ASAN_UNPOISON_MEMORY_REGION(b->base, b->size);
    __lsan_unregister_root_region(b->base, b->size);
#endif
    munmap(b->base, b->size);
  }
  g_array_free(a->blocks, TRUE);
  g_free(a);
}
