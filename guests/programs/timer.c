/* timer: the Generic Timer as a guest kernel sees it, in the shape of
   kvm-unit-tests' arm/timer.c, as PASS/FAIL lines named "SUBTEST: what".

   Polled subtests run everywhere (QEMU's virt board too): the frequency,
   the counters, TVAL, ISTATUS, the physical timer and CNTKCTL_EL1's EL0
   controls. The interrupt subtests take the timers' PPIs (27 virtual, 30
   physical) through the GIC (gic.h). They run only with the bootarg
   "irq=1" (hyperprof's tests pass it): their deadlines are in ticks of a
   1 GHz counter, which older QEMUs do not have.

   Bootargs: "cntfrq=N" checks CNTFRQ_EL0 is N; "irq=1" adds the
   interrupt and WFI subtests; "wedge=1" ends in WFI with every interrupt
   source off, "wedge=2" with the timer armed but masked (IMASK), so the
   VMM can show what a wedged guest gets. */
#include "fdt.h"
#include "runtime.h"
#include "gic.h"
#include "timer.h"

#define EL0_EXIT 0xe0
#define EC_SYS64 0x18
#define LOOP 10000
/* Bound on every wait, in polls: far beyond any deadline set here. */
#define PATIENCE 50000000UL

void run_el0(void (*fn)(void), u64 stack_top);
extern char el0_exit[];

static volatile u64 vtimer_irqs, ptimer_irqs, other_irqs, irq_count, irq_cval;
static volatile u64 el0_traps, el0_trap_esr, el0_value;
static u64 el0_stack[512] __attribute__((aligned(16)));

#define VTIMER_PPI 27
#define PTIMER_PPI 30

/* The timers' interrupts: note when one came and disarm its timer with
   IMASK, as Linux's timer handler does; anything else is unexpected. */
static void on_irq(u64 kind, struct frame *f)
{
    (void)kind;
    (void)f;
    u64 firing = CNT_CTL_ENABLE | CNT_CTL_ISTATUS;
    u64 ctl = vtimer_ctl();
    if ((ctl & (firing | CNT_CTL_IMASK)) == firing) {
        irq_count = read_sysreg(cntvct_el0);
        irq_cval = vtimer_cval();
        vtimer_set_ctl(ctl | CNT_CTL_IMASK);
        vtimer_irqs++;
        return;
    }
    ctl = ptimer_ctl();
    if ((ctl & (firing | CNT_CTL_IMASK)) == firing) {
        irq_count = read_sysreg(cntpct_el0);
        irq_cval = read_sysreg(cntp_cval_el0);
        ptimer_set_ctl(ctl | CNT_CTL_IMASK);
        ptimer_irqs++;
        return;
    }
    other_irqs++;
}

/* EL0's system register traps come back here (EC 0x18: skip the access);
   its SVC #EL0_EXIT returns to the kernel. */
static void on_sync(u64 kind, struct frame *f)
{
    (void)f;
    u64 esr = read_sysreg(esr_el1);
    u64 ec = esr >> 26;
    if (kind == 8 && ec == 0x15 && (esr & 0xffff) == EL0_EXIT) {
        write_sysreg((u64)el0_exit, elr_el1);
        write_sysreg(0x3c5UL, spsr_el1);
        return;
    }
    if (kind == 8 && ec == EC_SYS64) {
        el0_traps++;
        el0_trap_esr = esr;
        write_sysreg(read_sysreg(elr_el1) + 4, elr_el1);
        return;
    }
    puts("unexpected synchronous exception: vector ");
    put_dec(kind);
    puts(" ESR_EL1 ");
    put_hex(esr);
    puts(" ELR_EL1 ");
    put_hex(read_sysreg(elr_el1));
    putc('\n');
    psci_system_off();
}

static void loop(u64 n)
{
    for (u64 i = 0; i < n; i++)
        asm volatile("" ::: "memory");
}

/* Polls until the virtual count reaches `when`; whether it did. */
static int wait_until(u64 when)
{
    for (u64 n = 0; n < PATIENCE; n++)
        if (cntvct() >= when)
            return 1;
    return 0;
}

/* Polls `ctl` until ISTATUS is set; whether it was. (QEMU updates
   ISTATUS from a host timer of its own, a moment after the count has
   passed the compare value; silicon and hyperprof have it at once.) */
static int wait_istatus(u64 (*ctl)(void))
{
    for (u64 n = 0; n < PATIENCE; n++)
        if (ctl() & CNT_CTL_ISTATUS)
            return 1;
    return 0;
}

static void test_cntfrq(const char *args)
{
    u64 f = cntfrq();
    puts("INFO: timer: CNTFRQ_EL0 ");
    put_dec(f);
    putc('\n');
    report(f != 0, "timer-cntfrq: CNTFRQ_EL0 is not zero");
    u64 want = bootarg_u64(args, "cntfrq", 0);
    if (want)
        report(f == want, "timer-cntfrq: CNTFRQ_EL0 is the documented frequency");
}

