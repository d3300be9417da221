/* Entry of a secondary CPU started by PSCI CPU_ON: EL1h, MMU and caches
   off, interrupts masked, x0 = the context id, the address of its
   struct secondary (smp.h). Takes the primary's MMU set-up before the
   first store, so that every access of the CPU is cacheable like the
   primary's, then its stack and the vectors, and runs secondary_main. */
    .text
    .balign 4
    .global secondary_entry
secondary_entry:
    mov     x19, x0
    ldr     x1, [x19, #8]
    msr     mair_el1, x1
    ldr     x1, [x19, #16]
    msr     tcr_el1, x1
    ldr     x1, [x19, #24]
    msr     ttbr0_el1, x1
    dsb     nsh
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x1, [x19, #32]
    msr     sctlr_el1, x1
    isb
    str     x19, [x19, #40]
    ldr     x1, [x19, #0]
    mov     sp, x1
    ldr     x1, =vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      secondary_main
1:  wfi
    b       1b
