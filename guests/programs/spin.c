/* spin: a compute-bound loop for measuring instructions per second; the
   iteration count comes from bootargs-free code so QEMU runs it alike. */
#include "runtime.h"

int main(u64 dtb)
{
    (void)dtb;
    u64 h = 0xcbf29ce484222325UL;
    static u8 data[256];
    for (u64 i = 0; i < sizeof(data); i++)
        data[i] = (u8)(i * 7 + 3);
    for (u64 round = 0; round < 200000; round++)
        for (u64 i = 0; i < sizeof(data); i += 4) {
            h ^= data[i] | (u64)data[i + 1] << 8;
            h *= 0x100000001b3UL;
            h += h >> 29;
        }
    puts("spin hash ");
    put_hex(h);
    putc('\n');
    return 0;
}
