/* icount: the guest's own INST_RETIRED over a fixed stretch of code, read
   from PMU event counter 0. Under qemu-system-aarch64 -icount shift=0 the
   same binary prints the same numbers, so the engine's idea of what
   retires is checked instruction for instruction. */
#include "runtime.h"

#define PMCR_E (1UL << 0)
#define PMCR_P (1UL << 1)
#define INST_RETIRED 0x08

static u64 work(u64 n)
{
    u64 h = 1469598103934665603UL;
    for (u64 i = 0; i < n; i++) {
        h ^= i;
        h *= 1099511628211UL;
        if (h & 1)
            h += i;
    }
    return h;
}

static u64 count(u64 n, u64 *result)
{
    write_sysreg(0UL, pmcntenset_el0);
    write_sysreg(INST_RETIRED, pmevtyper0_el0);
    write_sysreg(1UL, pmcntenset_el0);
    write_sysreg(PMCR_E | PMCR_P, pmcr_el0);
    isb();
    *result = work(n);
    u64 c = read_sysreg(pmevcntr0_el0);
    write_sysreg(0UL, pmcr_el0);
    isb();
    return c;
}

int main(u64 dtb)
{
    (void)dtb;
    u64 r;
    u64 n = (read_sysreg(pmcr_el0) >> 11) & 0x1f;
    puts("pmu counters ");
    put_dec(n ? 1 : 0);
    putc('\n');
    for (u64 len = 10; len <= 100000; len *= 100) {
        u64 c = count(len, &r);
        puts("inst_retired ");
        put_dec(len);
        puts(" iterations: ");
        put_dec(c);
        puts(" (hash ");
        put_hex(r);
        puts(")\n");
    }
    return 0;
}
