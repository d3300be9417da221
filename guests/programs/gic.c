/* gic: the GICv3 as a guest sees it, through runtime/gic.h, in
   kvm-unit-tests-style PASS/FAIL/SKIP lines: the distributor's and the
   redistributor's identification, ICC_IAR1_EL1 with nothing pending, an
   SGI to itself, pending state through ISPENDR/ICPENDR and HPPIR, enables,
   masking by ICC_PMR_EL1, the running priority while a handler runs, and
   with a second CPU (PSCI CPU_ON) SGIs between the two. The same lines
   come out on QEMU's virt board (gic-version=3) and under hyperprof. */
#include "gic.h"
#include "runtime.h"

#define SGI_A 3
#define SGI_B 5
#define SGI_LOW 7
#define SGI_PING 1
#define SGI_PONG 2

static volatile u64 taken[16];     /* SGIs taken, by INTID, on CPU 0 */
static volatile u64 rpr_in_handler; /* ICC_RPR_EL1 inside the last handler */
static volatile u64 hppir_in_handler;
static volatile int send_low_in_handler;

static void on_sgi(u64 intid, struct frame *f)
{
    (void)f;
    taken[intid]++;
    rpr_in_handler = read_sysreg(ICC_RPR_EL1) & 0xFF;
    if (send_low_in_handler) {
        send_low_in_handler = 0;
        gic_send_sgi(SGI_LOW, read_sysreg(mpidr_el1));
        hppir_in_handler = read_sysreg(ICC_HPPIR1_EL1) & 0xFFFFFF;
    }
}

#define unmask() asm volatile("msr daifclr, #2; isb" ::: "memory")
#define mask() asm volatile("msr daifset, #2; isb" ::: "memory")

static void settle(void)
{
    for (int i = 0; i < 1000; i++)
        asm volatile("nop" ::: "memory");
}

static void test_identification(void)
{
    u32 pidr2 = gic_rd(GICD_BASE + GICD_PIDR2);
    u32 typer = gic_rd(GICD_BASE + GICD_TYPER);
    u32 ctlr = gic_rd(GICD_BASE + GICD_CTLR);
    report(((pidr2 >> 4) & 0xF) == 3, "gic-distributor: GICD_PIDR2.ArchRev is GICv3");
    report((typer & 0x1F) >= 1 && ((typer >> 19) & 0x1F) >= 9,
           "gic-distributor: GICD_TYPER has SPIs and at least 10 INTID bits");
    report((ctlr & GICD_CTLR_ARE) && (ctlr & GICD_CTLR_ENABLE_GRP1) && !(ctlr & GICD_CTLR_RWP),
           "gic-distributor: GICD_CTLR: affinity routing and Group 1 on, no write pending");
    u64 rd = gic_rd_base();
    u64 rtyper = gic_rd64(rd + GICR_TYPER);
    report((u32)(rtyper >> 32) == gic_affinity(read_sysreg(mpidr_el1)),
           "gic-redistributor: GICR_TYPER's affinity is this CPU's MPIDR_EL1");
    report(((gic_rd(rd + 0xFFE8) >> 4) & 0xF) == 3, "gic-redistributor: GICR_PIDR2.ArchRev is GICv3");
    report(!(gic_rd(rd + GICR_WAKER) & (GICR_WAKER_PROCESSOR_SLEEP | GICR_WAKER_CHILDREN_ASLEEP)),
           "gic-redistributor: awake (GICR_WAKER ProcessorSleep and ChildrenAsleep clear)");
    report((read_sysreg(ICC_SRE_EL1) & 1) == 1, "gic-cpu-interface: ICC_SRE_EL1.SRE is set");
    report((read_sysreg(ICC_PMR_EL1) & 0xFF) == GIC_DEFAULT_PMR,
           "gic-cpu-interface: ICC_PMR_EL1 holds the mask written");
}

static void test_spurious(void)
{
    mask();
    report((read_sysreg(ICC_IAR1_EL1) & 0xFFFFFF) == GIC_SPURIOUS,
           "gic-iar: ICC_IAR1_EL1 reads 1023 with nothing pending");
    report((read_sysreg(ICC_HPPIR1_EL1) & 0xFFFFFF) == GIC_SPURIOUS,
           "gic-iar: ICC_HPPIR1_EL1 reads 1023 with nothing pending");
    report((read_sysreg(ICC_RPR_EL1) & 0xFF) == 0xFF, "gic-iar: the running priority is idle (0xFF)");
}

