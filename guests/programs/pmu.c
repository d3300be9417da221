/* pmu: the guest PMU as a kernel sees it, in the shape of kvm-unit-tests'
   arm/pmu.c subtests and the KVM selftest vpmu_counter_access, as
   PASS/FAIL/SKIP lines named "SUBTEST: what".

   /chosen/bootargs selects: a list of subtest names runs those (none:
   all of them); "nr-counters=K" makes vpmu-counter-access check that
   PMCR_EL0.N is K (the number the VMM set). Where a behaviour needs more
   counters than PMCR_EL0.N gives, or an event PMCEID does not advertise
   (QEMU has neither MEM_ACCESS nor CHAIN), the subtest says SKIP. */
#include "fdt.h"
#include "gic.h"
#include "runtime.h"

#define PMCR_E (1UL << 0)
#define PMCR_P (1UL << 1)
#define PMCR_C (1UL << 2)
#define PMCR_LC (1UL << 6)
#define PMCR_N(v) (((v) >> 11) & 0x1f)
#define CYCLE_BIT (1UL << 31)
#define FILTER_P (1UL << 31) /* PMEVTYPER/PMCCFILTR: EL1 not counted */
#define CCFILTR_SEL 31       /* PMSELR_EL0.SEL that selects PMCCFILTR_EL0 */

#define SW_INCR 0x00
#define INST_RETIRED 0x08
#define CPU_CYCLES 0x11
#define MEM_ACCESS 0x13
#define INST_SPEC 0x1b
#define CHAIN 0x1e
#define STALL_FRONTEND 0x23
#define STALL_BACKEND 0x24
#define PMUVER_V3P1 4

/* Preset values: 16 and 6 events before a 32-bit overflow, and every bit
   of the low half set (the odd half of a chain about to carry). */
#define PRE_OVERFLOW 0xfffffff0UL
#define PRE_OVERFLOW_SHORT 0xfffffffaUL
#define ALL_ONES 0xffffffffUL
#define LOW32(v) ((v) & 0xffffffffUL)

/* ---- PMEVCNTR<n>_EL0 and PMEVTYPER<n>_EL0 by number ---- */

#define EACH_COUNTER(M)                                                                            \
    M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15) M(16)   \
        M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30)

