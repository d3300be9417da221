/* Entry: EL1h, MMU off, interrupts masked, x0 = the device tree. */
    .section .text.boot, "ax"
    .global _start
_start:
    mov     x19, x0
    ldr     x1, =__stack_top
    mov     sp, x1
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  ldr     x1, =vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      main
    bl      psci_system_off
3:  wfi
    b       3b

/* Sixteen entries of 128 bytes: {current EL with SP0, current EL with
   SPx, lower EL AArch64, lower EL AArch32} x {sync, IRQ, FIQ, SError}.
   Each saves the caller-saved registers and calls
   exception_handler(kind, frame). */
    .macro  vector kind
    .balign 128
    sub     sp, sp, #(8 * 20)
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    mov     x0, #\kind
    b       vector_common
    .endm

    .text
    .balign 2048
    .global vectors
vectors:
    .irp    k, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vector  \k
    .endr

vector_common:
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x30, [sp, #144]
    mov     x1, sp
    bl      exception_handler
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x30, [sp, #144]
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    add     sp, sp, #(8 * 20)
    eret
