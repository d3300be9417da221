/* Reading the flattened device tree the VMM hands over in x0: a walk
   visiting every property, the /chosen/bootargs string and the first
   /memory node's size, and "key=value" words in the bootargs. Header-only, so that only the
   programs that include it carry it. */
#ifndef HYPERPROF_GUEST_FDT_H
#define HYPERPROF_GUEST_FDT_H

#include "runtime.h"

#define FDT_MAGIC 0xd00dfeedu
#define FDT_BEGIN_NODE 1u
#define FDT_END_NODE 2u
#define FDT_PROP 3u
#define FDT_NOP 4u
#define FDT_END 9u

/* The blob is big-endian. */
static inline u32 fdt_be32(const u8 *p)
{
    return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

static inline u64 fdt_be64(const u8 *p)
{
    return (u64)fdt_be32(p) << 32 | fdt_be32(p + 4);
}

static inline int fdt_prefix(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static inline int fdt_streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* A property the walk visits, with the names of the node holding it and
   of that node's parent. Depths count the root node as 1 (the root's
   children are at 2); the root's name, and its parent's, are "". */
struct fdt_prop {
    int depth;
    const char *parent, *node, *name;
    const u8 *val;
    u32 len;
};

/* Nodes deeper than this are walked through, their properties not
   visited. */
#define FDT_MAX_DEPTH 4

/* Walks the structure block of the tree at `dtb`, calling visit(ctx, p)
   for each property in the tree's order; stops at the first malformed
   token, and does nothing without a tree. */
static inline void fdt_walk(u64 dtb, void (*visit)(void *ctx, const struct fdt_prop *p), void *ctx)
{
    const u8 *h = (const u8 *)dtb;
    if (!dtb || fdt_be32(h) != FDT_MAGIC)
        return;
    const u8 *s = h + fdt_be32(h + 8);
    const char *strings = (const char *)h + fdt_be32(h + 12);
    u64 size = fdt_be32(h + 36);
    u64 off = 0;
    int depth = 0;
    const char *names[FDT_MAX_DEPTH + 1] = {"", "", "", "", ""};
    while (off + 4 <= size) {
        u32 tok = fdt_be32(s + off);
        off += 4;
        if (tok == FDT_BEGIN_NODE) {
            const char *name = (const char *)s + off;
            u64 n = 0;
            while (off + n < size && name[n])
                n++;
            off = (off + n + 1 + 3) & ~3UL;
            depth++;
            if (depth <= FDT_MAX_DEPTH)
                names[depth] = name;
        } else if (tok == FDT_END_NODE) {
            depth--;
        } else if (tok == FDT_PROP) {
            if (off + 8 > size)
                return;
            u32 len = fdt_be32(s + off);
            if (depth >= 1 && depth <= FDT_MAX_DEPTH) {
                struct fdt_prop p;
                p.depth = depth;
                p.parent = names[depth - 1];
                p.node = names[depth];
                p.name = strings + fdt_be32(s + off + 4);
                p.val = s + off + 8;
                p.len = len;
                visit(ctx, &p);
            }
            off = (off + 8 + len + 3) & ~3UL;
        } else if (tok != FDT_NOP) {
            return;
        }
    }
}

/* What fdt_read found: bootargs (NULL without /chosen/bootargs) and the
   first memory node's reg (0 when absent). */
struct fdt_info {
    const char *bootargs;
    u64 ram_base, ram_size;
};

static inline void fdt_read_visit(void *ctx, const struct fdt_prop *p)
{
    struct fdt_info *info = ctx;
    if (p->depth != 2)
        return;
    if (fdt_streq(p->node, "chosen") && fdt_streq(p->name, "bootargs"))
        info->bootargs = (const char *)p->val;
    if (fdt_prefix(p->node, "memory") && !info->ram_size && fdt_streq(p->name, "reg") && p->len >= 16) {
        info->ram_base = fdt_be64(p->val);
        info->ram_size = fdt_be64(p->val + 8);
    }
}

/* /chosen/bootargs and the first /memory node's reg. Assumes
   #address-cells = #size-cells = 2 for /memory, as the virt board has. */
static inline struct fdt_info fdt_read(u64 dtb)
{
    struct fdt_info info = {0};
    fdt_walk(dtb, fdt_read_visit, &info);
    return info;
}

/* /chosen/bootargs of the tree at `dtb`, or "" when the tree, the node or
   the property is missing. */
static inline const char *fdt_bootargs(u64 dtb)
{
    const char *args = fdt_read(dtb).bootargs;
    return args ? args : "";
}

/* The value of the bootargs word "key=VALUE" (a pointer into the
   bootargs, ended by a space or NUL), or NULL without one. */
static inline const char *bootarg_value(const char *args, const char *key)
{
    if (!args)
        return 0;
    const char *p = args;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *w = p;
        const char *k = key;
        while (*k && *w == *k) {
            w++;
            k++;
        }
        if (!*k && *w == '=')
            return w + 1;
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

/* The value of the bootargs word "key=N" (decimal or 0x hex), or dflt. */
static inline u64 bootarg_u64(const char *args, const char *key, u64 dflt)
{
    const char *w = bootarg_value(args, key);
    if (!w)
        return dflt;
    u64 v = 0, base = 10;
    if (w[0] == '0' && (w[1] == 'x' || w[1] == 'X')) {
        base = 16;
        w += 2;
    }
    for (;; w++) {
        u64 d;
        if (*w >= '0' && *w <= '9')
            d = (u64)(*w - '0');
        else if (base == 16 && *w >= 'a' && *w <= 'f')
            d = (u64)(*w - 'a' + 10);
        else
            break;
        v = v * base + d;
    }
    return v;
}

/* Whether the bootargs word "key=A,B,..." lists `name`; true for every
   name when the word is absent. */
static inline int bootarg_selects(const char *args, const char *key, const char *name)
{
    const char *w = bootarg_value(args, key);
    if (!w)
        return 1;
    while (*w && *w != ' ') {
        const char *n = name;
        while (*n && *w == *n) {
            w++;
            n++;
        }
        if (!*n && (*w == ',' || *w == ' ' || !*w))
            return 1;
        while (*w && *w != ',' && *w != ' ')
            w++;
        if (*w == ',')
            w++;
    }
    return 0;
}

#endif