static void test_counters(void)
{
    int mono = 1;
    u64 last = cntvct();
    for (int i = 0; i < 1000; i++) {
        u64 now = cntvct();
        mono &= now >= last;
        last = now;
    }
    report(mono, "timer-counter: CNTVCT_EL0 never goes back");
    mono = 1;
    last = cntpct();
    for (int i = 0; i < 1000; i++) {
        u64 now = cntpct();
        mono &= now >= last;
        last = now;
    }
    report(mono, "timer-counter: CNTPCT_EL0 never goes back");
    u64 before = cntvct();
    loop(LOOP);
    u64 after = cntvct();
    report(after > before, "timer-counter: CNTVCT_EL0 advances while code runs");
}

/* Extra checks of the counter's rate where the machine's clock is its
   cycle count (hyperprof: one tick per cycle, at least one cycle per
   instruction). */
static void test_counter_rate(void)
{
    u64 before = cntvct();
    loop(LOOP);
    u64 after = cntvct();
    report(after - before >= LOOP, "timer-counter: at least one tick per instruction");
}

static void test_tval(void)
{
    vtimer_set_ctl(CNT_CTL_IMASK);
    vtimer_set_tval(0x10000000UL);
    u64 t1 = vtimer_tval();
    loop(100);
    u64 t2 = vtimer_tval();
    report(t1 <= 0x10000000UL && t2 < t1, "vtimer-tval: TVAL counts down");
    u64 now = cntvct();
    u64 cval = vtimer_cval();
    u64 t3 = vtimer_tval();
    report(cval - now >= t3 && cval - now - t3 < 0x100000UL && (t3 >> 32) == 0,
           "vtimer-tval: TVAL is CVAL - CNTVCT in 32 bits");
    vtimer_set_cval(cntvct() - 1000);
    u64 past = vtimer_tval();
    report((past & 0x80000000UL) && (past >> 32) == 0, "vtimer-tval: negative past the deadline");
    vtimer_set_ctl(0);
}

static void test_istatus(void)
{
    u64 cval = cntvct() + 20000;
    vtimer_set_cval(cval);
    vtimer_set_ctl(CNT_CTL_ENABLE | CNT_CTL_IMASK);
    int before = !(vtimer_ctl() & CNT_CTL_ISTATUS) && cntvct() < cval;
    report(before, "vtimer-istatus: clear before the deadline");
    int reached = wait_until(cval);
    report(reached && wait_istatus(vtimer_ctl), "vtimer-istatus: set once the deadline passed, masked or not");
    vtimer_set_ctl(CNT_CTL_IMASK);
    report(!(vtimer_ctl() & CNT_CTL_ISTATUS), "vtimer-istatus: clear while disabled");
    vtimer_set_ctl(0);
}

static void test_ptimer(void)
{
    u64 cval = cntpct() + 20000;
    ptimer_set_cval(cval);
    ptimer_set_ctl(CNT_CTL_ENABLE | CNT_CTL_IMASK);
    int before = !(ptimer_ctl() & CNT_CTL_ISTATUS);
    int reached = 0;
    for (u64 n = 0; n < PATIENCE && !reached; n++)
        reached = cntpct() >= cval;
    report(before && reached && wait_istatus(ptimer_ctl),
           "ptimer-istatus: the physical timer's condition once its deadline passed");
    ptimer_set_ctl(0);
}

static void el0_read_counter(void)
{
    el0_value = read_sysreg(cntvct_el0);
    asm volatile("svc %0" : : "i"(EL0_EXIT) : "memory");
}

static void el0_read_vtimer(void)
{
    el0_value = read_sysreg(cntv_ctl_el0);
    asm volatile("svc %0" : : "i"(EL0_EXIT) : "memory");
}

/* Runs `fn` at EL0 under CNTKCTL_EL1 = `kctl`: how many of its accesses
   trapped to EL1. */
static u64 at_el0(void (*fn)(void), u64 kctl)
{
    write_sysreg(kctl, cntkctl_el1);
    isb();
    el0_traps = 0;
    el0_value = 0;
    run_el0(fn, (u64)&el0_stack[512]);
    return el0_traps;
}

static void test_el0(void)
{
    u64 saved = read_sysreg(cntkctl_el1);
    report(at_el0(el0_read_counter, CNTKCTL_EL0VCTEN) == 0 && el0_value != 0,
           "timer-el0: CNTVCT_EL0 readable with EL0VCTEN");
    report(at_el0(el0_read_counter, CNTKCTL_EL0PCTEN) == 1 && (el0_trap_esr >> 26) == EC_SYS64 &&
               (el0_trap_esr & 1) == 1,
           "timer-el0: CNTVCT_EL0 traps to EL1 without EL0VCTEN (EC 0x18, a read)");
    vtimer_set_ctl(CNT_CTL_IMASK);
    report(at_el0(el0_read_vtimer, CNTKCTL_EL0VTEN) == 0 && el0_value == CNT_CTL_IMASK,
           "timer-el0: CNTV_CTL_EL0 readable with EL0VTEN");
    report(at_el0(el0_read_vtimer, CNTKCTL_EL0VCTEN) == 1 && (el0_trap_esr >> 26) == EC_SYS64,
           "timer-el0: CNTV_CTL_EL0 traps to EL1 without EL0VTEN");
    vtimer_set_ctl(0);
    write_sysreg(saved, cntkctl_el1);
    isb();
}

