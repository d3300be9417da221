/* run_el0(fn, stack_top): runs fn at EL0 on its own stack until it makes
   the supervisor call SVC #EL0_EXIT, then returns at EL1 with every
   callee-saved register as it was. The runtime's sync handler for that
   call resumes at el0_exit. */
    .text
    .global run_el0
run_el0:
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    msr     sp_el0, x1
    msr     elr_el1, x0
    mov     x2, #0x3c0          /* EL0t, D, A, I, F masked */
    msr     spsr_el1, x2
    eret
    .global el0_exit
el0_exit:
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
