/* Stage-1 identity tables (4 KiB granule, 48-bit VA from level 0, TTBR0
   only): the virt board's devices (0..1 GiB) as Device-nGnRnE 2 MiB
   blocks, RAM (1 GiB..) as Normal write-back 2 MiB blocks, one block
   left out so that programs can take a translation fault on it. */
#include "runtime.h"

#define PAGE 4096UL
#define DESC_VALID (1UL << 0)
#define DESC_TABLE (1UL << 1)
#define DESC_AF (1UL << 10)
#define DESC_SH_INNER (3UL << 8)
#define DESC_ATTR(i) ((u64)(i) << 2)
#define DESC_PXN (1UL << 53)
#define DESC_UXN (1UL << 54)

static u64 l0[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l2_dev[512] __attribute__((aligned(4096)));
static u64 l2_ram[512] __attribute__((aligned(4096)));

u64 mmu_hole;

void mmu_enable(u64 ram_base, u64 ram_size, u64 hole)
{
    mmu_hole = hole;
    l0[0] = (u64)l1 | DESC_TABLE | DESC_VALID;
    l1[0] = (u64)l2_dev | DESC_TABLE | DESC_VALID;
    l1[ram_base >> 30] = (u64)l2_ram | DESC_TABLE | DESC_VALID;
    for (u64 i = 0; i < 512; i++)
        l2_dev[i] = (i << 21) | DESC_AF | DESC_ATTR(0) | DESC_PXN | DESC_UXN | DESC_VALID;
    for (u64 a = ram_base; a < ram_base + ram_size && a < ram_base + (1UL << 30); a += 1UL << 21) {
        if (a == hole)
            continue;
        /* EL1 only: a block EL0 could write would be execute-never at EL1. */
        l2_ram[(a >> 21) & 511] = a | DESC_AF | DESC_SH_INNER | DESC_ATTR(1) | DESC_UXN | DESC_VALID;
    }
    write_sysreg(0xff00UL, mair_el1);
    /* T0SZ 16, WBWA inner/outer, inner shareable, 4 KiB, EPD1, IPS 40 bits. */
    write_sysreg(16UL | 1UL << 8 | 1UL << 10 | 3UL << 12 | 1UL << 23 | 2UL << 32, tcr_el1);
    write_sysreg((u64)l0, ttbr0_el1);
    asm volatile("dsb ish; tlbi vmalle1; dsb ish" ::: "memory");
    isb();
    /* M, C, I; SA/SA0 stay as reset gave them. */
    write_sysreg(read_sysreg(sctlr_el1) | 1UL << 0 | 1UL << 2 | 1UL << 12, sctlr_el1);
    isb();
}
