/* A freestanding workload for the compiled-code differential test: what
 * compilers emit for integer code (loops, calls, switch tables, division,
 * 128-bit multiply, bit tricks, byte/halfword memory, recursion, atomics),
 * printing results with the write syscall. Built with -mgeneral-regs-only. */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

static long sys3(long n, long a, long b, long c) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}

static char out[4096];
static int outlen;

static void put_hex(const char *tag, u64 v) {
    while (*tag) out[outlen++] = *tag++;
    out[outlen++] = '=';
    for (int i = 60; i >= 0; i -= 4) out[outlen++] = "0123456789abcdef"[(v >> i) & 15];
    out[outlen++] = '\n';
}

static u64 rng = 0x243f6a8885a308d3ul;
static u64 next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static u32 arr[512];
static u8 bytes[1024];
static u16 halves[256];

static void sort(u32 *a, int n) {
    for (int i = 1; i < n; i++) {
        u32 v = a[i];
        int j = i - 1;
        while (j >= 0 && a[j] > v) { a[j + 1] = a[j]; j--; }
        a[j + 1] = v;
    }
}

static u32 crc32(const u8 *p, int n) {
    u32 c = 0xffffffffu;
    for (int i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
    return ~c;
}

static i64 fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/* libgcc's __popcountdi2 uses Advanced SIMD, which the engine does not
 * implement: count bits by hand. */
static int popcount(u64 v) {
    int n = 0;
    while (v) { v &= v - 1; n++; }
    return n;
}

static int classify(u64 v) {
    switch (v % 7) {
    case 0: return 11;
    case 1: return (int)(v >> 3) & 5;
    case 2: return 29;
    case 3: return -4;
    case 4: return (int)popcount(v);
    case 5: return __builtin_clzl(v | 1);
    default: return (int)(v & 0xff);
    }
}

void _start(void) {
    for (int i = 0; i < 512; i++) arr[i] = (u32)next();
    for (int i = 0; i < 1024; i++) bytes[i] = (u8)next();
    for (int i = 0; i < 256; i++) halves[i] = (u16)next();
    sort(arr, 512);
    u64 h = 0;
    for (int i = 0; i < 512; i++) h = h * 31 + arr[i];
    put_hex("sorted", h);
    put_hex("crc", crc32(bytes, 1024));
    put_hex("fib", (u64)fib(20));
    i64 acc = 0;
    for (int i = 0; i < 2000; i++) {
        u64 v = next();
        i64 s = (i64)v;
        acc += classify(v);
        acc ^= (i64)(v / (u64)(i + 3)) + s / (i - 1000 == 0 ? 7 : i - 1000) + (i64)(v % 1000003);
        unsigned __int128 p = (unsigned __int128)v * (v ^ 0x9e3779b97f4a7c15ul);
        acc += (i64)(p >> 64) + (i64)__builtin_bswap64(v) + (i64)(__builtin_ctzl(v | 0x8000000000000000ul));
    }
    put_hex("mixed", (u64)acc);
    u64 hs = 0;
    for (int i = 0; i < 256; i++) hs += (u64)(short)halves[i] * (u64)(i + 1) + (u64)(signed char)bytes[i];
    put_hex("halves", hs);
    static u64 counter;
    for (int i = 0; i < 100; i++) __atomic_fetch_add(&counter, (u64)i, __ATOMIC_SEQ_CST);
    u64 expect = 5;
    __atomic_compare_exchange_n(&counter, &expect, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    put_hex("atomic", counter + expect);
    sys3(64, 1, (long)out, outlen);
    sys3(93, 0, 0, 0);
    for (;;) {}
}
