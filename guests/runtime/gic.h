/* The guests' GICv3 driver: the distributor (affinity routing, Group 1
   enabled), this CPU's redistributor (found by its GICR_TYPER affinity,
   woken through GICR_WAKER), SGI/PPI enables, priorities and pending
   state, the CPU interface through its system registers (ICC_SRE_EL1,
   ICC_PMR_EL1, ICC_BPR1_EL1, ICC_CTLR_EL1, ICC_IGRPEN1_EL1) and an IRQ
   handler that acknowledges with ICC_IAR1_EL1, calls the handler of the
   INTID and ends it with ICC_EOIR1_EL1. At QEMU virt's addresses, which
   hyperprof's board shares. Header-only, like spe.h: only the programs
   that take interrupts include it. */
#ifndef HYPERPROF_GUEST_GIC_H
#define HYPERPROF_GUEST_GIC_H

#include "runtime.h"

#define GICD_BASE 0x08000000UL
#define GICR_BASE 0x080A0000UL
#define GICR_STRIDE 0x20000UL
#define GICR_SGI_FRAME 0x10000UL

/* Distributor. */
#define GICD_CTLR 0x0000
#define GICD_TYPER 0x0004
#define GICD_IIDR 0x0008
#define GICD_PIDR2 0xFFE8
#define GICD_CTLR_ENABLE_GRP1 (1u << 1)
#define GICD_CTLR_ARE (1u << 4)
#define GICD_CTLR_RWP (1u << 31)

/* Redistributor: RD frame, then the SGI frame's registers. */
#define GICR_CTLR 0x0000
#define GICR_TYPER 0x0008
#define GICR_WAKER 0x0014
#define GICR_CTLR_RWP (1u << 3)
#define GICR_TYPER_LAST (1u << 4)
#define GICR_WAKER_PROCESSOR_SLEEP (1u << 1)
#define GICR_WAKER_CHILDREN_ASLEEP (1u << 2)
#define GICR_IGROUPR0 0x0080
#define GICR_ISENABLER0 0x0100
#define GICR_ICENABLER0 0x0180
#define GICR_ISPENDR0 0x0200
#define GICR_ICPENDR0 0x0280
#define GICR_ISACTIVER0 0x0300
#define GICR_ICACTIVER0 0x0380
#define GICR_IPRIORITYR 0x0400

/* The CPU interface's system registers, by encoding. */
#define ICC_PMR_EL1 S3_0_C4_C6_0
#define ICC_IAR1_EL1 S3_0_C12_C12_0
#define ICC_EOIR1_EL1 S3_0_C12_C12_1
#define ICC_HPPIR1_EL1 S3_0_C12_C12_2
#define ICC_BPR1_EL1 S3_0_C12_C12_3
#define ICC_CTLR_EL1 S3_0_C12_C12_4
#define ICC_SRE_EL1 S3_0_C12_C12_5
#define ICC_IGRPEN1_EL1 S3_0_C12_C12_7
#define ICC_RPR_EL1 S3_0_C12_C11_3
#define ICC_SGI1R_EL1 S3_0_C12_C11_5

#define GIC_SPURIOUS 1023
/* The priority every SGI and PPI starts at, and the mask that lets it in
   (multiples of 16: four priority bits are enough). */
#define GIC_DEFAULT_PRIORITY 0xA0
#define GIC_DEFAULT_PMR 0xF0

/* MMIO through single loads and stores with a register base, which a
   hypervisor can emulate from the syndrome. */
