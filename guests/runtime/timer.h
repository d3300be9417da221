/* The Generic Timer as a bare-metal guest uses it: the counters, the EL1
   virtual and physical timers, CNTKCTL_EL1, and the IRQ mask. */
#ifndef HYPERPROF_GUEST_TIMER_H
#define HYPERPROF_GUEST_TIMER_H

#include "runtime.h"

/* CNTV_CTL_EL0 / CNTP_CTL_EL0. */
#define CNT_CTL_ENABLE (1UL << 0)
#define CNT_CTL_IMASK (1UL << 1)
#define CNT_CTL_ISTATUS (1UL << 2)

/* CNTKCTL_EL1: what EL0 may access. */
#define CNTKCTL_EL0PCTEN (1UL << 0)
#define CNTKCTL_EL0VCTEN (1UL << 1)
#define CNTKCTL_EL0VTEN (1UL << 8)
#define CNTKCTL_EL0PTEN (1UL << 9)

static inline u64 cntfrq(void) { return read_sysreg(cntfrq_el0); }

/* The counters, read after an ISB so the read is not hoisted above the
   code it is meant to follow. */
static inline u64 cntvct(void)
{
    isb();
    return read_sysreg(cntvct_el0);
}

static inline u64 cntpct(void)
{
    isb();
    return read_sysreg(cntpct_el0);
}

static inline u64 vtimer_ctl(void) { return read_sysreg(cntv_ctl_el0); }
static inline u64 vtimer_cval(void) { return read_sysreg(cntv_cval_el0); }
static inline u64 vtimer_tval(void) { return read_sysreg(cntv_tval_el0); }

static inline void vtimer_set_ctl(u64 v)
{
    write_sysreg(v, cntv_ctl_el0);
    isb();
}

static inline void vtimer_set_cval(u64 v)
{
    write_sysreg(v, cntv_cval_el0);
    isb();
}

static inline void vtimer_set_tval(u64 v)
{
    write_sysreg(v, cntv_tval_el0);
    isb();
}

static inline u64 ptimer_ctl(void) { return read_sysreg(cntp_ctl_el0); }

static inline void ptimer_set_ctl(u64 v)
{
    write_sysreg(v, cntp_ctl_el0);
    isb();
}

static inline void ptimer_set_cval(u64 v)
{
    write_sysreg(v, cntp_cval_el0);
    isb();
}

/* PSTATE.I: IRQs taken (enable) or held pending (disable). */
static inline void local_irq_enable(void) { asm volatile("msr daifclr, #2" ::: "memory"); }
static inline void local_irq_disable(void) { asm volatile("msr daifset, #2" ::: "memory"); }

static inline void wfi(void) { asm volatile("wfi" ::: "memory"); }

#endif
