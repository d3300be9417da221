/* spe: the guest's own SPE session with its MMU on: a buffer in its RAM
   reached through its stage-1 tables (and the hypervisor's stage 2), a
   loop sampled at EL1, then the records it wrote read back and checked:
   they decode, their PCs lie in the loop and their data addresses in the
   array it reads. Without SPE (QEMU) it says SKIP. */
#include "runtime.h"

#define RAM_BASE 0x40000000UL
#define RAM_SIZE (128UL << 20)
#define HOLE (RAM_BASE + (64UL << 20))

#define PMSCR_EL1 "S3_0_C9_C9_0"
#define PMSICR_EL1 "S3_0_C9_C9_2"
#define PMSIRR_EL1 "S3_0_C9_C9_3"
#define PMSFCR_EL1 "S3_0_C9_C9_4"
#define PMSEVFR_EL1 "S3_0_C9_C9_5"
#define PMSLATFR_EL1 "S3_0_C9_C9_6"
#define PMSIDR_EL1 "S3_0_C9_C9_7"
#define PMBLIMITR_EL1 "S3_0_C9_C10_0"
#define PMBPTR_EL1 "S3_0_C9_C10_1"
#define PMBSR_EL1 "S3_0_C9_C10_3"
#define PMBIDR_EL1 "S3_0_C9_C10_7"

#define rd(r) ({ u64 __v; asm volatile("mrs %0, " r : "=r"(__v)); __v; })
#define wr(r, v) asm volatile("msr " r ", %0" : : "r"((u64)(v)))
#define psb_csync() asm volatile("hint #17" ::: "memory")

/* hyperprof's vendor hypervisor call that hands SPE records to the VMM
   (SMCCC owner 6): X1 = their IPA (RAM is identity mapped), X2 = bytes,
   X3 = flags. Elsewhere (QEMU) it returns NOT_SUPPORTED, and nothing
   changes. */
#define SPE_RECORDS 0xC6000001UL

#define BUF_SIZE (64UL << 10)
static u8 buf[BUF_SIZE] __attribute__((aligned(4096)));
static u64 data[4096];

/* The profiled loop, in its own section so that its PCs are known. */
__attribute__((noinline, section(".text.loop"))) static u64 kernel_loop(u64 rounds)
{
    u64 sum = 0;
    for (u64 r = 0; r < rounds; r++)
        for (u64 i = 0; i < 4096; i++)
            sum += data[i] ^ r;
    return sum;
}
extern char __loop_start[], __loop_end[];

struct tally {
    u64 records, pcs, pcs_in_loop, vas, vas_in_data, bad;
};

static struct tally decode(const u8 *p, u64 len)
{
    struct tally t = {0};
    u64 i = 0;
    while (i < len) {
        u8 h = p[i];
        u64 size;
        if (h == 0x00) {
            i++;
            continue;
        }
        if (h == 0x01) {
            t.records++;
            i++;
            continue;
        }
        if (h == 0x71) {
            t.records++;
            i += 9;
            continue;
        }
        if ((h & 0xcf) == 0x42 || (h & 0xcf) == 0x43)
            size = 1UL << ((h >> 4) & 3);
        else if ((h & 0xfc) == 0x64)
            size = 4;
        else if ((h & 0xfc) == 0x48)
            size = 1;
        else if ((h & 0xf8) == 0x98)
            size = 2;
        else if ((h & 0xf8) == 0xb0) {
            size = 8;
            u64 v = 0;
            for (int b = 7; b >= 0; b--)
                v = v << 8 | p[i + 1 + b];
            u64 addr = v & ((1UL << 56) - 1);
            if ((h & 7) == 0) {
                t.pcs++;
                t.pcs_in_loop += addr >= (u64)__loop_start && addr < (u64)__loop_end;
            } else if ((h & 7) == 2) {
                t.vas++;
                t.vas_in_data += addr >= (u64)data && addr < (u64)&data[4096];
            }
        } else {
            t.bad++;
            break;
        }
        i += 1 + size;
    }
    return t;
}

int main(u64 dtb)
{
    (void)dtb;
    u64 pmsver = (read_sysreg(id_aa64dfr0_el1) >> 32) & 0xf;
    if (!pmsver) {
        puts("SKIP: spe: no SPE (ID_AA64DFR0_EL1.PMSVer = 0)\n");
        return report_summary();
    }
    for (u64 i = 0; i < 4096; i++)
        data[i] = i * 3;
    mmu_enable(RAM_BASE, RAM_SIZE, HOLE);
    u64 pmbidr = rd(PMBIDR_EL1);
    report((pmbidr & (1UL << 4)) == 0, "spe: PMBIDR_EL1.P clear, the buffer is the guest's");
    u64 min_interval = (rd(PMSIDR_EL1) >> 8) & 0xf;
    report(min_interval <= 8, "spe: PMSIDR_EL1.INTERVAL names a recommended minimum");

    wr(PMBPTR_EL1, (u64)buf);
    wr(PMBLIMITR_EL1, ((u64)buf + BUF_SIZE) | 1);
    wr(PMSFCR_EL1, 0);
    wr(PMSEVFR_EL1, 0);
    wr(PMSLATFR_EL1, 0);
    wr(PMSIRR_EL1, 1024);
    isb();
    wr(PMSICR_EL1, 0);
    isb();
    /* E1SPE, CX, PA. */
    wr(PMSCR_EL1, (1UL << 1) | (1UL << 3) | (1UL << 4));
    isb();
    u64 sum = kernel_loop(24);
    wr(PMSCR_EL1, 0);
    isb();
    psb_csync();
    asm volatile("dsb nsh" ::: "memory");
    u64 ptr = rd(PMBPTR_EL1);
    u64 pmbsr = rd(PMBSR_EL1);
    wr(PMBLIMITR_EL1, 0);
    isb();

    u64 len = ptr - (u64)buf;
    struct tally t = decode(buf, len);
    if (len > 0 && len < BUF_SIZE)
        psci_call(SPE_RECORDS, (u64)buf, len, 0);
    report(sum != 0 && len > 0 && len < BUF_SIZE, "spe: PMBPTR_EL1 advanced within the buffer");
    report(pmbsr == 0, "spe: PMBSR_EL1 stays clean");
    report(t.bad == 0 && t.records > 0 && t.pcs == t.records, "spe: every record decodes, one PC each");
    report(t.pcs_in_loop * 100 >= t.pcs * 95, "spe: the sampled PCs lie in the profiled loop");
    report(t.vas > 0 && t.vas_in_data * 100 >= t.vas * 95, "spe: the sampled loads' addresses lie in the array it reads");
    puts("records ");
    put_dec(t.records);
    puts(", PCs in the loop ");
    put_dec(t.pcs_in_loop);
    puts(", loads in the array ");
    put_dec(t.vas_in_data);
    puts(" of ");
    put_dec(t.vas);
    putc('\n');
    return report_summary();
}
