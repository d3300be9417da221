/* spesuite: the guest SPE suite, the behaviours of the kvm-unit-tests SPE
   tests as real code: introspection, the buffer, buffer management
   events through the guest's IRQ, the filters, DISCARD mode, timestamps
   and CONTEXTIDR packets. Every session profiles code in .text.loop with
   the guest's MMU on: its buffer goes through its own stage 1 and the
   hypervisor's stage 2.

   Bootargs (/chosen/bootargs): "spe.only=GROUP,..." runs only those groups
   (introspection, buffer, events, filters, discard, packets);
   "spe.max_buffer=BYTES" is the MaxBuffSize the VMM was given
   (hyperprof boot --spe-max-buffer). Without SPE (PMSVer 0, as on QEMU)
   it prints one SKIP line. */
#include "fdt.h"
#include "gic.h"
#include "runtime.h"
#include "spe.h"

#define HOLE_OFFSET (64UL << 20)
#define BLOCK (2UL << 20)
#define BUF_SIZE (64UL << 10)
#define PAGE 4096UL
#define INTERVAL 256
#define SENTINEL 0xa5

static u8 buf[BUF_SIZE] __attribute__((aligned(4096)));
/* 256 KiB read with a 64-byte stride: beyond the L1D, so loads refill. */
#define BIG_WORDS (32UL << 10)
/* Not static: the compiler must keep the workload's loads and stores. */
u64 big[BIG_WORDS];
u64 small[64];
volatile u64 sink;

static const char *bootargs;
static u64 ram_base, ram_size;
static u64 pmsver;

/* ---- The profiled code: everything sampled lies in .text.loop. ---- */

extern char __loop_start[], __loop_end[];

/* Loads, stores and branches (the loop's and a data-dependent one). */
__attribute__((noinline, section(".text.loop"))) static u64 workload(u64 rounds)
{
    u64 sum = 0;
    for (u64 r = 0; r < rounds; r++)
        for (u64 i = 0; i < 1024; i++) {
            u64 v = big[(i * 8 + r * 8192) % BIG_WORDS];
            if (v & 4)
                sum += v;
            else
                sum = (sum << 1) ^ v;
            small[i & 63] = sum;
        }
    return sum;
}

/* Samples EL1 with `pmscr` while `workload` runs; sampling starts and stops
   inside .text.loop. */
__attribute__((noinline, section(".text.loop"))) static u64 profile(u64 pmscr, u64 rounds)
{
    spe_wr(PMSCR_EL1, pmscr);
    isb();
    u64 sum = workload(rounds);
    spe_wr(PMSCR_EL1, 0);
    isb();
    sink = sum;
    return sum;
}

/* ---- Buffer sessions. ---- */

static void clear_buffer(void)
{
    for (u64 *w = (u64 *)buf; w < (u64 *)(buf + BUF_SIZE); w++)
        *w = SENTINEL * 0x0101010101010101UL;
}

/* Programs the sampling registers, PMBPTR and PMBLIMITR (the session
   starts with profile()). */
static void setup(u64 ptr, u64 limitr, u64 pmsfcr, u64 pmsevfr, u64 pmslatfr)
{
    spe_wr(PMBSR_EL1, 0);
    spe_wr(PMBPTR_EL1, ptr);
    spe_wr(PMBLIMITR_EL1, limitr);
    spe_wr(PMSFCR_EL1, pmsfcr);
    spe_wr(PMSEVFR_EL1, pmsevfr);
    spe_wr(PMSLATFR_EL1, pmslatfr);
    spe_wr(PMSIRR_EL1, INTERVAL);
    isb();
    spe_wr(PMSICR_EL1, 0);
    isb();
}

struct session {
    u64 ptr, pmbsr;
};

/* Drains and stops the buffer: what PMBPTR and PMBSR say. */
static struct session finish(void)
{
    struct session s;
    spe_drain();
    isb();
    s.ptr = spe_rd(PMBPTR_EL1);
    s.pmbsr = spe_rd(PMBSR_EL1);
    spe_wr(PMBLIMITR_EL1, 0);
    spe_wr(PMBSR_EL1, 0);
    isb();
    return s;
}