static u64 read_evcntr(u64 n)
{
    switch (n) {
#define CASE(i)                                                                                    \
    case i:                                                                                        \
        return read_sysreg(pmevcntr##i##_el0);
        EACH_COUNTER(CASE)
#undef CASE
    }
    return 0;
}

static void write_evcntr(u64 n, u64 v)
{
    switch (n) {
#define CASE(i)                                                                                    \
    case i:                                                                                        \
        write_sysreg(v, pmevcntr##i##_el0);                                                        \
        break;
        EACH_COUNTER(CASE)
#undef CASE
    }
}

static u64 read_evtyper(u64 n)
{
    switch (n) {
#define CASE(i)                                                                                    \
    case i:                                                                                        \
        return read_sysreg(pmevtyper##i##_el0);
        EACH_COUNTER(CASE)
#undef CASE
    }
    return 0;
}

static void write_evtyper(u64 n, u64 v)
{
    switch (n) {
#define CASE(i)                                                                                    \
    case i:                                                                                        \
        write_sysreg(v, pmevtyper##i##_el0);                                                       \
        break;
        EACH_COUNTER(CASE)
#undef CASE
    }
}

static u64 read_xevcntr(u64 n)
{
    write_sysreg(n, pmselr_el0);
    isb();
    return read_sysreg(pmxevcntr_el0);
}

static void write_xevcntr(u64 n, u64 v)
{
    write_sysreg(n, pmselr_el0);
    isb();
    write_sysreg(v, pmxevcntr_el0);
}

static u64 read_xevtyper(u64 n)
{
    write_sysreg(n, pmselr_el0);
    isb();
    return read_sysreg(pmxevtyper_el0);
}

static void write_xevtyper(u64 n, u64 v)
{
    write_sysreg(n, pmselr_el0);
    isb();
    write_sysreg(v, pmxevtyper_el0);
}

/* ---- state shared with the exception handlers ---- */

static u64 pmuver;             /* ID_AA64DFR0_EL1.PMUVer */
static u64 nr_counters;        /* PMCR_EL0.N */
static u64 implemented;        /* the PMCNTEN-style mask of counters that exist */
static volatile u64 undefs;    /* UNDEFINED exceptions taken while expected */
static volatile u64 expect_undef;
static volatile u64 irqs;      /* PMU interrupts taken */
static volatile u64 irq_bits;  /* the PMOVS bits they found, ORed */
static volatile u64 irq_other; /* of them, acknowledged with another INTID */
static u64 buffer[64] __attribute__((aligned(64)));

static void on_sync(u64 kind, struct frame *f)
{
    (void)f;
    u64 esr = read_sysreg(esr_el1);
    if (expect_undef && kind == 4 && (esr >> 26) == 0x00) {
        undefs++;
        write_sysreg(read_sysreg(elr_el1) + 4, elr_el1);
        return;
    }
    puts("unexpected synchronous exception: ESR_EL1 ");
    put_hex(esr);
    puts(" ELR_EL1 ");
    put_hex(read_sysreg(elr_el1));
    putc('\n');
    psci_system_off();
}

/* The PMU overflow interrupt, PPI INTID 23, a level (PMCR_EL0.E && PMOVS
   & PMINTEN): the GIC driver acknowledged it (`intid`), clearing the
   overflow flags drops the line, and the driver ends it. */
#define PMU_INTID 23
static void on_irq(u64 intid, struct frame *f)
{
    (void)f;
    irq_other += intid != PMU_INTID;
    u64 ovs = read_sysreg(pmovsclr_el0);
    write_sysreg(ovs, pmovsclr_el0);
    isb();
    irqs++;
    irq_bits |= ovs;
}

/* ---- measured code ---- */

/* Enables the PMU with `pmcr`, loads from `addr` `n` times, disables it:
   between the two writes the loop is all that runs. */
static void mem_access_loop(const void *addr, u64 n, u64 pmcr)
{
    asm volatile("msr pmcr_el0, %[pmcr]\n\t"
                 "isb\n\t"
                 "1: ldr x9, [%[addr]]\n\t"
                 "subs %[n], %[n], #1\n\t"
                 "b.gt 1b\n\t"
                 "msr pmcr_el0, xzr\n\t"
                 "isb"
                 : [n] "+r"(n)
                 : [addr] "r"(addr), [pmcr] "r"(pmcr)
                 : "x9", "memory", "cc");
}

/* The same with `n` iterations of arithmetic and no memory access. */
static void precise_loop(u64 n, u64 pmcr)
{
    asm volatile("msr pmcr_el0, %[pmcr]\n\t"
                 "isb\n\t"
                 "1: add x9, x9, #1\n\t"
                 "subs %[n], %[n], #1\n\t"
                 "b.gt 1b\n\t"
                 "msr pmcr_el0, xzr\n\t"
                 "isb"
                 : [n] "+r"(n)
                 : [pmcr] "r"(pmcr)
                 : "x9", "cc");
}

static void reset_pmu(void)
{
    write_sysreg(0UL, pmcr_el0);
    write_sysreg(~0UL, pmcntenclr_el0);
    write_sysreg(~0UL, pmintenclr_el1);
    write_sysreg(~0UL, pmovsclr_el0);
    write_sysreg(0UL, pmccfiltr_el0);
    for (u64 i = 0; i < nr_counters; i++) {
        write_evtyper(i, 0);
        write_evcntr(i, 0);
    }
    write_sysreg(PMCR_P | PMCR_C, pmcr_el0);
    write_sysreg(0UL, pmcr_el0);
    isb();
}

static int event_supported(u64 event)
{
    u64 reg = event < 0x20 ? read_sysreg(pmceid0_el0) : read_sysreg(pmceid1_el0);
    return (reg >> (event & 0x1f)) & 1;
}

static void skip(const char *name, const char *why)
{
    puts("SKIP: ");
    puts(name);
    puts(": ");
    puts(why);
    putc('\n');
}

/* Whether the subtest has `counters` event counters and PMCEID advertises
   `event` (-1: no event needed, `what` names it): says SKIP and returns 0
   when it cannot run. */
static int skipped; /* whether the last check of needs() said SKIP */

static int needs(const char *name, u64 counters, long event, const char *what)
{
    skipped = 1;
    if (nr_counters < counters) {
        skip(name, counters == 1 ? "no event counter" : "fewer event counters than it needs");
        return 0;
    }
    if (event >= 0 && !event_supported((u64)event)) {
        puts("SKIP: ");
        puts(name);
        puts(": PMCEID does not advertise ");
        puts(what);
        putc('\n');
        return 0;
    }
    skipped = 0;
    return 1;
}

/* The overflow width the counting subtests run at: 32 bits, then with
   FEAT_PMUv3p5 again at 64 bits through PMCR_EL0.LP, as kvm-unit-tests
   runs them. */
static int wide;
#define PMCR_LP (1UL << 7)
#define PMUVER_V3P5 6
#define HIGH32 0xffffffff00000000UL

/* A preset `v` below a 32-bit overflow moved below a 64-bit one. */
static u64 pre(u64 v)
{
    return wide ? v | HIGH32 : v;
}

/* A counter value as far as the overflow width counts it. */
static u64 val(u64 v)
{
    return wide ? v : LOW32(v);
}

static u64 lp(void)
{
    return wide ? PMCR_LP : 0;
}

/* `s`, marked when the subtest runs at 64 bits. */
static const char *named(const char *s)
{
    static char line[160];
    const char *tag = " (64-bit overflow)";
    u64 i = 0;
    while (*s && i < sizeof(line) - 20)
        line[i++] = *s++;
    if (wide)
        while (*tag)
            line[i++] = *tag++;
    line[i] = 0;
    return line;
}

/* Runs `t` at 32 bits and, where PMCR_EL0.LP exists, at 64 bits. */
static void both_widths(void (*t)(void))
{
    wide = 0;
    t();
    if (!skipped && pmuver >= PMUVER_V3P5 && pmuver != 0xf) {
        wide = 1;
        t();
        wide = 0;
    }
}

/* ---- kvm-unit-tests arm/pmu.c behaviours ---- */

static void test_cycle_counter(void)
{
    reset_pmu();
    write_sysreg(CYCLE_BIT, pmcntenset_el0);
    write_sysreg(PMCR_E | PMCR_LC, pmcr_el0);
    isb();
    u64 prev = read_sysreg(pmccntr_el0), rising = 1;
    for (int i = 0; i < 20; i++) {
        u64 c = read_sysreg(pmccntr_el0);
        rising &= c > prev;
        prev = c;
    }
    write_sysreg(0UL, pmcr_el0);
    isb();
    report(rising, "pmu-cycle-counter: PMCCNTR_EL0 rises between reads while enabled");

    u64 a = read_sysreg(pmccntr_el0);
    precise_loop(100, 0);
    u64 b = read_sysreg(pmccntr_el0);
    report(a == b && a != 0, "pmu-cycle-counter: PMCCNTR_EL0 holds still with PMCR_EL0.E clear");

    write_sysreg(PMCR_C, pmcr_el0);
    isb();
    report(read_sysreg(pmccntr_el0) == 0, "pmu-cycle-counter: PMCR_EL0.C resets PMCCNTR_EL0");

    /* Twice the loop takes more cycles than the loop. */
    precise_loop(100, PMCR_E | PMCR_LC | PMCR_C);
    u64 once = read_sysreg(pmccntr_el0);
    precise_loop(200, PMCR_E | PMCR_LC | PMCR_C);
    u64 twice = read_sysreg(pmccntr_el0);
    report(once >= 100 && twice > once, "pmu-cycle-counter: cycles grow with the work (100 and 200 iterations)");

    write_sysreg(FILTER_P, pmccfiltr_el0);
    precise_loop(100, PMCR_E | PMCR_LC | PMCR_C);
    u64 filtered = read_sysreg(pmccntr_el0);
    write_sysreg(0UL, pmccfiltr_el0);
    report(filtered == 0, "pmu-cycle-counter: PMCCFILTR_EL0.P stops counting at EL1");
    reset_pmu();
}

/* The events every PMUv3 implements, and from PMUv3p1 on the two stall
   events too. */
static void test_event_introspection(void)
{
    u64 ceid0 = read_sysreg(pmceid0_el0);
    report(event_supported(SW_INCR), "pmu-event-introspection: PMCEID0_EL0 advertises SW_INCR");
    report(event_supported(CPU_CYCLES), "pmu-event-introspection: PMCEID0_EL0 advertises CPU_CYCLES");
    report(event_supported(INST_RETIRED) || event_supported(INST_SPEC),
           "pmu-event-introspection: PMCEID0_EL0 advertises INST_RETIRED or INST_SPEC");
    if (pmuver >= PMUVER_V3P1)
        report(event_supported(STALL_FRONTEND) && event_supported(STALL_BACKEND),
               "pmu-event-introspection: PMCEID1_EL0 advertises STALL_FRONTEND and STALL_BACKEND (PMUv3p1)");
    puts("INFO: pmu-event-introspection: PMCEID0_EL0 ");
    put_hex(ceid0);
    puts(" PMCEID1_EL0 ");
    put_hex(read_sysreg(pmceid1_el0));
    puts(" MEM_ACCESS ");
    puts(event_supported(MEM_ACCESS) ? "yes" : "no");
    puts(" CHAIN ");
    puts(event_supported(CHAIN) ? "yes" : "no");
    putc('\n');
}

static void test_event_counter_config(void)
{
    const char *name = "pmu-event-counter-config";
    if (!needs(name, 1, -1, 0))
        return;
    reset_pmu();
    int ok = 1;
    for (u64 i = 0; i < nr_counters; i++) {
        u64 ev = (i & 1) ? CPU_CYCLES : INST_RETIRED;
        write_xevtyper(i, ev);
        ok &= read_evtyper(i) == ev && read_xevtyper(i) == ev;
    }
    report(ok, "pmu-event-counter-config: PMXEVTYPER_EL0 through PMSELR_EL0 is PMEVTYPER<n>_EL0");

    write_xevtyper(CCFILTR_SEL, FILTER_P);
    ok = read_sysreg(pmccfiltr_el0) == FILTER_P;
    write_sysreg(0UL, pmccfiltr_el0);
    ok &= read_xevtyper(CCFILTR_SEL) == 0;
    report(ok, "pmu-event-counter-config: PMSELR_EL0.SEL 31 selects PMCCFILTR_EL0");

    write_xevcntr(0, 0x1234);
    ok = read_evcntr(0) == 0x1234;
    write_evcntr(0, 0x4321);
    ok &= read_xevcntr(0) == 0x4321;
    report(ok, "pmu-event-counter-config: PMXEVCNTR_EL0 through PMSELR_EL0 is PMEVCNTR<n>_EL0");

    /* An event the PMU does not implement counts nothing. */
    u64 absent = 0;
    for (u64 e = 1; e < 0x20; e++)
        if (e != CHAIN && !event_supported(e)) {
            absent = e;
            break;
        }
    if (!absent) {
        skip(name, "PMCEID0_EL0 advertises every common event below 0x20");
    } else {
        reset_pmu();
        write_evtyper(0, absent);
        write_evcntr(0, 0);
        write_sysreg(1UL, pmcntenset_el0);
        mem_access_loop(buffer, 20, PMCR_E);
        report(read_evcntr(0) == 0, "pmu-event-counter-config: an event PMCEID does not advertise counts nothing");
    }
    reset_pmu();
}

static void test_basic_event_count(void)
{
    const char *name = "pmu-basic-event-count";
    if (!needs(name, 2, INST_RETIRED, "INST_RETIRED") || !needs(name, 2, CPU_CYCLES, "CPU_CYCLES"))
        return;
    reset_pmu();
    write_evtyper(0, INST_RETIRED);
    write_evtyper(1, CPU_CYCLES);
    write_evcntr(0, pre(PRE_OVERFLOW));
    write_evcntr(1, pre(PRE_OVERFLOW));

    /* The SET/CLR pairs read back the same set, only implemented bits. */
    write_sysreg(~0UL, pmcntenset_el0);
    int ok = read_sysreg(pmcntenset_el0) == implemented && read_sysreg(pmcntenclr_el0) == implemented;
    write_sysreg(~3UL, pmcntenclr_el0);
    ok &= read_sysreg(pmcntenset_el0) == 3 && read_sysreg(pmcntenclr_el0) == 3;
    report(ok, named("pmu-basic-event-count: PMCNTENSET/CLR_EL0 hold the implemented counters only"));
    write_sysreg(~0UL, pmintenset_el1);
    ok = read_sysreg(pmintenset_el1) == implemented;
    write_sysreg(~0UL, pmintenclr_el1);
    ok &= read_sysreg(pmintenclr_el1) == 0;
    report(ok, named("pmu-basic-event-count: PMINTENSET/CLR_EL1 hold the implemented counters only"));

    precise_loop(20, PMCR_E | lp());
    u64 c0 = read_evcntr(0), c1 = read_evcntr(1);
    report(val(c0) < PRE_OVERFLOW && val(c1) < PRE_OVERFLOW && val(c0) >= 40 - 16,
           named("pmu-basic-event-count: INST_RETIRED and CPU_CYCLES counted past their overflow"));
    report((read_sysreg(pmovsset_el0) & 3) == 3, named("pmu-basic-event-count: both overflows in PMOVSSET_EL0"));
    write_sysreg(3UL, pmovsclr_el0);
    report(read_sysreg(pmovsset_el0) == 0, named("pmu-basic-event-count: PMOVSCLR_EL0 clears them"));

    if (wide) {
        /* With PMCR_EL0.LP a counter carries past 2^32 without overflowing. */
        write_evcntr(0, PRE_OVERFLOW);
        precise_loop(20, PMCR_E | lp());
        u64 c = read_evcntr(0);
        report(c > 0xffffffffUL && c < 0x100000100UL && read_sysreg(pmovsset_el0) == 0,
               named("pmu-basic-event-count: PMCR_EL0.LP carries into bit 32 without an overflow"));
    }

    if (nr_counters > 2) {
        /* A counter left out of PMCNTENSET does not move. */
        write_evtyper(2, INST_RETIRED);
        write_evcntr(2, 7);
        precise_loop(20, PMCR_E | lp());
        report(read_evcntr(2) == 7, named("pmu-basic-event-count: a disabled counter does not count"));
    }
    reset_pmu();
}

static void test_mem_access(void)
{
    const char *name = "pmu-mem-access";
    if (!needs(name, 2, MEM_ACCESS, "MEM_ACCESS"))
        return;
    reset_pmu();
    write_evtyper(0, MEM_ACCESS);
    write_evtyper(1, MEM_ACCESS);
    write_sysreg(3UL, pmcntenset_el0);
    mem_access_loop(buffer, 20, PMCR_E | PMCR_P | lp());
    u64 c0 = read_evcntr(0), c1 = read_evcntr(1);
    report(c0 >= 20 && c1 >= 20 && c0 == c1 && read_sysreg(pmovsset_el0) == 0,
           named("pmu-mem-access: 20 loads count at least 20 on two counters alike, no overflow"));
    write_evcntr(0, pre(PRE_OVERFLOW_SHORT));
    write_evcntr(1, pre(PRE_OVERFLOW_SHORT));
    mem_access_loop(buffer, 20, PMCR_E | lp());
    report((read_sysreg(pmovsset_el0) & 3) == 3 && val(read_evcntr(0)) < 20,
           named("pmu-mem-access: both counters overflow 6 accesses after their preset"));
    reset_pmu();
}

static void test_mem_access_reliability(void)
{
    const char *name = "pmu-mem-access-reliability";
    if (!needs(name, 1, MEM_ACCESS, "MEM_ACCESS"))
        return;
    /* Ten runs of the same loop count the same, and the overflow comes at
       the run that carries the counter past 2^32 - 1, not before. */
    reset_pmu();
    write_evtyper(0, MEM_ACCESS);
    write_sysreg(1UL, pmcntenset_el0);
    mem_access_loop(buffer, 50, PMCR_E | PMCR_P);
    u64 per_run = read_evcntr(0);
    u64 start = 0x100000000UL - 5 * per_run - 1;
    write_evcntr(0, start);
    int same = 1, early = 0, late = 0;
    u64 prev = start;
    for (int run = 1; run <= 10; run++) {
        mem_access_loop(buffer, 50, PMCR_E);
        u64 now = read_evcntr(0);
        same &= LOW32(now - prev) == per_run;
        prev = now;
        u64 ovf = read_sysreg(pmovsset_el0) & 1;
        if (run <= 5 && ovf)
            early = 1;
        if (run == 6 && !ovf)
            late = 1;
    }
    report(per_run >= 50, "pmu-mem-access-reliability: 50 loads count at least 50");
    report(same, "pmu-mem-access-reliability: every run of the loop counts the same");
    report(!early && !late, "pmu-mem-access-reliability: the overflow comes exactly when the count wraps");
    reset_pmu();
}

static void sw_incr(u64 mask, int times)
{
    for (int i = 0; i < times; i++)
        write_sysreg(mask, pmswinc_el0);
    isb();
}

static void test_sw_incr(void)
{
    const char *name = "pmu-sw-incr";
    if (!needs(name, 2, -1, 0))
        return;
    reset_pmu();
    write_evtyper(0, SW_INCR);
    write_evtyper(1, SW_INCR);
    write_sysreg(3UL, pmcntenset_el0);
    write_evcntr(0, pre(PRE_OVERFLOW));
    sw_incr(3, 100);
    report(read_evcntr(0) == pre(PRE_OVERFLOW) && read_evcntr(1) == 0,
           named("pmu-sw-incr: PMSWINC_EL0 does nothing with PMCR_EL0.E clear"));
    write_sysreg(PMCR_E | lp(), pmcr_el0);
    isb();
    sw_incr(3, 100);
    write_sysreg(0UL, pmcr_el0);
    isb();
    report(val(read_evcntr(0)) == val(pre(PRE_OVERFLOW) + 100) && read_evcntr(1) == 100,
           named("pmu-sw-incr: 100 increments on two counters, one wrapping"));
    report(read_sysreg(pmovsset_el0) == 1, named("pmu-sw-incr: only the wrapped counter overflowed"));
    if (nr_counters > 2) {
        write_evtyper(2, SW_INCR);
        write_sysreg(PMCR_E | lp(), pmcr_el0);
        isb();
        sw_incr(4, 10);
        write_sysreg(0UL, pmcr_el0);
        isb();
        report(read_evcntr(2) == 0, named("pmu-sw-incr: a disabled counter ignores PMSWINC_EL0"));
    }
    reset_pmu();
}

static void test_chained_counters(void)
{
    const char *name = "pmu-chained-counters";
    if (!needs(name, 2, CHAIN, "CHAIN"))
        return;
    reset_pmu();
    write_evtyper(0, CPU_CYCLES);
    write_evtyper(1, CHAIN);
    write_evcntr(0, PRE_OVERFLOW);
    write_sysreg(3UL, pmcntenset_el0);
    precise_loop(20, PMCR_E);
    report(read_evcntr(1) == 1 && read_sysreg(pmovsset_el0) == 1,
           "pmu-chained-counters: the even counter's overflow increments the odd one");
    write_sysreg(~0UL, pmovsclr_el0);
    write_evcntr(0, PRE_OVERFLOW);
    write_evcntr(1, ALL_ONES);
    precise_loop(20, PMCR_E);
    report(LOW32(read_evcntr(1)) == 0 && read_sysreg(pmovsset_el0) == 3,
           "pmu-chained-counters: the odd counter wraps and overflows with the pair");
    reset_pmu();
}

static void test_chained_sw_incr(void)
{
    const char *name = "pmu-chained-sw-incr";
    if (!needs(name, 2, CHAIN, "CHAIN"))
        return;
    reset_pmu();
    write_evtyper(0, SW_INCR);
    write_evtyper(1, CHAIN);
    write_sysreg(3UL, pmcntenset_el0);
    write_evcntr(0, PRE_OVERFLOW);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    sw_incr(1, 100);
    write_sysreg(0UL, pmcr_el0);
    isb();
    report(LOW32(read_evcntr(0)) == LOW32(PRE_OVERFLOW + 100) && read_evcntr(1) == 1 &&
               read_sysreg(pmovsset_el0) == 1,
           "pmu-chained-sw-incr: the even counter wraps once, the odd one counts it");
    write_sysreg(~0UL, pmovsclr_el0);
    write_evcntr(0, PRE_OVERFLOW);
    write_evcntr(1, ALL_ONES);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    sw_incr(1, 100);
    write_sysreg(0UL, pmcr_el0);
    isb();
    report(LOW32(read_evcntr(1)) == 0 && read_sysreg(pmovsset_el0) == 3,
           "pmu-chained-sw-incr: the 64-bit pair overflows, both flags set");
    reset_pmu();
}

static void test_chain_promotion(void)
{
    const char *name = "pmu-chain-promotion";
    if (!needs(name, 2, CHAIN, "CHAIN") || !needs(name, 2, MEM_ACCESS, "MEM_ACCESS"))
        return;
    /* The odd counter of a pair counts nothing while it is disabled. */
    reset_pmu();
    write_evtyper(0, MEM_ACCESS);
    write_evtyper(1, CHAIN);
    write_evcntr(0, PRE_OVERFLOW_SHORT);
    write_sysreg(1UL, pmcntenset_el0);
    mem_access_loop(buffer, 20, PMCR_E);
    report(read_evcntr(1) == 0 && read_sysreg(pmovsset_el0) == 1,
           "pmu-chain-promotion: a disabled CHAIN counter ignores its even counter's overflow");

    /* Two independent counters, then the odd one made CHAIN. */
    reset_pmu();
    write_evtyper(0, MEM_ACCESS);
    write_evtyper(1, MEM_ACCESS);
    write_sysreg(3UL, pmcntenset_el0);
    mem_access_loop(buffer, 20, PMCR_E);
    u64 odd = read_evcntr(1);
    int ok = odd >= 20 && read_evcntr(0) == odd;
    write_evtyper(1, CHAIN);
    write_evcntr(0, PRE_OVERFLOW_SHORT);
    write_evcntr(1, 0);
    write_sysreg(~0UL, pmovsclr_el0);
    mem_access_loop(buffer, 20, PMCR_E);
    report(ok && read_evcntr(1) == 1 && read_sysreg(pmovsset_el0) == 1,
           "pmu-chain-promotion: an independent counter promoted to CHAIN counts the even one's overflow");

    /* And back: the odd counter counts its own event again. */
    write_evtyper(1, MEM_ACCESS);
    write_evcntr(0, 0);
    write_evcntr(1, 0);
    write_sysreg(~0UL, pmovsclr_el0);
    mem_access_loop(buffer, 20, PMCR_E);
    report(read_evcntr(1) >= 20 && read_evcntr(1) == read_evcntr(0),
           "pmu-chain-promotion: demoted from CHAIN, the odd counter counts MEM_ACCESS");
    reset_pmu();
}

/* Spins until a PMU interrupt has been taken or `n` rounds have passed. */
static void wait_for_irq(u64 n)
{
    while (n-- && !irqs)
        asm volatile("nop" ::: "memory");
}

static void test_overflow_interrupt(void)
{
    const char *name = "pmu-overflow-interrupt";
    if (!needs(name, 2, MEM_ACCESS, "MEM_ACCESS"))
        return;
    reset_pmu();
    irqs = irq_bits = irq_other = 0;
    u64 unhandled = gic_unhandled;
    write_evtyper(0, MEM_ACCESS);
    write_evtyper(1, MEM_ACCESS);
    write_sysreg(3UL, pmcntenset_el0);
    asm volatile("msr daifclr, #2" ::: "memory");

    write_evcntr(0, pre(PRE_OVERFLOW_SHORT));
    write_evcntr(1, pre(PRE_OVERFLOW_SHORT));
    mem_access_loop(buffer, 20, PMCR_E | lp());
    report(irqs == 0 && (read_sysreg(pmovsset_el0) & 3) == 3,
           named("pmu-overflow-interrupt: overflows with PMINTEN clear raise no interrupt"));

    write_sysreg(~0UL, pmovsclr_el0);
    write_sysreg(3UL, pmintenset_el1);
    write_evcntr(0, pre(PRE_OVERFLOW_SHORT));
    write_evcntr(1, pre(PRE_OVERFLOW_SHORT));
    isb();
    mem_access_loop(buffer, 20, PMCR_E | lp());
    report(irqs >= 1 && irq_bits == 3 && read_sysreg(pmovsset_el0) == 0,
           named("pmu-overflow-interrupt: both overflows interrupt, the handler clears PMOVS"));

    /* The line is a level: an overflow flag software sets raises it too,
       and only while PMCR_EL0.E is set. */
    irqs = irq_bits = 0;
    write_sysreg(0UL, pmcr_el0);
    write_sysreg(2UL, pmovsset_el0);
    isb();
    wait_for_irq(1000);
    int gated = irqs == 0 && read_sysreg(pmovsset_el0) == 2;
    write_sysreg(PMCR_E | lp(), pmcr_el0);
    isb();
    wait_for_irq(1000);
    write_sysreg(0UL, pmcr_el0);
    isb();
    report(gated && irqs == 1 && irq_bits == 2 && read_sysreg(pmovsset_el0) == 0,
           named("pmu-overflow-interrupt: a flag set in PMOVSSET_EL0 interrupts once PMCR_EL0.E is set"));

    /* A chained pair interrupts for the odd counter only when the 64-bit
       value overflows (at 32-bit overflow width, as kvm-unit-tests). */
    if (wide) {
        /* CHAIN pairs 32-bit halves: nothing to check at 64 bits. */
    } else if (event_supported(CHAIN)) {
        write_sysreg(1UL, pmintenclr_el1);
        write_evtyper(1, CHAIN);
        write_evcntr(0, pre(PRE_OVERFLOW_SHORT));
        write_evcntr(1, 0);
        isb();
        irqs = irq_bits = 0;
        mem_access_loop(buffer, 20, PMCR_E | lp());
        int ok = irqs == 0 && read_evcntr(1) == 1;
        write_sysreg(~0UL, pmovsclr_el0);
        write_evcntr(0, pre(PRE_OVERFLOW_SHORT));
        write_evcntr(1, ALL_ONES);
        isb();
        mem_access_loop(buffer, 20, PMCR_E | lp());
        report(ok && irqs >= 1 && (irq_bits & 2),
               named("pmu-overflow-interrupt: a chained pair interrupts only when the 64-bit value wraps"));
    } else {
        skip(name, "CHAIN is not implemented");
    }
    asm volatile("msr daifset, #2" ::: "memory");
    report(irq_other == 0 && gic_unhandled == unhandled,
           named("pmu-overflow-interrupt: every overflow interrupt is INTID 23 at the GIC"));
    reset_pmu();
}

/* ---- the KVM selftest vpmu_counter_access's behaviours ---- */

static int set_clr_pair(u64 bit, int which)
{
    u64 set, clr;
    switch (which) {
    case 0:
        write_sysreg(bit, pmcntenset_el0);
        set = read_sysreg(pmcntenset_el0);
        clr = read_sysreg(pmcntenclr_el0);
        if (!(set & bit) || !(clr & bit))
            return 0;
        write_sysreg(bit, pmcntenclr_el0);
        set = read_sysreg(pmcntenset_el0);
        clr = read_sysreg(pmcntenclr_el0);
        break;
    case 1:
        write_sysreg(bit, pmintenset_el1);
        set = read_sysreg(pmintenset_el1);
        clr = read_sysreg(pmintenclr_el1);
        if (!(set & bit) || !(clr & bit))
            return 0;
        write_sysreg(bit, pmintenclr_el1);
        set = read_sysreg(pmintenset_el1);
        clr = read_sysreg(pmintenclr_el1);
        break;
    default:
        write_sysreg(bit, pmovsset_el0);
        set = read_sysreg(pmovsset_el0);
        clr = read_sysreg(pmovsclr_el0);
        if (!(set & bit) || !(clr & bit))
            return 0;
        write_sysreg(bit, pmovsclr_el0);
        set = read_sysreg(pmovsset_el0);
        clr = read_sysreg(pmovsclr_el0);
        break;
    }
    return !(set & bit) && !(clr & bit);
}

static void test_counter_access(long expected_n)
{
    reset_pmu();
    if (expected_n >= 0)
        report(nr_counters == (u64)expected_n, "vpmu-counter-access: PMCR_EL0.N is the number the VMM set");

    int ok = 1;
    for (int which = 0; which < 3; which++) {
        for (u64 i = 0; i < nr_counters; i++)
            ok &= set_clr_pair(1UL << i, which);
        ok &= set_clr_pair(CYCLE_BIT, which);
    }
    report(ok, "vpmu-counter-access: PMCNTEN, PMINTEN and PMOVS SET/CLR pairs, every counter");

    /* The bits of counters above N are RAZ/WI in all six. */
    u64 absent = ~implemented & 0xffffffffUL;
    write_sysreg(absent, pmcntenset_el0);
    write_sysreg(absent, pmintenset_el1);
    write_sysreg(absent, pmovsset_el0);
    ok = !(read_sysreg(pmcntenset_el0) | read_sysreg(pmcntenclr_el0) | read_sysreg(pmintenset_el1) |
           read_sysreg(pmintenclr_el1) | read_sysreg(pmovsset_el0) | read_sysreg(pmovsclr_el0));
    report(ok, "vpmu-counter-access: SET/CLR bits of counters above N read as zero");

    ok = 1;
    for (u64 i = 0; i < nr_counters; i++) {
        u64 v = 0xcafe0000UL + i;
        write_evcntr(i, v);
        ok &= read_xevcntr(i) == v;
        write_xevcntr(i, v ^ 0xffff);
        ok &= read_evcntr(i) == (v ^ 0xffff);
        u64 ev = (i & 1) ? CPU_CYCLES | FILTER_P : INST_RETIRED;
        write_evtyper(i, ev);
        ok &= read_xevtyper(i) == ev;
        write_xevtyper(i, SW_INCR);
        ok &= read_evtyper(i) == SW_INCR;
    }
    report(ok, "vpmu-counter-access: PMEVCNTR/PMEVTYPER direct and through PMSELR_EL0 agree");

    /* Every counter above N is UNDEFINED, directly and through PMSELR. */
    u64 direct = 0, indirect = 0;
    expect_undef = 1;
    for (u64 i = nr_counters; i < 31; i++) {
        undefs = 0;
        (void)read_evcntr(i);
        write_evcntr(i, 1);
        (void)read_evtyper(i);
        write_evtyper(i, CPU_CYCLES);
        direct += undefs == 4;
        undefs = 0;
        write_sysreg(i, pmselr_el0);
        isb();
        (void)read_sysreg(pmxevcntr_el0);
        write_sysreg(1UL, pmxevcntr_el0);
        (void)read_sysreg(pmxevtyper_el0);
        write_sysreg(CPU_CYCLES, pmxevtyper_el0);
        indirect += undefs == 4;
    }
    expect_undef = 0;
    write_sysreg(0UL, pmselr_el0);
    if (nr_counters == 31) {
        skip("vpmu-counter-access", "all 31 counters are implemented");
    } else {
        report(direct == 31 - nr_counters, "vpmu-counter-access: PMEVCNTR/PMEVTYPER<n>_EL0 above N are UNDEFINED");
        report(indirect == 31 - nr_counters,
               "vpmu-counter-access: PMXEVCNTR/PMXEVTYPER_EL0 with PMSELR_EL0.SEL above N are UNDEFINED");
    }
    reset_pmu();
}

/* ---- selection ---- */

struct subtest {
    const char *name;
    void (*run)(void);
};

static long expected_counters = -1;
static void counter_access(void)
{
    test_counter_access(expected_counters);
}

static void wide_basic_event_count(void)
{
    both_widths(test_basic_event_count);
}
static void wide_mem_access(void)
{
    both_widths(test_mem_access);
}
static void wide_sw_incr(void)
{
    both_widths(test_sw_incr);
}
static void wide_overflow_interrupt(void)
{
    both_widths(test_overflow_interrupt);
}

static const struct subtest subtests[] = {
    {"pmu-cycle-counter", test_cycle_counter},
    {"pmu-event-introspection", test_event_introspection},
    {"pmu-event-counter-config", test_event_counter_config},
    {"pmu-basic-event-count", wide_basic_event_count},
    {"pmu-mem-access", wide_mem_access},
    {"pmu-mem-access-reliability", test_mem_access_reliability},
    {"pmu-sw-incr", wide_sw_incr},
    {"pmu-chained-counters", test_chained_counters},
    {"pmu-chained-sw-incr", test_chained_sw_incr},
    {"pmu-chain-promotion", test_chain_promotion},
    {"pmu-overflow-interrupt", wide_overflow_interrupt},
    {"vpmu-counter-access", counter_access},
};
#define NR_SUBTESTS (sizeof(subtests) / sizeof(subtests[0]))

/* Whether the word of `args` at `w` (ending at a space or NUL) is `s`. */
static int word_is(const char *w, const char *s)
{
    while (*s && *w == *s) {
        w++;
        s++;
    }
    return !*s && (*w == ' ' || *w == 0);
}

static int starts(const char *w, const char *s)
{
    while (*s && *w == *s) {
        w++;
        s++;
    }
    return !*s;
}

int main(u64 dtb)
{
    sync_handler = on_sync;
    gic_init_dist();
    if (!gic_init_cpu()) {
        puts("FAIL: pmu: no GIC redistributor for this CPU\n");
        return report_summary() + 1;
    }
    gic_request(PMU_INTID, on_irq);
    u64 dfr0 = read_sysreg(id_aa64dfr0_el1);
    pmuver = (dfr0 >> 8) & 0xf;
    if (pmuver == 0 || pmuver == 0xf) {
        skip("pmu", "no PMUv3 (ID_AA64DFR0_EL1.PMUVer)");
        return report_summary();
    }
    nr_counters = PMCR_N(read_sysreg(pmcr_el0));
    implemented = CYCLE_BIT | ((1UL << nr_counters) - 1);
    puts("INFO: pmu: PMUVer ");
    put_dec(pmuver);
    puts(", PMCR_EL0.N ");
    put_dec(nr_counters);
    putc('\n');

    const char *args = fdt_bootargs(dtb);
    int selected[NR_SUBTESTS] = {0}, any = 0;
    for (const char *w = args; *w;) {
        while (*w == ' ')
            w++;
        if (!*w)
            break;
        if (starts(w, "nr-counters=")) {
            long n = 0;
            for (const char *d = w + 12; *d >= '0' && *d <= '9'; d++)
                n = n * 10 + (*d - '0');
            expected_counters = n;
        } else {
            int known = 0;
            for (u64 i = 0; i < NR_SUBTESTS; i++)
                if (word_is(w, subtests[i].name)) {
                    selected[i] = 1;
                    any = known = 1;
                }
            if (!known) {
                puts("FAIL: pmu: unknown subtest in bootargs: ");
                while (*w && *w != ' ')
                    putc(*w++);
                putc('\n');
                return report_summary() + 1;
            }
        }
        while (*w && *w != ' ')
            w++;
    }
    for (u64 i = 0; i < NR_SUBTESTS; i++)
        if (!any || selected[i])
            subtests[i].run();
    return report_summary();
}
