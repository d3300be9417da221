/* profiler: a guest profiler. Inside the VM it does what Linux's
   arm_spe_pmu driver and `perf record -e arm_spe//` do: it probes the
   profiling unit (PMSIDR_EL1, PMBIDR_EL1), gives each CPU a buffer, programs
   the sampling controls and the buffer, samples EL1 while real workloads
   run, and services buffer-full interrupts by handing the full buffer to
   the VMM (hyperprof's vendor hypercall SPE_RECORDS) and restarting it at
   its base: the buffer wraps. At the end it stops, drains (PSB CSYNC,
   DSB) and hands over the rest, so the VMM can write the records as this
   VM's perf.data.

   The workloads are functions with their own names, built with frame
   pointers so that stacks can be walked: copy_words (a memcpy), hash_lookup
   (open addressing), chase_pointers (a shuffled list), interpret (a
   bytecode loop), and bump_counter on two vCPUs whose counters share one
   cache line (false sharing), when the VM has a second vCPU.

   Bootargs: "profiler.interval=N" (the sampling interval, default 1024),
   "profiler.buffer=BYTES" (each CPU's buffer, a multiple of 4 KiB, default
   16 KiB). Without SPE (QEMU) it runs the workloads unprofiled and says so. */
#include "fdt.h"
#include "runtime.h"
#include "gic.h"
#include "spe.h"

/* hyperprof's vendor hypervisor service (SMCCC owner 6). */
#define HVC_SPE_RECORDS 0xc6000001UL
#define SPE_RECORDS_LOST 1UL
#define HVC_NO_SPACE ((u64)-3)
/* The SPE buffer interrupt's PPI, as the device tree gives it. */
#define SPE_PPI 21
#define PSCI_CPU_ON 0xc4000003UL
#define PSCI_CPU_OFF 0x84000002UL

#define MAX_CPUS 2
#define PAGE 4096UL
#define MAX_BUFFER (64UL << 10)
/* What CONTEXTIDR_EL1 holds on CPU n: the thread id the VMM's perf.data
   names (its process is PROFILER_PID). */
#define PROFILER_PID 1000UL

#define irq_unmask() asm volatile("msr daifclr, #2; isb" ::: "memory")
#define irq_mask() asm volatile("msr daifset, #2; isb" ::: "memory")

/* ---- The driver. ---- */

/* What the probe found (arm_spe_pmu's per-device state). */
static struct {
    u64 pmsver;
    u64 min_interval;
    u64 max_record;
    u64 align;
    u64 max_buffer; /* PMBIDR_EL1.MaxBuffSize decoded, 0: no limit */
} unit;

/* One CPU's session (arm_spe_pmu's per-event buffer). */
struct session {
    u8 *base;
    u64 size;
    u64 pieces;      /* hand-overs the VMM accepted */
    u64 records;     /* whole records in them */
    u64 bad;         /* pieces that did not decode as whole records */
    u64 bytes;       /* bytes it accepted */
    u64 refused;     /* bytes it refused (its store was full) */
    u64 truncations; /* pieces flagged: records lost before them */
    u64 irqs;        /* buffer-full interrupts serviced */
    u64 collisions;  /* PMBSR_EL1.COLL seen */
    u64 faults;      /* buffer faults (the session stopped) */
    int lost;        /* records lost since the last piece handed over */
    int running;
};

static u8 buffers[MAX_CPUS][MAX_BUFFER] __attribute__((aligned(4096)));
static struct session sessions[MAX_CPUS];
static u64 interval = 1024, buffer_size = 16UL << 10;

static u64 this_cpu(void)
{
    return read_sysreg(mpidr_el1) & 0xff;
}

static u64 hvc4(u64 fid, u64 a1, u64 a2, u64 a3)
{
    return psci_call(fid, a1, a2, a3);
}

/* PMBIDR_EL1.MaxBuffSize (bits 47:32): M << 12 when E is 0, else
   (1 << (9 + E + 11)) | (M << (E + 11)). */
static u64 max_buff_size(u64 pmbidr)
{
    u64 field = (pmbidr >> 32) & 0xffff;
    u64 e = (field >> 9) & 0x1f, m = field & 0x1ff;
    if (e == 0)
        return m << 12;
    return (1UL << (9 + e + 11)) | (m << (e + 11));
}