/* One session over the whole buffer with `pmscr` and the filters. */
static struct session session(u64 pmscr, u64 pmsfcr, u64 pmsevfr, u64 pmslatfr, u64 rounds)
{
    clear_buffer();
    setup((u64)buf, ((u64)buf + BUF_SIZE) | PMBLIMITR_E, pmsfcr, pmsevfr, pmslatfr);
    profile(pmscr, rounds);
    return finish();
}

/* What a pass over the records found. */
struct tally {
    u64 records, one_pc, pc_in_loop, pc_el1_ns;
    u64 vas, va_in_data, pas;
    u64 branch, load, store, with_op;
    u64 refill, lat_at_least, max_lat;
    u64 timestamped, ts_nonzero, ts_ordered, last_ts;
    u64 contexts, context_match;
    u64 minlat, context_want;
};

static void count(const struct spe_record *r, void *ctx)
{
    struct tally *t = ctx;
    t->records++;
    t->one_pc += r->pcs == 1;
    t->pc_in_loop += r->pc >= (u64)__loop_start && r->pc < (u64)__loop_end;
    t->pc_el1_ns += r->pcs == 1 && r->pc_el == 1 && r->pc_ns;
    t->vas += r->vas;
    t->va_in_data += r->vas == 1 && ((r->va >= (u64)big && r->va < (u64)&big[BIG_WORDS]) ||
                                     (r->va >= (u64)small && r->va < (u64)&small[64]));
    t->pas += r->pas;
    if (r->has_op) {
        t->with_op++;
        t->branch += r->op_class == 2;
        t->load += r->op_class == 1 && !(r->op_payload & 1);
        t->store += r->op_class == 1 && (r->op_payload & 1);
    }
    t->refill += r->has_events && (r->events >> 3 & 1);
    if (r->has_lat) {
        t->lat_at_least += r->lat >= t->minlat;
        if (r->lat > t->max_lat)
            t->max_lat = r->lat;
    }
    if (r->timestamped) {
        t->timestamped++;
        t->ts_nonzero += r->timestamp != 0;
        t->ts_ordered += r->timestamp >= t->last_ts;
        t->last_ts = r->timestamp;
    }
    if (r->contexts) {
        t->contexts++;
        t->context_match += r->contexts == 1 && r->context_index == 0 && r->context == t->context_want;
    }
}

/* Decodes what a session wrote into *t; nonzero when the bytes do not
   decode to whole records exactly up to PMBPTR. */
static int tally(struct tally *t, struct session s, u64 minlat, u64 context_want)
{
    spe_zero(t, sizeof(*t));
    t->minlat = minlat;
    t->context_want = context_want;
    u64 len = s.ptr - (u64)buf;
    if (s.ptr < (u64)buf || len > BUF_SIZE)
        return 1;
    struct spe_decoded d = spe_decode(buf, len, count, t);
    return d.bad || d.bytes != len;
}

static int all_pcs_in_loop(const struct tally *t)
{
    return t->records > 0 && t->one_pc == t->records && t->pc_in_loop == t->records;
}

/* ---- The guest's IRQ: PMBIRQ. ---- */

static volatile u64 irqs, irq_pmbsr, irq_pmbptr;
/* Return from the first IRQ without servicing it: the level stays high
   and the IRQ is taken again. */
static volatile int hold_first;
/* Buffer-full events to service by restarting the buffer at `buf`, as a
   driver wrapping its buffer does, before the handler stops it. */
static volatile u64 rearm, rearm_bad;

/* PMBIRQs acknowledged with another INTID than the SPE interrupt's. */
static volatile u64 irq_other;

/* PMBIRQ, PPI INTID 21, a level (the vCPU's PMBSR_EL1.S): the GIC driver
   acknowledged it (`intid`) and ends it when this returns, so one left
   unserviced is taken again. */
