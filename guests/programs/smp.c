/* smp: PSCI's CPU management from a guest with several CPUs, in the
   style of kvm-unit-tests: PSCI_VERSION and PSCI_FEATURES, CPU_ON of
   every CPU the device tree lists (each reports its MPIDR and the
   context id it found in X0), CPU_ON of a CPU that is on and of one
   that does not exist, AFFINITY_INFO before, during and after, shared
   counters that every CPU increments with LDXR/STXR and with LSE LDADD,
   CPU_OFF of the secondaries, then SYSTEM_OFF. Every line is printed in
   an order the program fixes, so the console is the same on any
   scheduler; qemu-system-aarch64 -M virt -smp N prints it too.

   With the bootargs word pmu=1 every CPU also counts its own
   INST_RETIRED over two loops of known length, long enough to span
   several of the hypervisor's slices, and checks the difference. */
#include "runtime.h"
#include "fdt.h"
#include "smp.h"

#define MAX_CPUS 16
#define STACK_BYTES 8192
/* Increments per CPU and counter: more instructions than one slice. */
#define K 300000UL
/* Polls before a wait gives up (far more than any run needs). */
#define PATIENCE (1UL << 28)

#define INST_RETIRED 0x08
#define PMCR_E (1UL << 0)

static u8 stacks[MAX_CPUS][STACK_BYTES] __attribute__((aligned(16)));
static struct secondary boot[MAX_CPUS];
static u64 mpidrs[MAX_CPUS];
static u64 ncpus;

static u32 started[MAX_CPUS];
static u32 go;
static u32 finished;
static u64 counter_exclusive;
static u64 counter_lse;
static int pmu_check;
static long pmu_ok[MAX_CPUS];

/* report() with the CPU's index after the name: "NAME (cpuI)". */
static void report_cpu(int ok, const char *name, u64 index)
{
    char line[96];
    u64 n = 0;
    while (*name && n < sizeof(line) - 16)
        line[n++] = *name++;
    const char *tail = " (cpu";
    while (*tail)
        line[n++] = *tail++;
    if (index >= 10)
        line[n++] = (char)('0' + index / 10);
    line[n++] = (char)('0' + index % 10);
    line[n++] = ')';
    line[n] = 0;
    report(ok, line);
}

static u32 load_acquire(u32 *p)
{
    u32 v;
    asm volatile("ldar %w0, [%1]" : "=r"(v) : "r"(p) : "memory");
    return v;
}

static void store_release(u32 *p, u32 v)
{
    asm volatile("stlr %w0, [%1]" : : "r"(v), "r"(p) : "memory");
}

/* Waits until *p == want; 0 when patience ran out. */
static int wait_for(u32 *p, u32 want)
{
    for (u64 i = 0; i < PATIENCE; i++)
        if (load_acquire(p) == want)
            return 1;
    return 0;
}

static void add_exclusive(u64 *p, u64 n)
{
    for (u64 i = 0; i < n; i++) {
        u64 v;
        u32 failed;
        asm volatile("1: ldxr %0, [%2]\n"
                     "   add %0, %0, #1\n"
                     "   stxr %w1, %0, [%2]\n"
                     "   cbnz %w1, 1b\n"
                     : "=&r"(v), "=&r"(failed)
                     : "r"(p)
                     : "memory");
    }
}

static void add_lse(u64 *p, u64 n)
{
    for (u64 i = 0; i < n; i++) {
        u64 old;
        asm volatile("ldadd %1, %0, [%2]" : "=r"(old) : "r"(1UL), "r"(p) : "memory");
    }
}

static void atomic_inc32(u32 *p)
{
    u32 old;
    asm volatile("ldaddal %w1, %w0, [%2]" : "=r"(old) : "r"(1u), "r"(p) : "memory");
}

/* INST_RETIRED of a loop of n iterations of two instructions; not
   inlined, so that every count runs the same instructions around it. */
static __attribute__((noinline)) u64 count_loop(u64 n)
{
    write_sysreg(0UL, pmcntenset_el0);
    write_sysreg(INST_RETIRED, pmevtyper0_el0);
    write_sysreg(0UL, pmevcntr0_el0);
    write_sysreg(1UL, pmcntenset_el0);
    write_sysreg(PMCR_E, pmcr_el0);
    isb();
    asm volatile("1: subs %0, %0, #1\n"
                 "   b.ne 1b\n"
                 : "+r"(n)
                 :
                 : "cc");
    isb();
    u64 c = read_sysreg(pmevcntr0_el0);
    write_sysreg(0UL, pmcr_el0);
    isb();
    return c;
}

/* The difference of two counts is the extra loop's instructions,
   exactly, however often the vCPU was put and moved in between. */
static long pmu_follows(void)
{
    u64 n = 1000000;
    u64 a = count_loop(n);
    u64 b = count_loop(2 * n);
    return b - a == 2 * n;
}

/* The MPIDR_EL1 each CPU read for itself. The boot CPU prints them, so
   that the console does not depend on how the CPUs' runs interleave. */
static u64 seen_mpidr[MAX_CPUS];

static void say_mpidr(u64 index)
{
    spin_lock(&console_lock);
    puts("cpu");
    put_dec(index);
    puts(": MPIDR ");
    put_hex(seen_mpidr[index]);
    putc('\n');
    spin_unlock(&console_lock);
}