/* The probe: whether this CPU has a profiling unit the guest may use. */
static int spe_probe(void)
{
    unit.pmsver = (read_sysreg(id_aa64dfr0_el1) >> 32) & 0xf;
    if (!unit.pmsver)
        return 0;
    u64 pmbidr = spe_rd(PMBIDR_EL1);
    if (pmbidr & (1UL << 4)) {
        puts("profiler: PMBIDR_EL1.P set: the buffer belongs to a higher EL\n");
        return 0;
    }
    unit.align = 1UL << (pmbidr & 0xf);
    if (unit.pmsver >= 6)
        unit.max_buffer = max_buff_size(pmbidr);
    u64 pmsidr = spe_rd(PMSIDR_EL1);
    static const u64 intervals[] = {256, 512, 768, 1024, 1536, 2048, 3072, 4096};
    u64 field = (pmsidr >> 8) & 0xf;
    unit.min_interval = field == 0 ? 256 : field <= 8 ? intervals[field - 1] : 4096;
    unit.max_record = 1UL << ((pmsidr >> 12) & 0xf);
    return 1;
}

static void count_record(const struct spe_record *r, void *ctx)
{
    (void)r;
    (void)ctx;
}

/* Hands [base, base + len) to the VMM; a refusal marks records lost.
   Called with sampling stopped (PMBSR_EL1.S set, or PMSCR_EL1 cleared), so
   counting the piece's records samples nothing. */
static void hand_over(struct session *s, u64 len)
{
    if (len == 0)
        return;
    struct spe_decoded d = spe_decode(s->base, len, count_record, 0);
    u64 flags = s->lost ? SPE_RECORDS_LOST : 0;
    u64 r = hvc4(HVC_SPE_RECORDS, (u64)s->base, len, flags);
    if (r == 0) {
        s->pieces++;
        s->records += d.records;
        s->bad += d.bad || d.bytes != len;
        s->bytes += len;
        s->truncations += s->lost;
        s->lost = 0;
    } else {
        s->refused += len;
        s->lost = 1;
    }
}

/* Points the buffer at its base and enables it (aux_output_begin). */
static void buffer_begin(struct session *s)
{
    spe_wr(PMBPTR_EL1, (u64)s->base);
    spe_wr(PMBLIMITR_EL1, ((u64)s->base + s->size) | PMBLIMITR_E);
}

/* Starts sampling EL1 on this CPU. */
static void spe_start(void)
{
    struct session *s = &sessions[this_cpu()];
    s->base = buffers[this_cpu()];
    s->size = buffer_size;
    s->running = 1;
    write_sysreg(PROFILER_PID + this_cpu(), contextidr_el1);
    buffer_begin(s);
    /* No filters: every sampled operation is recorded. */
    spe_wr(PMSFCR_EL1, 0);
    spe_wr(PMSEVFR_EL1, 0);
    spe_wr(PMSLATFR_EL1, 0);
    spe_wr(PMSIRR_EL1, interval & ~0xffUL);
    isb();
    spe_wr(PMSICR_EL1, 0);
    isb();
    spe_wr(PMSCR_EL1, PMSCR_E1SPE | PMSCR_CX | PMSCR_TS);
    isb();
}

/* Stops sampling, drains the unit and hands over what the buffer holds. */
static void spe_stop(void)
{
    struct session *s = &sessions[this_cpu()];
    spe_wr(PMSCR_EL1, 0);
    isb();
    spe_drain();
    u64 end = spe_rd(PMBPTR_EL1);
    spe_wr(PMBLIMITR_EL1, 0);
    isb();
    if (s->running)
        hand_over(s, end - (u64)s->base);
    s->running = 0;
}

/* The profiling buffer's interrupt (PMBIRQ): the handler of its PPI,
   INTID 21, which the GIC driver acknowledges and ends. Buffer full: hand the full buffer over and restart it at its
   base (the wrap). A fault: stop the session. Then clear PMBSR_EL1, which
   drops the line. */
