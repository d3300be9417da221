/* handover: hyperprof's vendor call SPE_RECORDS (SMCCC owner 6, function 1)
   as a guest profiler uses it, and its argument checks: a piece that says
   records were lost before it (X3 bit 0, no bytes), a piece outside guest
   RAM, unknown flag bits and a piece longer than 16 MiB. Where the service
   does not exist (QEMU) the first call answers NOT_SUPPORTED: SKIP. */
#include "runtime.h"

#define SPE_RECORDS 0xC6000001UL
#define FLAG_TRUNCATED 1UL
#define SUCCESS 0UL
#define NOT_SUPPORTED ((u64)-1)
#define INVALID_PARAMETERS ((u64)-2)

static u8 piece[64];

int main(u64 dtb)
{
    (void)dtb;
    u64 r = psci_call(SPE_RECORDS, (u64)piece, 0, FLAG_TRUNCATED);
    if (r == NOT_SUPPORTED) {
        puts("SKIP: handover: no SPE_RECORDS service\n");
        return report_summary();
    }
    report(r == SUCCESS, "handover: an empty piece after lost records is taken");
    r = psci_call(SPE_RECORDS, 0x1000, 64, 0);
    report(r == INVALID_PARAMETERS, "handover: a piece outside guest RAM is refused");
    r = psci_call(SPE_RECORDS, (u64)piece, 64, 2);
    report(r == INVALID_PARAMETERS, "handover: unknown flag bits are refused");
    r = psci_call(SPE_RECORDS, (u64)piece, (16UL << 20) + 1, 0);
    report(r == INVALID_PARAMETERS, "handover: a piece over 16 MiB is refused");
    r = psci_call(0xC6000002UL, 0, 0, 0);
    report(r == NOT_SUPPORTED, "handover: an unknown function of the service is NOT_SUPPORTED");
    return report_summary();
}
