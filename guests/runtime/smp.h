/* Secondary CPUs for programs that use several: PSCI CPU_ON with a
   per-CPU boot block, and a console lock. Linked only into the programs
   the Makefile names (SMP_PROGRAMS). */
#ifndef HYPERPROF_GUEST_SMP_H
#define HYPERPROF_GUEST_SMP_H

#include "runtime.h"

#define PSCI_CPU_OFF 0x84000002UL
#define PSCI_CPU_ON64 0xC4000003UL
#define PSCI_AFFINITY_INFO64 0xC4000004UL
#define PSCI_FEATURES 0x8400000AUL
#define PSCI_VERSION 0x84000000UL
#define PSCI_SYSTEM_OFF 0x84000008UL

#define PSCI_SUCCESS 0L
#define PSCI_NOT_SUPPORTED (-1L)
#define PSCI_INVALID_PARAMETERS (-2L)
#define PSCI_ALREADY_ON (-4L)

#define AFFINITY_ON 0L
#define AFFINITY_OFF 1L

#define MPIDR_AFFINITY 0xff00ffffffUL

struct secondary;
typedef void (*secondary_fn)(struct secondary *s);

/* What a secondary CPU starts with: CPU_ON's context id is its address.
   The offsets of the first seven fields are known to secondary.S. */
struct secondary {
    u64 stack_top;   /* 0: 16-byte aligned top of its stack */
    u64 mair;        /* 8: the primary's MAIR_EL1 ... */
    u64 tcr;         /* 16: ... TCR_EL1 ... */
    u64 ttbr0;       /* 24: ... TTBR0_EL1 ... */
    u64 sctlr;       /* 32: ... and SCTLR_EL1: the same MMU set-up */
    u64 x0;          /* 40: what X0 held at the entry point */
    secondary_fn fn; /* 48: what it runs; then it calls CPU_OFF */
    u64 mpidr;       /* its MPIDR affinity */
    u64 index;       /* its place in the device tree's /cpus */
};

/* PSCI CPU_ON of `s->mpidr` at the runtime's secondary entry with the
   context id `s`, after filling in the MMU set-up of the calling CPU and
   cleaning `s` to the point of coherency (the new CPU starts with its
   MMU and caches off). Returns the PSCI status. */
long cpu_on(struct secondary *s);

/* AFFINITY_INFO at level 0. */
long affinity_info(u64 mpidr);

/* A lock of LDAXR/STXR and STLR. */
void spin_lock(u32 *lock);
void spin_unlock(u32 *lock);

/* Serialises console lines between CPUs. */
extern u32 console_lock;

#endif