static void spe_irq(u64 kind, struct frame *f)
{
    (void)kind;
    (void)f;
    struct session *s = &sessions[this_cpu()];
    spe_drain();
    isb();
    u64 pmbsr = spe_rd(PMBSR_EL1);
    if (!(pmbsr & PMBSR_S))
        return;
    s->irqs++;
    s->collisions += (pmbsr & PMBSR_COLL) != 0;
    u64 end = spe_rd(PMBPTR_EL1);
    if (PMBSR_EC(pmbsr) == PMBSR_EC_BUF && PMBSR_MSS(pmbsr) == 1 && s->running) {
        hand_over(s, end - (u64)s->base);
        /* A partial last record (DL): the records after it follow a gap. */
        s->lost |= (pmbsr & PMBSR_DL) != 0;
        buffer_begin(s);
    } else {
        s->faults++;
        s->running = 0;
        spe_wr(PMBLIMITR_EL1, 0);
    }
    /* The new buffer is in place before the event is cleared. */
    isb();
    spe_wr(PMBSR_EL1, 0);
    isb();
}

/* ---- The workloads. ---- */

#define COPY_WORDS (8UL << 10)
u64 copy_src[COPY_WORDS], copy_dst[COPY_WORDS];

/* A memcpy of whole words, four at a time. */
__attribute__((noinline)) void copy_words(u64 *dst, const u64 *src, u64 words)
{
    for (u64 i = 0; i + 4 <= words; i += 4) {
        u64 a = src[i], b = src[i + 1], c = src[i + 2], d = src[i + 3];
        dst[i] = a;
        dst[i + 1] = b;
        dst[i + 2] = c;
        dst[i + 3] = d;
    }
}

__attribute__((noinline)) u64 run_copy(u64 rounds)
{
    for (u64 i = 0; i < COPY_WORDS; i++)
        copy_src[i] = i * 0x9e3779b97f4a7c15UL;
    for (u64 r = 0; r < rounds; r++)
        copy_words(copy_dst, copy_src, COPY_WORDS);
    return copy_dst[COPY_WORDS - 1];
}

#define HASH_SLOTS (8UL << 10)
struct slot {
    u64 key, value;
};
struct slot table[HASH_SLOTS];

static u64 hash(u64 key)
{
    key ^= key >> 31;
    key *= 0xbf58476d1ce4e5b9UL;
    return key ^ (key >> 29);
}

__attribute__((noinline)) void hash_insert(u64 key, u64 value)
{
    for (u64 i = hash(key);; i++) {
        struct slot *s = &table[i & (HASH_SLOTS - 1)];
        if (s->key == 0 || s->key == key) {
            s->key = key;
            s->value = value;
            return;
        }
    }
}

/* The value stored under `key`, or 0; probes linearly from its hash. */
__attribute__((noinline)) u64 hash_lookup(u64 key)
{
    for (u64 i = hash(key);; i++) {
        struct slot *s = &table[i & (HASH_SLOTS - 1)];
        if (s->key == key)
            return s->value;
        if (s->key == 0)
            return 0;
    }
}

__attribute__((noinline)) u64 run_hash(u64 lookups)
{
    /* Half full: the keys 1, 3, 5, ...; lookups of even keys miss. */
    for (u64 k = 1; k < HASH_SLOTS; k += 2)
        hash_insert(k, k * 7);
    u64 sum = 0, x = 12345;
    for (u64 i = 0; i < lookups; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        sum += hash_lookup((x >> 33) % HASH_SLOTS + 1);
    }
    return sum;
}

#define NODES (8UL << 10)
struct node {
    struct node *next;
    u64 pad[7]; /* one node per 64-byte line */
};
struct node nodes[NODES];

/* Links every node into one cycle in a shuffled order. */
__attribute__((noinline)) void link_nodes(void)
{
    static u32 order[NODES];
    for (u64 i = 0; i < NODES; i++)
        order[i] = (u32)i;
    u64 x = 99;
    for (u64 i = NODES - 1; i > 0; i--) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        u64 j = (x >> 33) % (i + 1);
        u32 t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (u64 i = 0; i < NODES; i++)
        nodes[order[i]].next = &nodes[order[(i + 1) % NODES]];
}

/* Follows `steps` links: each load's address is the previous load's value. */
__attribute__((noinline)) struct node *chase_pointers(struct node *n, u64 steps)
{
    for (u64 i = 0; i < steps; i++)
        n = n->next;
    return n;
}

__attribute__((noinline)) u64 run_chase(u64 steps)
{
    link_nodes();
    return (u64)chase_pointers(&nodes[0], steps);
}

