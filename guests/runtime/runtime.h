/* The guests' bare-metal runtime: console, PSCI, exceptions, system
   registers. */
#ifndef HYPERPROF_GUEST_RUNTIME_H
#define HYPERPROF_GUEST_RUNTIME_H

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define read_sysreg(r) ({ u64 __v; asm volatile("mrs %0, " #r : "=r"(__v)); __v; })
#define write_sysreg(v, r) asm volatile("msr " #r ", %0" : : "r"((u64)(v)))
#define isb() asm volatile("isb" ::: "memory")

/* The registers vector_common saved, x0..x18 and x30. */
struct frame {
    u64 x[19];
    u64 lr;
};

/* Exception handlers a program may install; kind is the vector index
   (0..15). Return to resume at ELR_EL1. Without one, the runtime
   prints the exception and powers off. */
typedef void (*handler_fn)(u64 kind, struct frame *f);
extern handler_fn sync_handler, irq_handler;

void putc(char c);
void puts(const char *s);
void put_hex(u64 v);
void put_dec(u64 v);
u64 psci_call(u64 fid, u64 a1, u64 a2, u64 a3);
void psci_system_off(void) __attribute__((noreturn));
int main(u64 dtb);

/* Identity-maps devices and RAM (2 MiB blocks) except the 2 MiB block at
   `hole`, and turns the MMU and caches on. */
void mmu_enable(u64 ram_base, u64 ram_size, u64 hole);

/* kvm-unit-tests-style reporting. */
void report(int ok, const char *name);
int report_summary(void);

#endif