static void test_sgi_self(void)
{
    u64 me = read_sysreg(mpidr_el1);
    gic_request(SGI_A, on_sgi);
    taken[SGI_A] = 0;
    unmask();
    gic_send_sgi(SGI_A, me);
    settle();
    mask();
    report(taken[SGI_A] == 1, "gic-sgi: an SGI to this CPU is taken once");
    report(rpr_in_handler == GIC_DEFAULT_PRIORITY,
           "gic-sgi: inside the handler the running priority is the SGI's");
    report((read_sysreg(ICC_RPR_EL1) & 0xFF) == 0xFF && !gic_active(SGI_A) && !gic_pending(SGI_A),
           "gic-sgi: after ICC_EOIR1_EL1 it is neither active nor pending, the priority idle");
}

static void test_pending_state(void)
{
    u64 me = read_sysreg(mpidr_el1);
    taken[SGI_A] = 0;
    mask();
    gic_send_sgi(SGI_A, me);
    int pend = gic_pending(SGI_A);
    int hpp = (read_sysreg(ICC_HPPIR1_EL1) & 0xFFFFFF) == SGI_A;
    report(pend && hpp, "gic-pending: with IRQs masked a sent SGI shows in ISPENDR0 and HPPIR1");
    gic_clear_pending(SGI_A);
    report(!gic_pending(SGI_A) && (read_sysreg(ICC_IAR1_EL1) & 0xFFFFFF) == GIC_SPURIOUS,
           "gic-pending: ICPENDR0 clears it: not pending, IAR1 reads 1023");
    gic_set_pending(SGI_A);
    report(gic_pending(SGI_A), "gic-pending: ISPENDR0 makes it pending");
    unmask();
    settle();
    mask();
    report(taken[SGI_A] == 1 && !gic_pending(SGI_A), "gic-pending: the ISPENDR0 write is taken once unmasked");
}

static void test_enable(void)
{
    u64 me = read_sysreg(mpidr_el1);
    taken[SGI_A] = 0;
    gic_disable(SGI_A);
    unmask();
    gic_send_sgi(SGI_A, me);
    settle();
    int held = taken[SGI_A] == 0 && gic_pending(SGI_A);
    report(held, "gic-enable: a disabled SGI stays pending and is not taken");
    gic_enable(SGI_A);
    settle();
    mask();
    report(taken[SGI_A] == 1, "gic-enable: enabling it delivers it");
}

static void test_priority_mask(void)
{
    u64 me = read_sysreg(mpidr_el1);
    gic_request(SGI_B, on_sgi);
    gic_set_priority(SGI_B, 0xC0);
    taken[SGI_B] = 0;
    write_sysreg(0xC0, ICC_PMR_EL1);
    isb();
    unmask();
    gic_send_sgi(SGI_B, me);
    settle();
    int masked = taken[SGI_B] == 0 && gic_pending(SGI_B);
    report(masked, "gic-pmr: an SGI at the mask's priority is not taken");
    write_sysreg(0xD0, ICC_PMR_EL1);
    isb();
    settle();
    mask();
    report(taken[SGI_B] == 1, "gic-pmr: raising the mask above its priority delivers it");
    write_sysreg(GIC_DEFAULT_PMR, ICC_PMR_EL1);
    isb();
}

static void test_running_priority(void)
{
    u64 me = read_sysreg(mpidr_el1);
    gic_request(SGI_LOW, on_sgi);
    gic_set_priority(SGI_LOW, 0xE0);
    gic_set_priority(SGI_B, 0x80);
    taken[SGI_B] = taken[SGI_LOW] = 0;
    hppir_in_handler = 0;
    send_low_in_handler = 1;
    unmask();
    gic_send_sgi(SGI_B, me);
    settle();
    mask();
    report(taken[SGI_B] == 1 && hppir_in_handler == SGI_LOW,
           "gic-priority: an SGI sent inside a handler is pending there (HPPIR1)");
    report(taken[SGI_LOW] == 1 && rpr_in_handler == 0xE0,
           "gic-priority: it is taken after the handler ends, at its own priority");
}

/* ---- a second CPU ---- */

static u8 stack1[4096] __attribute__((aligned(16)));
static volatile u64 cpu1_up, cpu1_pings, cpu0_pongs, cpu1_wrong;

