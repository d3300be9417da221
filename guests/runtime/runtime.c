#include "runtime.h"

#define UART_DR 0x09000000UL
#define UART_FR 0x09000018UL
#define FR_TXFF (1u << 5)

handler_fn sync_handler, irq_handler;

void putc(char c)
{
    while (*(volatile u32 *)UART_FR & FR_TXFF)
        ;
    *(volatile u32 *)UART_DR = (u8)c;
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

void put_hex(u64 v)
{
    puts("0x");
    for (int i = 60; i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 0xf]);
}

void put_dec(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts(&buf[i]);
}

u64 psci_call(u64 fid, u64 a1, u64 a2, u64 a3)
{
    register u64 x0 asm("x0") = fid;
    register u64 x1 asm("x1") = a1;
    register u64 x2 asm("x2") = a2;
    register u64 x3 asm("x3") = a3;
    asm volatile("hvc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}

void psci_system_off(void)
{
    psci_call(0x84000008, 0, 0, 0);
    for (;;)
        asm volatile("wfi");
}

void exception_handler(u64 kind, struct frame *f)
{
    handler_fn h = (kind & 3) == 1 ? irq_handler : (kind & 3) == 0 ? sync_handler : 0;
    if (h) {
        h(kind, f);
        return;
    }
    puts("unexpected exception: vector ");
    put_dec(kind);
    puts(" ESR_EL1 ");
    put_hex(read_sysreg(esr_el1));
    puts(" ELR_EL1 ");
    put_hex(read_sysreg(elr_el1));
    puts(" FAR_EL1 ");
    put_hex(read_sysreg(far_el1));
    putc('\n');
    psci_system_off();
}

static u64 tests, failures;

void report(int ok, const char *name)
{
    tests++;
    if (!ok)
        failures++;
    puts(ok ? "PASS: " : "FAIL: ");
    puts(name);
    putc('\n');
}

int report_summary(void)
{
    puts("SUMMARY: ");
    put_dec(tests);
    puts(" tests, ");
    put_dec(failures);
    puts(" unexpected failures\n");
    return failures ? 1 : 0;
}