static inline u32 gic_rd(u64 addr)
{
    u32 v;
    asm volatile("ldr %w0, [%1]" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

static inline u64 gic_rd64(u64 addr)
{
    u64 v;
    asm volatile("ldr %0, [%1]" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

static inline void gic_wr(u64 addr, u32 v)
{
    asm volatile("str %w0, [%1]" : : "r"(v), "r"(addr) : "memory");
}

static inline void gic_wr8(u64 addr, u8 v)
{
    asm volatile("strb %w0, [%1]" : : "r"((u32)v), "r"(addr) : "memory");
}

/* Each CPU's redistributor (its RD frame), by MPIDR_EL1.Aff0. */
static u64 gic_rd_bases[16];

/* Handlers by INTID (SGIs and PPIs), called with the INTID as `kind`. */
static handler_fn gic_handlers[32];
/* Acknowledges that returned 1023, and INTIDs nobody handles. */
static volatile u64 gic_spurious, gic_unhandled;

/* This CPU's redistributor. */
static inline u64 gic_rd_base(void)
{
    return gic_rd_bases[read_sysreg(mpidr_el1) & 0xF];
}

static inline u64 gic_sgi_base(void)
{
    return gic_rd_base() + GICR_SGI_FRAME;
}

static inline void gic_wait_rwp(u64 ctlr, u32 bit)
{
    for (u64 n = 0; n < 1000000 && (gic_rd(ctlr) & bit); n++)
        ;
}

/* The distributor: affinity routing and Group 1 on. Once, by any CPU. */
static inline void gic_init_dist(void)
{
    gic_wr(GICD_BASE + GICD_CTLR, 0);
    gic_wait_rwp(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP);
    gic_wr(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
    gic_wait_rwp(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP);
}

/* The packed affinity Aff3.Aff2.Aff1.Aff0 of an MPIDR_EL1 value, as
   GICR_TYPER[63:32] holds it. */
static inline u32 gic_affinity(u64 mpidr)
{
    return (u32)(mpidr & 0xFFFFFF) | (u32)((mpidr >> 32) & 0xFF) << 24;
}

/* Finds this CPU's redistributor, wakes it, puts its SGIs and PPIs in
   Group 1 at the default priority, disabled and not pending, and turns
   the CPU interface on. Returns 0 when no redistributor matches. */
static inline int gic_init_cpu(void)
{
    u64 mpidr = read_sysreg(mpidr_el1);
    u32 me = gic_affinity(mpidr);
    u64 base = 0;
    for (u64 rd = GICR_BASE;; rd += GICR_STRIDE) {
        u64 typer = gic_rd64(rd + GICR_TYPER);
        if ((u32)(typer >> 32) == me) {
            base = rd;
            break;
        }
        if (typer & GICR_TYPER_LAST)
            return 0;
    }
    gic_rd_bases[mpidr & 0xF] = base;
    u32 waker = gic_rd(base + GICR_WAKER);
    gic_wr(base + GICR_WAKER, waker & ~GICR_WAKER_PROCESSOR_SLEEP);
    for (u64 n = 0; n < 1000000 && (gic_rd(base + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP); n++)
        ;
    u64 sgi = gic_sgi_base();
    gic_wr(sgi + GICR_IGROUPR0, ~0u);
    gic_wr(sgi + GICR_ICENABLER0, ~0u);
    gic_wr(sgi + GICR_ICPENDR0, ~0u);
    gic_wr(sgi + GICR_ICACTIVER0, ~0u);
    for (int i = 0; i < 8; i++)
        gic_wr(sgi + GICR_IPRIORITYR + 4 * i, GIC_DEFAULT_PRIORITY * 0x01010101u);
    gic_wait_rwp(base + GICR_CTLR, GICR_CTLR_RWP);

    write_sysreg(read_sysreg(ICC_SRE_EL1) | 1, ICC_SRE_EL1);
    isb();
    write_sysreg(GIC_DEFAULT_PMR, ICC_PMR_EL1);
    write_sysreg(0, ICC_BPR1_EL1);
    write_sysreg(0, ICC_CTLR_EL1); /* EOImode 0: EOIR also deactivates */
    write_sysreg(1, ICC_IGRPEN1_EL1);
    isb();
    return 1;
}

static inline void gic_enable(u32 intid)
{
    gic_wr(gic_sgi_base() + GICR_ISENABLER0, 1u << intid);
}

static inline void gic_disable(u32 intid)
{
    gic_wr(gic_sgi_base() + GICR_ICENABLER0, 1u << intid);
    gic_wait_rwp(gic_rd_base() + GICR_CTLR, GICR_CTLR_RWP);
}

static inline void gic_set_priority(u32 intid, u8 priority)
{
    gic_wr8(gic_sgi_base() + GICR_IPRIORITYR + intid, priority);
}

static inline void gic_set_pending(u32 intid)
{
    gic_wr(gic_sgi_base() + GICR_ISPENDR0, 1u << intid);
}

static inline void gic_clear_pending(u32 intid)
{
    gic_wr(gic_sgi_base() + GICR_ICPENDR0, 1u << intid);
}

static inline int gic_pending(u32 intid)
{
    return (gic_rd(gic_sgi_base() + GICR_ISPENDR0) >> intid) & 1;
}

static inline int gic_active(u32 intid)
{
    return (gic_rd(gic_sgi_base() + GICR_ISACTIVER0) >> intid) & 1;
}

/* SGI `intid` to the CPU with affinity `mpidr` (TargetList in its
   Aff3.Aff2.Aff1 cluster). */
static inline void gic_send_sgi(u32 intid, u64 mpidr)
{
    u64 v = (u64)intid << 24 | ((mpidr >> 8) & 0xFF) << 16 | ((mpidr >> 16) & 0xFF) << 32 |
            ((mpidr >> 32) & 0xFF) << 48 | 1UL << (mpidr & 0xF);
    write_sysreg(v, ICC_SGI1R_EL1);
    isb();
}

/* The IRQ vector's handler: acknowledge, dispatch, end. */
static inline void gic_irq(u64 kind, struct frame *f)
{
    (void)kind;
    u32 intid = (u32)read_sysreg(ICC_IAR1_EL1) & 0xFFFFFF;
    if (intid >= 1020) {
        gic_spurious++;
        return;
    }
    if (intid < 32 && gic_handlers[intid])
        gic_handlers[intid](intid, f);
    else
        gic_unhandled++;
    write_sysreg(intid, ICC_EOIR1_EL1);
}

/* Takes INTID `intid` (an SGI or PPI) into `h` and enables it. */
static inline void gic_request(u32 intid, handler_fn h)
{
    gic_handlers[intid] = h;
    irq_handler = gic_irq;
    gic_enable(intid);
}

#endif