/* A stack machine's instructions. */
enum op { OP_PUSH, OP_LOAD, OP_STORE, OP_ADD, OP_MUL, OP_DEC, OP_JNZ, OP_HALT };
struct insn {
    u8 op;
    u64 arg;
};

u64 vars[4];

/* Runs `prog` until HALT: one indirect branch per instruction. */
__attribute__((noinline)) u64 interpret(const struct insn *prog)
{
    u64 stack[16];
    u64 sp = 0;
    for (u64 pc = 0;;) {
        const struct insn *i = &prog[pc++];
        switch (i->op) {
        case OP_PUSH:
            stack[sp++ & 15] = i->arg;
            break;
        case OP_LOAD:
            stack[sp++ & 15] = vars[i->arg & 3];
            break;
        case OP_STORE:
            vars[i->arg & 3] = stack[--sp & 15];
            break;
        case OP_ADD:
            sp--;
            stack[(sp - 1) & 15] += stack[sp & 15];
            break;
        case OP_MUL:
            sp--;
            stack[(sp - 1) & 15] *= stack[sp & 15];
            break;
        case OP_DEC:
            stack[(sp - 1) & 15]--;
            break;
        case OP_JNZ:
            if (stack[--sp & 15])
                pc = i->arg;
            break;
        default:
            return vars[0];
        }
    }
}

__attribute__((noinline)) u64 run_interpreter(u64 iterations)
{
    /* acc = acc * 31 + counter, while --counter. */
    static const struct insn prog[] = {
        {OP_LOAD, 0}, {OP_PUSH, 31}, {OP_MUL, 0}, {OP_LOAD, 1}, {OP_ADD, 0},
        {OP_STORE, 0}, {OP_LOAD, 1}, {OP_DEC, 0}, {OP_STORE, 1}, {OP_LOAD, 1},
        {OP_JNZ, 0}, {OP_HALT, 0},
    };
    vars[0] = 1;
    vars[1] = iterations;
    return interpret(prog);
}

/* Two counters in one 64-byte line, one per vCPU: false sharing. The
   rest of the line is padding, so that nothing else shares it. */
struct {
    volatile u64 counter[2];
    u64 pad[6];
} shared_line __attribute__((aligned(64)));

__attribute__((noinline)) void bump_counter(volatile u64 *counter, u64 times)
{
    for (u64 i = 0; i < times; i++)
        *counter += 1;
}

/* ---- The second vCPU. ---- */

#define PAIR_BUMPS 60000UL
static volatile u64 secondary_done;
static u64 secondary_stack[2048] __attribute__((aligned(16)));
/* The primary's MMU set-up, which the secondary copies. */
static u64 mmu_mair, mmu_tcr, mmu_ttbr0, mmu_sctlr;

void secondary_entry(void);
/* PSCI CPU_ON enters here with x0 = the stack top (the context id). */
asm(".pushsection .text\n"
    ".global secondary_entry\n"
    "secondary_entry:\n"
    "    mov sp, x0\n"
    "    mov x29, xzr\n"
    "    mov x30, xzr\n"
    "    ldr x1, =vectors\n"
    "    msr vbar_el1, x1\n"
    "    isb\n"
    "    bl secondary_main\n"
    "1:  wfi\n"
    "    b 1b\n"
    ".popsection\n");

void secondary_main(void)
{
    write_sysreg(mmu_mair, mair_el1);
    write_sysreg(mmu_tcr, tcr_el1);
    write_sysreg(mmu_ttbr0, ttbr0_el1);
    asm volatile("dsb ish; tlbi vmalle1; dsb ish" ::: "memory");
    isb();
    write_sysreg(mmu_sctlr, sctlr_el1);
    isb();
    if (unit.pmsver) {
        if (!gic_init_cpu())
            puts("profiler: no GIC redistributor for CPU 1\n");
        gic_enable(SPE_PPI);
        spe_start();
        irq_unmask();
    }
    bump_counter(&shared_line.counter[1], PAIR_BUMPS);
    if (unit.pmsver) {
        irq_mask();
        spe_stop();
    }
    asm volatile("dmb ish" ::: "memory");
    secondary_done = 1;
    psci_call(PSCI_CPU_OFF, 0, 0, 0);
}

