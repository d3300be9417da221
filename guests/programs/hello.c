/* hello: the console, PSCI and a little arithmetic; the first image the
   board boots, and the one compared with QEMU's output. */
#include "runtime.h"

static u64 sieve_count(u64 n)
{
    static u8 composite[4096];
    u64 count = 0;
    for (u64 i = 2; i < n; i++) {
        if (composite[i])
            continue;
        count++;
        for (u64 j = i * i; j < n; j += i)
            composite[j] = 1;
    }
    return count;
}

int main(u64 dtb)
{
    u64 v = psci_call(0x84000000, 0, 0, 0);
    puts("hello from a hyperprof guest\n");
    puts("PSCI ");
    put_dec(v >> 16);
    putc('.');
    put_dec(v & 0xffff);
    puts("\ndevice tree magic ");
    put_hex(__builtin_bswap32(*(volatile u32 *)dtb));
    puts("\nCurrentEL ");
    put_dec(read_sysreg(CurrentEL) >> 2);
    puts("\nprimes below 4096: ");
    put_dec(sieve_count(4096));
    putc('\n');
    return 0;
}
