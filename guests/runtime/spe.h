/* SPE for guest programs: the registers by encoding (ARM-FACTS §1), the
   barriers, and a record decoder (the packet format perf decodes,
   ARM-FACTS §3) that hands each record's fields to a callback.
   Header-only, so that only the programs that include it carry it. */
#ifndef HYPERPROF_GUEST_SPE_H
#define HYPERPROF_GUEST_SPE_H

#include "runtime.h"

#define PMSCR_EL1 "S3_0_C9_C9_0"
#define PMSICR_EL1 "S3_0_C9_C9_2"
#define PMSIRR_EL1 "S3_0_C9_C9_3"
#define PMSFCR_EL1 "S3_0_C9_C9_4"
#define PMSEVFR_EL1 "S3_0_C9_C9_5"
#define PMSLATFR_EL1 "S3_0_C9_C9_6"
#define PMSIDR_EL1 "S3_0_C9_C9_7"
#define PMSNEVFR_EL1 "S3_0_C9_C9_1"
#define PMBLIMITR_EL1 "S3_0_C9_C10_0"
#define PMBPTR_EL1 "S3_0_C9_C10_1"
#define PMBSR_EL1 "S3_0_C9_C10_3"
#define PMBIDR_EL1 "S3_0_C9_C10_7"

#define spe_rd(r) ({ u64 __v; asm volatile("mrs %0, " r : "=r"(__v) :: "memory"); __v; })
#define spe_wr(r, v) asm volatile("msr " r ", %0" : : "r"((u64)(v)) : "memory")
/* PSB CSYNC then DSB: the unit's records are in memory. */
#define spe_drain() asm volatile("hint #17; dsb nsh" ::: "memory")

/* PMSCR_EL1. */
#define PMSCR_E1SPE (1UL << 1)
#define PMSCR_CX (1UL << 3)
#define PMSCR_PA (1UL << 4)
#define PMSCR_TS (1UL << 5)
/* PMSFCR_EL1. */
#define PMSFCR_FE (1UL << 0)
#define PMSFCR_FT (1UL << 1)
#define PMSFCR_FL (1UL << 2)
#define PMSFCR_FNE (1UL << 3)
#define PMSFCR_B (1UL << 16)
#define PMSFCR_LD (1UL << 17)
#define PMSFCR_ST (1UL << 18)
/* PMBLIMITR_EL1. */
#define PMBLIMITR_E 1UL
#define PMBLIMITR_FM_DISCARD (2UL << 1)
/* PMBSR_EL1. */
#define PMBSR_EC(v) (((v) >> 26) & 0x3f)
#define PMBSR_DL (1UL << 19)
#define PMBSR_EA (1UL << 18)
#define PMBSR_S (1UL << 17)
#define PMBSR_COLL (1UL << 16)
#define PMBSR_MSS(v) ((v) & 0xffff)
#define PMBSR_EC_BUF 0x00
#define PMBSR_EC_FAULT_S1 0x24
#define PMBSR_EC_FAULT_S2 0x25

/* One decoded record: what the suite checks. */
struct spe_record {
    u64 pcs;          /* PC address packets */
    u64 pc;           /* the last one's address, bits [55:0] */
    u8 pc_el;         /* its exception level, bits [62:61] */
    u8 pc_ns;         /* its NS bit, 63 */
    u64 vas;          /* data virtual address packets */
    u64 va;           /* the last one's address */
    u64 pas;          /* data physical address packets */
    int has_op;       /* an operation type packet */
    u8 op_class;      /* its class, header bits [1:0]: 0 other, 1 load/store, 2 branch */
    u8 op_payload;
    int has_events;
    u64 events;
    int has_lat;      /* a total latency counter */
    u64 lat;
    u64 contexts;     /* CONTEXT packets */
    u8 context_index; /* the last one's: 0 CONTEXTIDR_EL1, 1 CONTEXTIDR_EL2 */
    u32 context;
    int timestamped;  /* ended by a TIMESTAMP packet (else by END) */
    u64 timestamp;
};