void secondary_main(void);
asm(".pushsection .text\n"
    ".global secondary_entry\n"
    "secondary_entry:\n"
    "    mov sp, x0\n"
    "    ldr x1, =vectors\n"
    "    msr vbar_el1, x1\n"
    "    isb\n"
    "    bl secondary_main\n"
    "1:  wfi\n"
    "    b 1b\n"
    ".popsection\n");
extern char secondary_entry[];

static void on_ping(u64 intid, struct frame *f)
{
    (void)f;
    cpu1_wrong += intid != SGI_PING;
    cpu1_pings++;
    gic_send_sgi(SGI_PONG, 0);
}

static void on_pong(u64 intid, struct frame *f)
{
    (void)f;
    (void)intid;
    cpu0_pongs++;
}

void secondary_main(void)
{
    if (!gic_init_cpu())
        return;
    gic_request(SGI_PING, on_ping);
    cpu1_up = 1;
    unmask();
    for (;;)
        asm volatile("wfi" ::: "memory");
}

static void wait_for(volatile u64 *v, u64 want)
{
    for (u64 n = 0; n < 20000000 && *v < want; n++)
        asm volatile("nop" ::: "memory");
}

static void test_two_cpus(u64 cpus)
{
    if (cpus < 2) {
        puts("SKIP: gic-sgi-cpus: one CPU\n");
        return;
    }
    u64 r = psci_call(0xC4000003, 1, (u64)secondary_entry, (u64)(stack1 + sizeof(stack1)));
    report(r == 0, "gic-sgi-cpus: PSCI CPU_ON starts CPU 1");
    wait_for(&cpu1_up, 1);
    gic_request(SGI_PONG, on_pong);
    unmask();
    for (int i = 0; i < 3; i++) {
        gic_send_sgi(SGI_PING, 1);
        wait_for(&cpu0_pongs, (u64)i + 1);
    }
    mask();
    report(cpu1_up && cpu1_pings == 3 && cpu1_wrong == 0,
           "gic-sgi-cpus: CPU 1 takes each SGI CPU 0 sends it");
    report(cpu0_pongs == 3, "gic-sgi-cpus: CPU 0 takes each SGI CPU 1 sends back");
}

/* CPUs in the device tree: the /cpus node's cpu@ children. */
static u64 count_cpus(u64 dtb)
{
    const u8 *base = (const u8 *)dtb;
    u32 off_struct = __builtin_bswap32(*(const u32 *)(base + 8));
    u32 off_strings = __builtin_bswap32(*(const u32 *)(base + 12));
    (void)off_strings;
    const u8 *p = base + off_struct;
    u64 n = 0;
    int depth = 0, in_cpus = 0;
    for (;;) {
        u32 tok = __builtin_bswap32(*(const u32 *)p);
        p += 4;
        if (tok == 1) { /* BEGIN_NODE */
            const char *name = (const char *)p;
            u64 len = 0;
            while (name[len])
                len++;
            depth++;
            if (depth == 2 && name[0] == 'c' && name[1] == 'p' && name[2] == 'u' && name[3] == 's' && !name[4])
                in_cpus = 1;
            else if (in_cpus && depth == 3 && name[0] == 'c' && name[1] == 'p' && name[2] == 'u' && name[3] == '@')
                n++;
            p += (len + 4) & ~3UL;
        } else if (tok == 2) { /* END_NODE */
            if (depth == 2)
                in_cpus = 0;
            depth--;
        } else if (tok == 3) { /* PROP */
            u32 len = __builtin_bswap32(*(const u32 *)p);
            p += 8 + ((len + 3) & ~3u);
        } else if (tok == 4) { /* NOP */
        } else {
            break;
        }
    }
    return n;
}

int main(u64 dtb)
{
    u64 cpus = count_cpus(dtb);
    gic_init_dist();
    if (!gic_init_cpu()) {
        puts("FAIL: gic: no redistributor for this CPU\n");
        return report_summary() + 1;
    }
    test_identification();
    test_spurious();
    test_sgi_self();
    test_pending_state();
    test_enable();
    test_priority_mask();
    test_running_priority();
    test_two_cpus(cpus);
    report(gic_unhandled == 0 && gic_spurious == 0, "gic: no unexpected or spurious interrupt");
    return report_summary();
}