/* What every CPU does between go and finished. */
static void count_work(u64 index)
{
    add_exclusive(&counter_exclusive, K);
    add_lse(&counter_lse, K);
    if (pmu_check)
        pmu_ok[index] = pmu_follows();
}

static void secondary(struct secondary *s)
{
    seen_mpidr[s->index] = read_sysreg(mpidr_el1);
    store_release(&started[s->index], 1);
    if (!wait_for(&go, 1))
        return;
    count_work(s->index);
    atomic_inc32(&finished);
}

/* The reg of every /cpus/cpu@... node, in the tree's order. */
static void read_cpu(void *ctx, const struct fdt_prop *p)
{
    (void)ctx;
    if (p->depth == 3 && fdt_streq(p->parent, "cpus") && fdt_prefix(p->node, "cpu@") &&
        fdt_streq(p->name, "reg") && ncpus < MAX_CPUS)
        mpidrs[ncpus++] = p->len == 8 ? fdt_be64(p->val) : fdt_be32(p->val);
}

int main(u64 dtb)
{
    struct fdt_info info = fdt_read(dtb);
    pmu_check = bootarg_u64(info.bootargs, "pmu", 0) != 0;
    mmu_enable(info.ram_base, info.ram_size, 0);
    fdt_walk(dtb, read_cpu, 0);
    u64 self = read_sysreg(mpidr_el1) & MPIDR_AFFINITY;
    report(ncpus >= 1 && mpidrs[0] == self, "smp: the boot CPU is the first in /cpus");
    puts("cpus: ");
    put_dec(ncpus);
    putc('\n');

    u64 v = psci_call(PSCI_VERSION, 0, 0, 0);
    report(v >> 16 == 1, "psci: version 1.x");
    report(psci_call(PSCI_FEATURES, PSCI_CPU_ON64, 0, 0) == PSCI_SUCCESS, "psci: features: CPU_ON");
    report(psci_call(PSCI_FEATURES, PSCI_CPU_OFF, 0, 0) == PSCI_SUCCESS, "psci: features: CPU_OFF");
    report(psci_call(PSCI_FEATURES, PSCI_AFFINITY_INFO64, 0, 0) == PSCI_SUCCESS,
           "psci: features: AFFINITY_INFO");
    report(psci_call(PSCI_FEATURES, PSCI_SYSTEM_OFF, 0, 0) == PSCI_SUCCESS,
           "psci: features: SYSTEM_OFF");
    report((long)psci_call(PSCI_FEATURES, 0x8400001fUL, 0, 0) == PSCI_NOT_SUPPORTED,
           "psci: features: an unknown function is not supported");

    seen_mpidr[0] = read_sysreg(mpidr_el1);
    say_mpidr(0);
    report(affinity_info(self) == AFFINITY_ON, "psci: affinity-info: the boot CPU is on");
    for (u64 i = 1; i < ncpus; i++) {
        report_cpu(affinity_info(mpidrs[i]) == AFFINITY_OFF, "psci: affinity-info: a secondary is off before CPU_ON", i);
        struct secondary *s = &boot[i];
        s->stack_top = (u64)&stacks[i][STACK_BYTES];
        s->fn = secondary;
        s->mpidr = mpidrs[i];
        s->index = i;
        report_cpu(cpu_on(s) == PSCI_SUCCESS, "psci: cpu-on", i);
        int up = wait_for(&started[i], 1);
        if (up)
            say_mpidr(i);
        report_cpu(up, "smp: the secondary runs", i);
        if (!up)
            continue;
        report_cpu(s->x0 == (u64)s, "psci: cpu-on: the context id is in x0", i);
        report_cpu(affinity_info(mpidrs[i]) == AFFINITY_ON, "psci: affinity-info: a started secondary is on", i);
        report_cpu(cpu_on(s) == PSCI_ALREADY_ON, "psci: cpu-on of a CPU that is on: ALREADY_ON", i);
    }
    struct secondary nobody = {.mpidr = 0xff, .index = MAX_CPUS};
    report(cpu_on(&nobody) == PSCI_INVALID_PARAMETERS, "psci: cpu-on of no CPU: INVALID_PARAMETERS");
    report(affinity_info(0xff) == PSCI_INVALID_PARAMETERS,
           "psci: affinity-info of no CPU: INVALID_PARAMETERS");

    store_release(&go, 1);
    count_work(0);
    report(wait_for(&finished, (u32)ncpus - 1), "smp: every secondary counted");
    asm volatile("dmb ish" ::: "memory");
    report(counter_exclusive == ncpus * K, "smp: LDXR/STXR counter is cpus * K");
    report(counter_lse == ncpus * K, "smp: LDADD counter is cpus * K");
    if (pmu_check) {
        for (u64 i = 0; i < ncpus; i++)
            report_cpu(pmu_ok[i] == 1, "pmu: INST_RETIRED follows its CPU", i);
    }
    for (u64 i = 1; i < ncpus; i++) {
        int off = 0;
        for (u64 t = 0; t < PATIENCE && !off; t++)
            off = affinity_info(mpidrs[i]) == AFFINITY_OFF;
        report_cpu(off, "psci: affinity-info: a secondary is off after CPU_OFF", i);
    }
    return report_summary();
}