#define SPE_INTID 21
static void pmbirq(u64 intid, struct frame *f)
{
    (void)f;
    irq_other += intid != SPE_INTID;
    spe_drain();
    isb();
    u64 pmbsr = spe_rd(PMBSR_EL1);
    irqs++;
    if (irqs == 1) {
        irq_pmbsr = pmbsr;
        irq_pmbptr = spe_rd(PMBPTR_EL1);
        if (hold_first)
            return;
    }
    if (irqs <= rearm) {
        rearm_bad += !(pmbsr & PMBSR_S) || PMBSR_EC(pmbsr) != PMBSR_EC_BUF || PMBSR_MSS(pmbsr) != 1;
        spe_wr(PMBPTR_EL1, (u64)buf);
        spe_wr(PMBSR_EL1, 0);
        isb();
        return;
    }
    /* Stop the buffer, then clear the event: the line drops. */
    spe_wr(PMBLIMITR_EL1, 0);
    spe_wr(PMBSR_EL1, 0);
    isb();
}

static void irq_reset(void)
{
    irqs = irq_pmbsr = irq_pmbptr = rearm = rearm_bad = 0;
    hold_first = 0;
}

#define irq_unmask() asm volatile("msr daifclr, #2; isb" ::: "memory")
#define irq_mask() asm volatile("msr daifset, #2; isb" ::: "memory")

/* ---- Groups. ---- */

static int selected(const char *group)
{
    return bootarg_selects(bootargs, "spe.only", group);
}

/* An UNDEFINED exception the suite provoked: skip the instruction. */
static volatile u64 undefs;
static void on_sync(u64 kind, struct frame *f)
{
    (void)kind;
    (void)f;
    u64 esr = read_sysreg(esr_el1);
    if ((esr >> 26) != 0) {
        puts("unexpected synchronous exception: ESR_EL1 ");
        put_hex(esr);
        puts(" ELR_EL1 ");
        put_hex(read_sysreg(elr_el1));
        putc('\n');
        psci_system_off();
    }
    undefs++;
    write_sysreg(read_sysreg(elr_el1) + 4, elr_el1);
}

static void introspection(void)
{
    report(pmsver >= 1 && pmsver <= 6, "spe-introspection: ID_AA64DFR0_EL1.PMSVer names an SPE version");
    u64 want_ver = bootarg_u64(bootargs, "spe.pmsver", 0);
    if (want_ver)
        report(pmsver == want_ver, "spe-introspection: PMSVer is the version the VMM gave");

    u64 pmsidr = spe_rd(PMSIDR_EL1);
    u64 interval = (pmsidr >> 8) & 0xf;
    u64 maxsize = (pmsidr >> 12) & 0xf;
    u64 countsize = (pmsidr >> 16) & 0xf;
    report((pmsidr >> 33) == 0, "spe-introspection: PMSIDR_EL1 bits [63:33] are RES0");
    report((pmsidr & 7) == 7, "spe-introspection: PMSIDR_EL1 FE, FT and FL: every filter");
    report(interval == 0 || (interval >= 2 && interval <= 8),
           "spe-introspection: PMSIDR_EL1.Interval is a defined minimum");
    report(maxsize >= 6 && maxsize <= 11, "spe-introspection: PMSIDR_EL1.MaxSize is 64 bytes to 2 KiB");
    report(countsize == 2 || countsize == 3, "spe-introspection: PMSIDR_EL1.CountSize is 12 or 16 bits");
    report(((pmsidr >> 6) & 1) == (pmsver >= 3),
           "spe-introspection: PMSIDR_EL1.FnE present exactly from FEAT_SPEv1p2");

    u64 pmbidr = spe_rd(PMBIDR_EL1);
    u64 align = pmbidr & 0xf;
    report(!(pmbidr & (1UL << 4)), "spe-introspection: PMBIDR_EL1.P clear, the buffer is the guest's");
    report(align <= maxsize, "spe-introspection: PMBIDR_EL1.Align at most the record size");
    report((pmbidr >> 48) == 0, "spe-introspection: PMBIDR_EL1 bits [63:48] are RES0");
    u64 field = (pmbidr >> 32) & 0x3fff;
    u64 e = field >> 9, m = field & 0x1ff;
    u64 max = e == 0 ? m << 12 : (1UL << (9 + e + 11)) | (m << (e + 11));
    u64 want = bootarg_u64(bootargs, "spe.max_buffer", 0);
    /* MaxBuffSize comes with FEAT_SPEv1p5; below it the field is RES0. */
    report(max == 0 || pmsver >= 6, "spe-introspection: PMBIDR_EL1.MaxBuffSize only from FEAT_SPEv1p5");
    report(((pmsidr >> 7) & 1) == 0 || pmsver >= 5,
           "spe-introspection: PMSIDR_EL1.FDS only from FEAT_SPEv1p4");
    if (want)
        report(max == want, "spe-introspection: PMBIDR_EL1.MaxBuffSize is the size the VMM set");
    else
        report(max != 0, "spe-introspection: PMBIDR_EL1.MaxBuffSize names a limit");
    puts("INFO: spe-introspection: PMSVer ");
    put_dec(pmsver);
    puts(", PMSIDR_EL1 ");
    put_hex(pmsidr);
    puts(", PMBIDR_EL1 ");
    put_hex(pmbidr);
    puts(", MaxBuffSize ");
    put_dec(max);
    putc('\n');

    /* The ID registers are read-only: MSR to them is UNDEFINED. */
    undefs = 0;
    sync_handler = on_sync;
    spe_wr(PMSIDR_EL1, 0);
    spe_wr(PMBIDR_EL1, 0);
    sync_handler = 0;
    report(undefs == 2, "spe-introspection: writes to PMSIDR_EL1 and PMBIDR_EL1 are UNDEFINED");
}