struct spe_decoded {
    u64 records;
    u64 bytes;  /* bytes consumed, padding included */
    int bad;    /* an unknown header or a packet cut short */
};

/* Zeroes n bytes (n a multiple of 8) without a call to memset, which the
   runtime does not have. */
static inline void spe_zero(void *p, u64 n)
{
    for (volatile u64 *w = p; n >= 8; n -= 8)
        *w++ = 0;
}

static inline u64 spe_le(const u8 *p, u64 n)
{
    u64 v = 0;
    for (u64 b = n; b > 0; b--)
        v = v << 8 | p[b - 1];
    return v;
}

/* Decodes [p, p + len); calls `each` at the end of every record. Stops at
   the first malformed packet (bad = 1) or a record cut short by the end. */
static inline struct spe_decoded spe_decode(const u8 *p, u64 len,
                                            void (*each)(const struct spe_record *r, void *ctx), void *ctx)
{
    struct spe_decoded d = {0};
    struct spe_record r;
    spe_zero(&r, sizeof(r));
    u64 i = 0;
    int open = 0;
    while (i < len) {
        u8 h = p[i];
        if (h == 0x00) {
            i++;
            continue;
        }
        open = 1;
        if (h == 0x01) {
            i++;
            d.records++;
            each(&r, ctx);
            spe_zero(&r, sizeof(r));
            open = 0;
            continue;
        }
        /* An extended header: its index bits extend the next header's. */
        u64 ext = 0, hl = 1;
        if ((h & 0xfc) == 0x20) {
            if (i + 1 >= len) {
                d.bad = 1;
                break;
            }
            ext = (u64)(h & 3) << 3;
            h = p[i + 1];
            hl = 2;
        }
        u64 size;
        if (h == 0x71)
            size = 8;
        else if ((h & 0xcf) == 0x42 || (h & 0xcf) == 0x43)
            size = 1UL << ((h >> 4) & 3);
        else if ((h & 0xfc) == 0x64)
            size = 4;
        else if ((h & 0xfc) == 0x48)
            size = 1;
        else if ((h & 0xf8) == 0xb0)
            size = 8;
        else if ((h & 0xf8) == 0x98)
            size = 2;
        else {
            d.bad = 1;
            break;
        }
        if (i + hl + size > len) {
            d.bad = 1;
            break;
        }
        const u8 *v = p + i + hl;
        u64 val = spe_le(v, size);
        if (h == 0x71) {
            r.timestamped = 1;
            r.timestamp = val;
            d.records++;
            each(&r, ctx);
            spe_zero(&r, sizeof(r));
            open = 0;
        } else if ((h & 0xcf) == 0x42) {
            r.has_events = 1;
            r.events = val;
        } else if ((h & 0xfc) == 0x64) {
            r.contexts++;
            r.context_index = h & 3;
            r.context = (u32)val;
        } else if ((h & 0xfc) == 0x48) {
            r.has_op = 1;
            r.op_class = h & 3;
            r.op_payload = (u8)val;
        } else if ((h & 0xf8) == 0xb0 && (ext | (h & 7)) == 0) {
            r.pcs++;
            r.pc = val & ((1UL << 56) - 1);
            r.pc_el = (val >> 61) & 3;
            r.pc_ns = val >> 63;
        } else if ((h & 0xf8) == 0xb0 && (ext | (h & 7)) == 2) {
            r.vas++;
            r.va = val;
        } else if ((h & 0xf8) == 0xb0 && (ext | (h & 7)) == 3) {
            r.pas++;
        } else if ((h & 0xf8) == 0x98 && (ext | (h & 7)) == 0) {
            r.has_lat = 1;
            r.lat = val;
        }
        i += hl + size;
    }
    if (open && !d.bad)
        d.bad = 1;
    d.bytes = i;
    return d;
}

#endif
