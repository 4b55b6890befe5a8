/* An arena: many small allocations made at once and freed all together.
 * The model loads every object at start from it (a million resources are a
 * million allocations otherwise, each with malloc's header and rounding, and
 * each page of them faulted in one at a time). */
#pragma once
#include <glib.h>

typedef struct CtlArena CtlArena;

CtlArena *ctl_arena_new(void);
/* SIZE zeroed bytes, aligned for any field of a struct (8 bytes). They stay
 * until ctl_arena_free(). */
gpointer  ctl_arena_alloc0(CtlArena *a, gsize size);
/* SIZE bytes at P (from ctl_arena_alloc0) are no longer used: they stay
 * until ctl_arena_free(), but a sanitized build (ASan) reports any use of
 * them, as it does for freed memory. */
void      ctl_arena_release(gpointer p, gsize size);
void      ctl_arena_free(CtlArena *a);