/* The pair: this vCPU and vCPU 1 bump the two halves of one line. */
__attribute__((noinline)) int run_pair(void)
{
    u64 top = (u64)&secondary_stack[2048];
    if (psci_call(PSCI_CPU_ON, 1, (u64)secondary_entry, top) != 0)
        return 0;
    bump_counter(&shared_line.counter[0], PAIR_BUMPS);
    while (!secondary_done)
        asm volatile("yield" ::: "memory");
    return 1;
}

/* ---- Reporting. ---- */

static void put_field(const char *name, u64 v)
{
    puts(name);
    put_dec(v);
}

static void summary(u64 cpus)
{
    u64 bytes = 0, pieces = 0, records = 0, refused = 0, truncations = 0;
    for (u64 c = 0; c < cpus; c++) {
        struct session *s = &sessions[c];
        put_field("profiler: cpu ", c);
        put_field(": ", s->pieces);
        put_field(" pieces, ", s->bytes);
        put_field(" bytes, ", s->records);
        put_field(" records handed over, ", s->irqs);
        put_field(" buffer-full interrupts, ", s->truncations);
        put_field(" truncations, ", s->refused);
        put_field(" bytes refused, ", s->collisions);
        put_field(" collisions, ", s->faults);
        put_field(" faults, ", s->bad);
        puts(" bad pieces\n");
        bytes += s->bytes;
        pieces += s->pieces;
        records += s->records;
        refused += s->refused;
        truncations += s->truncations;
    }
    put_field("profiler: ", pieces);
    put_field(" pieces, ", bytes);
    put_field(" bytes, ", records);
    put_field(" records, ", truncations);
    put_field(" truncations, ", refused);
    puts(" bytes refused\n");
}

int main(u64 dtb)
{
    struct fdt_info info = fdt_read(dtb);
    const char *args = info.bootargs ? info.bootargs : "";
    u64 ram_base = info.ram_size ? info.ram_base : 0x40000000UL;
    u64 ram_size = info.ram_size ? info.ram_size : 128UL << 20;
    interval = bootarg_u64(args, "profiler.interval", interval);
    buffer_size = bootarg_u64(args, "profiler.buffer", buffer_size);
    /* Identity map of RAM; the hole lies past its end. */
    mmu_enable(ram_base, ram_size, ram_base + ram_size);
    mmu_mair = read_sysreg(mair_el1);
    mmu_tcr = read_sysreg(tcr_el1);
    mmu_ttbr0 = read_sysreg(ttbr0_el1);
    mmu_sctlr = read_sysreg(sctlr_el1);

    int spe = spe_probe();
    if (spe) {
        if (interval < unit.min_interval)
            interval = unit.min_interval;
        if (buffer_size > MAX_BUFFER)
            buffer_size = MAX_BUFFER;
        if (unit.max_buffer && buffer_size > unit.max_buffer)
            buffer_size = unit.max_buffer;
        if (buffer_size < 2 * PAGE || buffer_size % PAGE || buffer_size < 4 * unit.max_record) {
            puts("profiler: profiler.buffer must be a multiple of 4 KiB, at least 8 KiB\n");
            return 1;
        }
        puts("profiler: PMSVer ");
        put_dec(unit.pmsver);
        put_field(", interval ", interval);
        put_field(", buffer ", buffer_size);
        put_field(" bytes per CPU, records up to ", unit.max_record);
        puts(" bytes\n");
        gic_init_dist();
        if (!gic_init_cpu()) {
            puts("profiler: no GIC redistributor for this CPU\n");
            return 1;
        }
        gic_request(SPE_PPI, spe_irq);
        spe_start();
        irq_unmask();
    } else {
        puts("profiler: no SPE: the workloads run unprofiled\n");
    }
    u64 check = run_copy(24);
    check ^= run_hash(12000);
    check ^= run_chase(60000);
    check ^= run_interpreter(4000);
    int pair = run_pair();
    if (spe) {
        irq_mask();
        spe_stop();
    }
    puts("profiler: workloads done, check ");
    put_hex(check);
    puts(pair ? ", false-sharing pair on 2 vCPUs, counters " : ", false-sharing pair skipped (one vCPU)\n");
    if (pair) {
        put_dec(shared_line.counter[0]);
        putc('+');
        put_dec(shared_line.counter[1]);
        putc('\n');
    }
    if (spe)
        summary(pair ? 2 : 1);
    return 0;
}