/* Waits with IRQs unmasked for the handler to count an interrupt. */
static int wait_for_irq(void)
{
    local_irq_enable();
    u64 n = 0;
    while (!vtimer_irqs && n < PATIENCE)
        n++;
    local_irq_disable();
    return vtimer_irqs != 0;
}

static void test_irq(void)
{
    vtimer_irqs = other_irqs = 0;
    u64 cval = cntvct() + 20000;
    vtimer_set_cval(cval);
    vtimer_set_ctl(CNT_CTL_ENABLE);
    int came = wait_for_irq();
    report(came && vtimer_irqs == 1, "vtimer-irq: the interrupt arrives");
    report(came && irq_count >= cval && irq_cval == cval, "vtimer-irq: not before the deadline");
    report((vtimer_ctl() & CNT_CTL_IMASK) && other_irqs == 0,
           "vtimer-irq: the handler's IMASK disarms it, nothing else interrupts");
    vtimer_set_ctl(0);
}

static void test_imask(void)
{
    vtimer_irqs = other_irqs = 0;
    u64 cval = cntvct() + 20000;
    vtimer_set_cval(cval);
    vtimer_set_ctl(CNT_CTL_ENABLE | CNT_CTL_IMASK);
    local_irq_enable();
    int reached = wait_until(cval + 1000);
    local_irq_disable();
    report(reached && vtimer_irqs == 0 && (vtimer_ctl() & CNT_CTL_ISTATUS),
           "vtimer-imask: IMASK holds the interrupt back");
    vtimer_set_ctl(CNT_CTL_ENABLE);
    report(wait_for_irq() && vtimer_irqs == 1, "vtimer-imask: clearing IMASK lets it in");
    vtimer_set_ctl(0);
}

static void test_ptimer_irq(void)
{
    ptimer_irqs = vtimer_irqs = other_irqs = 0;
    u64 cval = cntpct() + 20000;
    ptimer_set_cval(cval);
    ptimer_set_ctl(CNT_CTL_ENABLE);
    local_irq_enable();
    for (u64 n = 0; !ptimer_irqs && n < PATIENCE; n++)
        ;
    local_irq_disable();
    report(ptimer_irqs == 1 && irq_count >= cval && irq_cval == cval && vtimer_irqs == 0 &&
               other_irqs == 0,
           "ptimer-irq: the physical timer's interrupt arrives after its deadline");
    /* The hypervisor emulates this timer: when its deadline passes it must
       kick the vCPU (as KVM's background timer does), not wait for the
       vCPU's next exit. 100 us is far below one scheduling slice. */
    report(ptimer_irqs == 1 && irq_count - cval < 100000,
           "ptimer-irq: taken within 100 us of its deadline");
    ptimer_set_ctl(0);
}

static void test_wfi(void)
{
    /* IRQs stay masked: WFI wakes on a pending interrupt all the same. */
    u64 cval = cntvct() + 1000000;
    vtimer_set_cval(cval);
    vtimer_set_ctl(CNT_CTL_ENABLE);
    u64 waits = 0;
    while (!(vtimer_ctl() & CNT_CTL_ISTATUS) && waits < 100) {
        wfi();
        waits++;
    }
    u64 now = cntvct();
    report(waits == 1 && now >= cval, "vtimer-wfi: one WFI sleeps until the deadline");
    vtimer_set_ctl(0);
}

static void wedge(u64 how)
{
    local_irq_disable();
    if (how == 2) {
        vtimer_set_cval(cntvct() + 1000);
        vtimer_set_ctl(CNT_CTL_ENABLE | CNT_CTL_IMASK);
    } else {
        vtimer_set_ctl(0);
    }
    puts("INFO: timer: waiting for an interrupt that cannot come\n");
    for (;;)
        wfi();
}

int main(u64 dtb)
{
    sync_handler = on_sync;
    irq_handler = on_irq;
    const char *args = fdt_bootargs(dtb);
    u64 w = bootarg_u64(args, "wedge", 0);
    if (w)
        wedge(w);
    int irq = bootarg_u64(args, "irq", 0) != 0;
    test_cntfrq(args);
    test_counters();
    if (irq)
        test_counter_rate();
    test_tval();
    test_istatus();
    test_ptimer();
    test_el0();
    if (irq) {
        gic_init_dist();
        if (!gic_init_cpu()) {
            puts("FAIL: timer: no GIC redistributor for this CPU\n");
            return report_summary() + 1;
        }
        gic_request(VTIMER_PPI, on_irq);
        gic_request(PTIMER_PPI, on_irq);
        test_irq();
        test_imask();
        test_ptimer_irq();
        test_wfi();
    }
    return report_summary();
}
