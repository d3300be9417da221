/* selftest: the exception model, the MMU and atomics as a bare-metal
   guest sees them. Every line of its output is the same under QEMU's
   virt board and under hyperprof. */
#include "runtime.h"

#define EL0_EXIT 0xe0
#define RAM_BASE 0x40000000UL
#define RAM_SIZE (128UL << 20)
#define HOLE (RAM_BASE + (64UL << 20))

void run_el0(void (*fn)(void), u64 stack_top);
extern char el0_exit[];

static volatile u64 seen_kind, seen_esr, seen_elr, seen_far, seen_count;
static u64 el0_stack[512] __attribute__((aligned(16)));

static void record(u64 kind, struct frame *f)
{
    (void)f;
    seen_kind = kind;
    seen_esr = read_sysreg(esr_el1);
    seen_elr = read_sysreg(elr_el1);
    seen_far = read_sysreg(far_el1);
    seen_count++;
    u64 ec = seen_esr >> 26;
    if (ec == 0x15 && (seen_esr & 0xffff) == EL0_EXIT) {
        /* Back to the kernel at el0_exit, EL1h with interrupts masked. */
        write_sysreg((u64)el0_exit, elr_el1);
        write_sysreg(0x3c5UL, spsr_el1);
    } else if (ec != 0x15) {
        /* Skip the instruction that faulted. */
        write_sysreg(seen_elr + 4, elr_el1);
    }
}

static u64 ec(void)
{
    return seen_esr >> 26;
}

static void test_svc_el1(void)
{
    u64 after;
    seen_count = 0;
    asm volatile("adr %0, 1f\n\tsvc #0x42\n1:" : "=r"(after) : : "memory");
    report(seen_count == 1 && seen_kind == 4 && ec() == 0x15 && (seen_esr & 0xffff) == 0x42 &&
               seen_elr == after && (seen_esr >> 25 & 1) == 1,
           "exceptions: svc at EL1 (EC 0x15, imm16, ELR after the SVC, IL)");
}

static void test_undef(void)
{
    u64 at;
    seen_count = 0;
    asm volatile("adr %0, 1f\n1:\t.inst 0x00000007" : "=r"(at) : : "memory");
    report(seen_count == 1 && ec() == 0x00 && seen_elr == at, "exceptions: undefined instruction (EC 0x00)");
}

static void test_fpsimd_trap(void)
{
    u64 at;
    write_sysreg(0UL, cpacr_el1);
    isb();
    seen_count = 0;
    asm volatile("adr %0, 1f\n1:\t.inst 0x9e6703e0" : "=r"(at) : : "memory"); /* fmov d0, xzr */
    report(seen_count == 1 && ec() == 0x07 && seen_elr == at, "exceptions: FP/SIMD trapped by CPACR_EL1.FPEN (EC 0x07)");
}

static volatile u64 el0_saw_el;

static void user_main(void)
{
    /* CurrentEL is not readable at EL0 (UNDEFINED): count on the SP instead. */
    u64 sp;
    asm volatile("mov %0, sp" : "=r"(sp));
    el0_saw_el = sp;
    asm volatile("svc %0" : : "i"(EL0_EXIT) : "memory");
}

static void test_el0_round_trip(void)
{
    seen_count = 0;
    el0_saw_el = 0;
    run_el0(user_main, (u64)&el0_stack[512]);
    report(seen_count == 1 && seen_kind == 8 && ec() == 0x15 && el0_saw_el > (u64)el0_stack &&
               el0_saw_el <= (u64)&el0_stack[512],
           "exceptions: EL0 on SP_EL0, svc to EL1 through the lower-EL vector, eret back");
}

static u64 probe(u64 addr)
{
    u64 v = 0xabad1dea;
    asm volatile("ldr %0, [%1]" : "+r"(v) : "r"(addr) : "memory");
    return v;
}

static volatile u64 mapped_word = 0x5eed;

static void test_mmu(void)
{
    mmu_enable(RAM_BASE, RAM_SIZE, HOLE);
    report((read_sysreg(sctlr_el1) & 1) == 1 && mapped_word == 0x5eed, "mmu: identity tables on, memory reads through them");
    seen_count = 0;
    u64 v = probe(HOLE + 0x1238);
    report(seen_count == 1 && seen_kind == 4 && ec() == 0x25 && (seen_esr & 0x3f) == 0x06 &&
               seen_far == HOLE + 0x1238 && v == 0xabad1dea,
           "mmu: data abort on an unmapped block (EC 0x25, translation fault level 2, FAR)");
}

static void test_alignment(void)
{
    static u64 words[2];
    write_sysreg(read_sysreg(sctlr_el1) | 1UL << 1, sctlr_el1);
    isb();
    seen_count = 0;
    probe((u64)words + 1);
    write_sysreg(read_sysreg(sctlr_el1) & ~(1UL << 1), sctlr_el1);
    isb();
    report(seen_count == 1 && ec() == 0x25 && (seen_esr & 0x3f) == 0x21 && seen_far == (u64)words + 1,
           "mmu: alignment fault with SCTLR_EL1.A (DFSC 0x21)");
}

static void test_exclusives(void)
{
    static u64 counter;
    u64 failures = 0;
    for (int i = 0; i < 100; i++) {
        u32 status;
        u64 v;
        do {
            asm volatile("ldaxr %0, [%2]\n\tadd %0, %0, #1\n\tstlxr %w1, %0, [%2]"
                         : "=&r"(v), "=&r"(status)
                         : "r"(&counter)
                         : "memory");
            failures += status;
        } while (status);
    }
    u32 lone;
    asm volatile("clrex\n\tstxr %w0, %1, [%2]" : "=&r"(lone) : "r"(7UL), "r"(&counter) : "memory");
    report(counter == 100 && failures == 0 && lone == 1, "atomics: exclusives (LDAXR/STLXR, STXR fails without a monitor)");
}

static void test_lse(void)
{
    static u64 m;
    u64 old;
    m = 10;
    asm volatile("ldadd %1, %0, [%2]" : "=r"(old) : "r"(5UL), "r"(&m) : "memory");
    int ok = old == 10 && m == 15;
    u64 expect = 15;
    asm volatile("casal %0, %1, [%2]" : "+r"(expect) : "r"(99UL), "r"(&m) : "memory");
    ok &= expect == 15 && m == 99;
    expect = 1;
    asm volatile("cas %0, %1, [%2]" : "+r"(expect) : "r"(7UL), "r"(&m) : "memory");
    ok &= expect == 99 && m == 99;
    asm volatile("swpl %1, %0, [%2]" : "=r"(old) : "r"(3UL), "r"(&m) : "memory");
    ok &= old == 99 && m == 3;
    asm volatile("ldumaxa %1, %0, [%2]" : "=r"(old) : "r"(8UL), "r"(&m) : "memory");
    ok &= old == 3 && m == 8;
    asm volatile("ldclr %1, %0, [%2]" : "=r"(old) : "r"(8UL), "r"(&m) : "memory");
    ok &= old == 8 && m == 0;
    report(ok, "atomics: LSE (LDADD, CASAL, CAS, SWPL, LDUMAXA, LDCLR)");
}

int main(u64 dtb)
{
    (void)dtb;
    sync_handler = record;
    test_svc_el1();
    test_undef();
    test_fpsimd_trap();
    test_el0_round_trip();
    test_mmu();
    test_alignment();
    test_exclusives();
    test_lse();
    return report_summary();
}
