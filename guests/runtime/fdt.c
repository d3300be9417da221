/* Finds /chosen/bootargs in a flattened device tree (version 17): the
   structure block is a token stream, FDT_BEGIN_NODE (name, padded to 4
   bytes), FDT_PROP (length, name offset into the strings block, value,
   padded), FDT_END_NODE, FDT_NOP, FDT_END; every field big-endian. */
#include "fdt.h"

#define FDT_MAGIC 0xd00dfeedu
#define FDT_BEGIN_NODE 1u
#define FDT_END_NODE 2u
#define FDT_PROP 3u
#define FDT_NOP 4u
#define FDT_END 9u

static u32 be32(const u8 *p)
{
    return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static u64 strnlen_bounded(const char *s, u64 max)
{
    u64 n = 0;
    while (n < max && s[n])
        n++;
    return n;
}

const char *fdt_bootargs(u64 dtb)
{
    const u8 *h = (const u8 *)dtb;
    if (!dtb || (dtb & 3) || be32(h) != FDT_MAGIC)
        return "";
    u32 total = be32(h + 4);
    u32 off_struct = be32(h + 8), off_strings = be32(h + 12);
    u32 size_strings = be32(h + 32), size_struct = be32(h + 36);
    if (off_struct >= total || size_struct > total - off_struct || off_strings >= total ||
        size_strings > total - off_strings)
        return "";
    const u8 *s = h + off_struct, *end = s + size_struct;
    const char *strings = (const char *)(h + off_strings);
    int depth = 0, in_chosen = 0;
    while (s + 4 <= end) {
        u32 token = be32(s);
        s += 4;
        if (token == FDT_BEGIN_NODE) {
            const char *name = (const char *)s;
            u64 len = strnlen_bounded(name, (u64)(end - s));
            depth++;
            if (depth == 2 && same(name, "chosen"))
                in_chosen = 1;
            s += (len + 4) & ~3UL;
        } else if (token == FDT_END_NODE) {
            if (depth == 2)
                in_chosen = 0;
            depth--;
        } else if (token == FDT_PROP) {
            if (s + 8 > end)
                return "";
            u32 len = be32(s), nameoff = be32(s + 4);
            s += 8;
            if (len > (u64)(end - s) || nameoff >= size_strings)
                return "";
            if (in_chosen && depth == 2 && same(strings + nameoff, "bootargs") && len > 0 &&
                s[len - 1] == 0)
                return (const char *)s;
            s += (len + 3) & ~3UL;
        } else if (token == FDT_END) {
            break;
        } else if (token != FDT_NOP) {
            break;
        }
    }
    return "";
}