static void buffer(void)
{
    int bad;
    /* KVM's reset values (the architecture resets only PMBLIMITR_EL1.E). */
    u64 regs[] = {
        spe_rd(PMBLIMITR_EL1), spe_rd(PMBPTR_EL1), spe_rd(PMBSR_EL1),
        spe_rd(PMSCR_EL1), spe_rd(PMSICR_EL1), spe_rd(PMSIRR_EL1),
        spe_rd(PMSFCR_EL1), spe_rd(PMSEVFR_EL1), spe_rd(PMSLATFR_EL1),
    };
    u64 nonzero = 0;
    for (u64 i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
        nonzero += regs[i] != 0;
    report(!(regs[0] & PMBLIMITR_E) && !(regs[3] & 3), "spe-buffer: after reset the buffer and sampling are off");
    report(nonzero == 0, "spe-buffer: after reset every buffer and sampling register reads 0");

    struct session s = session(PMSCR_E1SPE | PMSCR_PA, 0, 0, 0, 8);
    struct tally t;
    bad = tally(&t, s, 0, 0);
    u64 untouched = 0;
    for (u64 i = s.ptr - (u64)buf; !bad && i < BUF_SIZE; i++)
        untouched += buf[i] == SENTINEL;
    report(s.ptr > (u64)buf && s.ptr < (u64)buf + BUF_SIZE, "spe-buffer: PMBPTR_EL1 advances within the buffer");
    report(s.pmbsr == 0, "spe-buffer: PMBSR_EL1 stays clean");
    report(!bad && t.records > 0, "spe-buffer: the buffer fills with whole records up to PMBPTR_EL1");
    report(!bad && untouched == BUF_SIZE - (s.ptr - (u64)buf), "spe-buffer: nothing is written past PMBPTR_EL1");
    report(!bad && all_pcs_in_loop(&t), "spe-buffer: every record has one PC, in the profiled code");
    report(!bad && t.vas > 0 && t.va_in_data == t.vas, "spe-buffer: every sampled access's address lies in the workload's data");
    /* PMSCR_EL1.PA asks, but the hypervisor keeps PMSCR_EL2.PA clear: no
       host physical address reaches the guest. */
    report(!bad && t.pas == 0, "spe-buffer: no physical address packets with PMSCR_EL2.PA clear");
    report(!bad && t.pc_el1_ns == t.records, "spe-buffer: every PC packet says EL1, Non-secure");
    u64 count = spe_rd(PMSICR_EL1) & 0xffffffffUL;
    report(spe_rd(PMSIRR_EL1) == INTERVAL && count <= INTERVAL,
           "spe-buffer: PMSIRR_EL1 reads back, PMSICR_EL1.COUNT stays within the interval");
    puts("INFO: spe-buffer: ");
    put_dec(t.records);
    puts(" records, ");
    put_dec(s.ptr - (u64)buf);
    puts(" bytes\n");

    /* Neither a disabled buffer nor a clear E1SPE lets anything through. */
    clear_buffer();
    setup((u64)buf, (u64)buf + BUF_SIZE, 0, 0, 0);
    profile(PMSCR_E1SPE, 2);
    struct session off = finish();
    clear_buffer();
    setup((u64)buf, ((u64)buf + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
    profile(PMSCR_PA, 2);
    struct session el1_off = finish();
    report(off.ptr == (u64)buf && off.pmbsr == 0 && buf[0] == SENTINEL,
           "spe-buffer: with PMBLIMITR_EL1.E clear nothing is written");
    report(el1_off.ptr == (u64)buf && el1_off.pmbsr == 0 && buf[0] == SENTINEL,
           "spe-buffer: with PMSCR_EL1.E1SPE clear EL1 is not sampled");

    /* A session longer than the host's time slice: the vCPU is put, loaded
       again and moves to the other CPU while its buffer is live. */
    clear_buffer();
    setup((u64)buf, ((u64)buf + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
    spe_wr(PMSIRR_EL1, 16 * INTERVAL);
    isb();
    profile(PMSCR_E1SPE, 200);
    s = finish();
    bad = tally(&t, s, 0, 0);
    report(!bad && s.pmbsr == 0 && all_pcs_in_loop(&t) && t.records * 16 * INTERVAL > 200 * 1024 * 10,
           "spe-buffer: a session across vCPU put, load and migration stays whole");
}

static void events(void)
{
    int bad;
    gic_request(SPE_INTID, pmbirq);

    /* Buffer full: one page, sampled until the unit stops. */
    irq_reset();
    clear_buffer();
    u64 maxrec = 1UL << ((spe_rd(PMSIDR_EL1) >> 12) & 0xf);
    setup((u64)buf, ((u64)buf + PAGE) | PMBLIMITR_E, 0, 0, 0);
    irq_unmask();
    profile(PMSCR_E1SPE, 16);
    irq_mask();
    struct session s = finish();
    u64 st = irq_pmbsr;
    report(irqs == 1, "spe-events: buffer full raises PMBIRQ once");
    report((st & PMBSR_S) && PMBSR_EC(st) == PMBSR_EC_BUF && PMBSR_MSS(st) == 1 && !(st & (PMBSR_EA | PMBSR_DL)),
           "spe-events: buffer full: PMBSR_EL1 S=1 EC=BUF BSC=1");
    report(irq_pmbptr > (u64)buf + PAGE - maxrec && irq_pmbptr <= (u64)buf + PAGE,
           "spe-events: buffer full: PMBPTR_EL1 within a record of the limit");
    struct session full = {irq_pmbptr, 0};
    struct tally t;
    bad = tally(&t, full, 0, 0);
    report(!bad && all_pcs_in_loop(&t) && s.pmbsr == 0,
           "spe-events: buffer full: the records decode and the handler cleared PMBSR_EL1");

    /* A buffer larger than PMBIDR_EL1.MaxBuffSize (FEAT_SPEv1p5): a buffer
       management event, size (BSC 0b000100), before anything is written. */
    u64 field = (spe_rd(PMBIDR_EL1) >> 32) & 0x3fff;
    u64 e = field >> 9, m = field & 0x1ff;
    u64 max = e == 0 ? m << 12 : (1UL << (9 + e + 11)) | (m << (e + 11));
    if (max && (u64)buf + max + PAGE <= ram_base + ram_size) {
        irq_reset();
        setup((u64)buf, ((u64)buf + max + PAGE) | PMBLIMITR_E, 0, 0, 0);
        irq_unmask();
        profile(PMSCR_E1SPE, 2);
        irq_mask();
        finish();
        st = irq_pmbsr;
        report(irqs == 1 && (st & PMBSR_S) && PMBSR_EC(st) == PMBSR_EC_BUF && PMBSR_MSS(st) == 4 &&
                   irq_pmbptr == (u64)buf,
               "spe-events: a buffer beyond MaxBuffSize: S=1 EC=BUF BSC=size, nothing written");
    } else {
        puts("SKIP: spe-events: no MaxBuffSize to exceed\n");
    }

    /* Wrapping: the handler restarts the full buffer three times, then
       stops it at the fourth event. */
    irq_reset();
    rearm = 3;
    setup((u64)buf, ((u64)buf + PAGE) | PMBLIMITR_E, 0, 0, 0);
    irq_unmask();
    profile(PMSCR_E1SPE, 48);
    irq_mask();
    finish();
    report(irqs == 4 && rearm_bad == 0,
           "spe-events: a handler that restarts the full buffer gets the next buffer-full event");

    /* Stage-1 fault: the buffer over the block the guest's tables leave out. */
    irq_reset();
    u64 hole = ram_base + HOLE_OFFSET;
    setup(hole, (hole + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
    irq_unmask();
    profile(PMSCR_E1SPE, 2);
    irq_mask();
    finish();
    st = irq_pmbsr;
    report(irqs == 1 && (st & PMBSR_S) && PMBSR_EC(st) == PMBSR_EC_FAULT_S1,
           "spe-events: stage-1 fault: PMBIRQ with PMBSR_EL1 S=1 EC=FAULT_S1");
    /* Translation fault, level 2: the hole is a missing 2 MiB block. */
    report((PMBSR_MSS(st) & 0x3f) == 0x06 && !(st & PMBSR_EA),
           "spe-events: stage-1 fault: FSC is a level 2 translation fault");
    report(irq_pmbptr == hole, "spe-events: stage-1 fault: PMBPTR_EL1 holds the faulting address");

    /* The same hole after a mapped page. The hypervisor gives the unit a
       guest buffer only while all of it is pinned, and a buffer its own
       tables map only in part cannot be: the stage-1 fault of the hole is
       reported as the buffer is enabled, before any record, with PMBPTR_EL1
       where the guest left it. (On hardware the page would fill first and
       the fault come at the hole.) */
    irq_reset();
    setup(hole - PAGE, (hole + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
    irq_unmask();
    profile(PMSCR_E1SPE, 8);
    irq_mask();
    finish();
    st = irq_pmbsr;
    report(irqs == 1 && (st & PMBSR_S) && PMBSR_EC(st) == PMBSR_EC_FAULT_S1 && (PMBSR_MSS(st) & 0x3f) == 0x06 &&
               irq_pmbptr == hole - PAGE,
           "spe-events: stage-1 fault after a mapped page: reported at enable, PMBPTR_EL1 unmoved");

    /* A buffer outside the guest's RAM (its stage 1 maps it, stage 2 does
       not): an external abort. */
    irq_reset();
    u64 outside = ram_base + ram_size;
    if (ram_size + BLOCK <= (1UL << 30) && ram_size > HOLE_OFFSET + BLOCK) {
        setup(outside, (outside + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
        irq_unmask();
        profile(PMSCR_E1SPE, 2);
        irq_mask();
        finish();
        st = irq_pmbsr;
        report(irqs == 1 && (st & PMBSR_S) && (st & PMBSR_EA),
               "spe-events: buffer outside RAM: PMBIRQ with PMBSR_EL1 S=1 EA=1");
        report(irq_pmbptr == outside, "spe-events: buffer outside RAM: nothing written");
    } else {
        puts("SKIP: spe-events: buffer outside RAM: RAM reaches the end of the guest's 1 GiB table\n");
    }

    /* Software sets the service bit: the level-sensitive line is high
       until PMBSR_EL1.S is cleared, and no profiling happens meanwhile. */
    irq_reset();
    hold_first = 1;
    clear_buffer();
    setup((u64)buf, ((u64)buf + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
    u64 set = PMBSR_S | 1;
    spe_wr(PMBSR_EL1, set);
    isb();
    u64 readback = spe_rd(PMBSR_EL1);
    profile(PMSCR_E1SPE, 2);
    spe_drain();
    u64 ptr = spe_rd(PMBPTR_EL1);
    u64 before = irqs;
    irq_unmask();
    for (int i = 0; i < 100; i++)
        asm volatile("nop");
    irq_mask();
    u64 after = spe_rd(PMBSR_EL1);
    finish();
    report(readback == set, "spe-events: software-set PMBSR_EL1.S reads back");
    report(before == 0 && ptr == (u64)buf, "spe-events: with PMBSR_EL1.S set nothing is profiled");
    report(irqs == 2 && after == 0,
           "spe-events: software-set service: the IRQ is taken until PMBSR_EL1.S is cleared");

    /* Clearing S by hand (IRQs masked) gives the enabled buffer back. */
    irq_reset();
    clear_buffer();
    setup((u64)buf, ((u64)buf + BUF_SIZE) | PMBLIMITR_E, 0, 0, 0);
    spe_wr(PMBSR_EL1, PMBSR_S);
    isb();
    profile(PMSCR_E1SPE, 2);
    spe_wr(PMBSR_EL1, 0);
    isb();
    profile(PMSCR_E1SPE, 4);
    s = finish();
    bad = tally(&t, s, 0, 0);
    report(!bad && s.pmbsr == 0 && all_pcs_in_loop(&t) && irqs == 0,
           "spe-events: once PMBSR_EL1.S is cleared the buffer fills again");
    gic_disable(SPE_INTID);
    irq_reset();
    report(irq_other == 0 && gic_unhandled == 0 && gic_spurious == 0,
           "spe-events: every PMBIRQ is INTID 21 at the GIC");
}

static void filters(void)
{
    int bad;
    struct session all = session(PMSCR_E1SPE, 0, 0, 0, 8);
    struct tally t0;
    bad = tally(&t0, all, 0, 0);
    report(!bad && all_pcs_in_loop(&t0) && t0.branch && t0.load && t0.store && t0.refill,
           "spe-filters: unfiltered, the workload's branches, loads, stores and refills are sampled");

    static const struct {
        u64 type;
        const char *name;
    } types[] = {
        {PMSFCR_B, "spe-filters: PMSFCR_EL1.FT with B: only branches"},
        {PMSFCR_LD, "spe-filters: PMSFCR_EL1.FT with LD: only loads"},
        {PMSFCR_ST, "spe-filters: PMSFCR_EL1.FT with ST: only stores"},
    };
    for (int i = 0; i < 3; i++) {
        struct session s = session(PMSCR_E1SPE, PMSFCR_FT | types[i].type, 0, 0, 8);
        struct tally t;
        bad = tally(&t, s, 0, 0);
        u64 matching = types[i].type == PMSFCR_B ? t.branch : types[i].type == PMSFCR_LD ? t.load : t.store;
        report(!bad && s.pmbsr == 0 && all_pcs_in_loop(&t) && matching == t.records, types[i].name);
    }

    /* PMSEVFR_EL1.E[3]: L1D refill. */
    struct session s = session(PMSCR_E1SPE, PMSFCR_FE, 1UL << 3, 0, 8);
    struct tally t;
    bad = tally(&t, s, 0, 0);
    report(!bad && all_pcs_in_loop(&t) && t.refill == t.records && t.records < t0.records,
           "spe-filters: PMSFCR_EL1.FE with PMSEVFR_EL1 L1D-REFILL: only refills");

    /* FT selects the union of the types it names. */
    s = session(PMSCR_E1SPE, PMSFCR_FT | PMSFCR_B | PMSFCR_LD, 0, 0, 8);
    bad = tally(&t, s, 0, 0);
    report(!bad && all_pcs_in_loop(&t) && t.branch && t.load && t.branch + t.load == t.records,
           "spe-filters: PMSFCR_EL1.FT with B and LD: branches and loads, no stores");

    /* PMSNEVFR_EL1.E[3] (FEAT_SPE_FnE): records without an L1D refill. */
    if ((spe_rd(PMSIDR_EL1) >> 6) & 1) {
        spe_wr(PMSNEVFR_EL1, 1UL << 3);
        s = session(PMSCR_E1SPE, PMSFCR_FNE, 0, 0, 8);
        bad = tally(&t, s, 0, 0);
        spe_wr(PMSNEVFR_EL1, 0);
        report(!bad && all_pcs_in_loop(&t) && t.refill == 0 && t.records > 0 && t.records < t0.records,
               "spe-filters: PMSFCR_EL1.FnE with PMSNEVFR_EL1 L1D-REFILL: no refills");
    } else {
        puts("SKIP: spe-filters: PMSNEVFR_EL1 needs FEAT_SPE_FnE\n");
    }

    /* PMSLATFR_EL1.MINLAT: half the largest latency the unfiltered run saw. */
    u64 minlat = t0.max_lat / 2 + 1;
    s = session(PMSCR_E1SPE, PMSFCR_FL, 0, minlat, 8);
    bad = tally(&t, s, minlat, 0);
    report(!bad && all_pcs_in_loop(&t) && t.lat_at_least == t.records && t.records < t0.records,
           "spe-filters: PMSFCR_EL1.FL with PMSLATFR_EL1: only latencies at least MINLAT");
    puts("INFO: spe-filters: ");
    put_dec(t0.records);
    puts(" records unfiltered, MINLAT ");
    put_dec(minlat);
    puts(" keeps ");
    put_dec(t.records);
    putc('\n');
}

static void discard(void)
{
    if (pmsver < 3) {
        puts("SKIP: spe-discard: DISCARD mode needs FEAT_SPEv1p2\n");
        return;
    }
    irq_reset();
    gic_request(SPE_INTID, pmbirq);
    clear_buffer();
    setup((u64)buf, ((u64)buf + BUF_SIZE) | PMBLIMITR_FM_DISCARD | PMBLIMITR_E, 0, 0, 0);
    irq_unmask();
    profile(PMSCR_E1SPE, 8);
    irq_mask();
    struct session s = finish();
    gic_disable(SPE_INTID);
    u64 untouched = 0;
    for (u64 i = 0; i < BUF_SIZE; i++)
        untouched += buf[i] == SENTINEL;
    report(s.ptr == (u64)buf, "spe-discard: PMBPTR_EL1 does not move");
    report(untouched == BUF_SIZE, "spe-discard: no record is written");
    report(s.pmbsr == 0 && irqs == 0, "spe-discard: no buffer management event");
}

static void packets(void)
{
    int bad;
    struct session s = session(PMSCR_E1SPE, 0, 0, 0, 8);
    struct tally t;
    bad = tally(&t, s, 0, 0);
    report(!bad && t.records > 0 && t.timestamped == 0 && t.contexts == 0,
           "spe-packets: with TS and CX clear records end in END and carry no CONTEXT");

    s = session(PMSCR_E1SPE | PMSCR_TS, 0, 0, 0, 8);
    bad = tally(&t, s, 0, 0);
    report(!bad && all_pcs_in_loop(&t) && t.timestamped == t.records,
           "spe-packets: PMSCR_EL1.TS: every record ends in a timestamp");
    report(t.ts_nonzero == t.records && t.ts_ordered == t.records,
           "spe-packets: the timestamps are nonzero and never go back");

    u64 ctx = 0x5eed1234;
    write_sysreg(ctx, contextidr_el1);
    isb();
    s = session(PMSCR_E1SPE | PMSCR_CX, 0, 0, 0, 8);
    bad = tally(&t, s, 0, ctx);
    report(!bad && all_pcs_in_loop(&t) && t.contexts == t.records && t.context_match == t.records,
           "spe-packets: PMSCR_EL1.CX: every record carries CONTEXTIDR_EL1");
    write_sysreg(0, contextidr_el1);
    isb();
}

int main(u64 dtb)
{
    struct fdt_info info = fdt_read(dtb);
    bootargs = info.bootargs;
    ram_base = info.ram_size ? info.ram_base : 0x40000000UL;
    ram_size = info.ram_size ? info.ram_size : 128UL << 20;
    pmsver = (read_sysreg(id_aa64dfr0_el1) >> 32) & 0xf;
    if (!pmsver) {
        puts("SKIP: spe: no SPE (ID_AA64DFR0_EL1.PMSVer = 0)\n");
        return report_summary();
    }
    for (u64 i = 0; i < BIG_WORDS; i++)
        big[i] = i * 0x9e3779b97f4a7c15UL;
    /* RAM and, for the external-abort test, the block after it: mapped by
       stage 1, outside the VM's stage 2. */
    mmu_enable(ram_base, ram_size + BLOCK, ram_base + HOLE_OFFSET);
    gic_init_dist();
    if (!gic_init_cpu()) {
        puts("FAIL: spe: no GIC redistributor for this CPU\n");
        return report_summary() + 1;
    }
    if (selected("buffer"))
        buffer();
    if (selected("introspection"))
        introspection();
    if (selected("events"))
        events();
    if (selected("filters"))
        filters();
    if (selected("discard"))
        discard();
    if (selected("packets"))
        packets();
    return report_summary();
}
