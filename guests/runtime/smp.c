#include "smp.h"

u32 console_lock;

void secondary_entry(void);
void secondary_main(struct secondary *s);

void secondary_main(struct secondary *s)
{
    s->fn(s);
    psci_call(PSCI_CPU_OFF, 0, 0, 0);
    /* CPU_OFF does not return on success. */
}

long cpu_on(struct secondary *s)
{
    s->mair = read_sysreg(mair_el1);
    s->tcr = read_sysreg(tcr_el1);
    s->ttbr0 = read_sysreg(ttbr0_el1);
    s->sctlr = read_sysreg(sctlr_el1);
    for (u64 a = (u64)s & ~63UL; a < (u64)(s + 1); a += 64)
        asm volatile("dc cvac, %0" : : "r"(a) : "memory");
    asm volatile("dsb sy" ::: "memory");
    return (long)psci_call(PSCI_CPU_ON64, s->mpidr, (u64)secondary_entry, (u64)s);
}

long affinity_info(u64 mpidr)
{
    return (long)psci_call(PSCI_AFFINITY_INFO64, mpidr, 0, 0);
}

void spin_lock(u32 *lock)
{
    u32 held, failed;
    asm volatile("1: ldaxr %w0, [%2]\n"
                 "   cbnz %w0, 1b\n"
                 "   stxr %w1, %w3, [%2]\n"
                 "   cbnz %w1, 1b\n"
                 : "=&r"(held), "=&r"(failed)
                 : "r"(lock), "r"(1u)
                 : "memory");
}

void spin_unlock(u32 *lock)
{
    asm volatile("stlr wzr, [%0]" : : "r"(lock) : "memory");
}
