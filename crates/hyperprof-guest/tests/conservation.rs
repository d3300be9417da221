//! Conservation (DESIGN.md invariant 2) over many seeds and configurations:
//! every sampled operation is written, filtered, collided or discarded, and
//! every record written reaches the driver. And determinism: equal seeds,
//! equal bytes.

mod common;

use hyperprof_guest::drivers::spe::{SpeSessionConfig, TypeFilter};
use hyperprof_guest::host;
use hyperprof_spe::RecordDecoder;
use proptest::prelude::*;

fn session() -> impl Strategy<Value = SpeSessionConfig> {
    (
        prop_oneof![Just(256u32), Just(300), Just(1024), Just(4096)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(prop_oneof![
            Just(1u64 << 1),
            Just(1 << 3),
            Just((1 << 1) | (1 << 2))
        ]),
        proptest::option::of((any::<bool>(), any::<bool>(), any::<bool>())),
        proptest::option::of(0u16..200),
        prop_oneof![9 => Just(false), 1 => Just(true)],
    )
        .prop_map(
            |(interval, jitter, user, kernel, ev, ty, lat, discard)| SpeSessionConfig {
                interval,
                jitter,
                user,
                kernel,
                event_filter: ev,
                type_filter: ty.map(|(branches, loads, stores)| TypeFilter {
                    branches,
                    loads,
                    stores,
                }),
                min_latency: lat,
                discard,
                ..SpeSessionConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sampled_operations_are_all_accounted_for(
        spe in session(),
        seed in any::<u64>(),
        pages in 2u64..24,
        ops in 200_000u64..1_500_000,
    ) {
        let mut m = common::machine(1);
        let mut cfg = common::host(ops);
        cfg.spe = Some(spe);
        cfg.seed = seed;
        cfg.spe_buffer_bytes = pages * 4096;
        let r = &host::run(&mut m, &cfg).unwrap()[0];
        let u = r.spe_unit.as_ref().unwrap();
        prop_assert_eq!(u.sampled, u.written + u.filtered + u.collided + u.discarded + r.spe_queued, "{:?}", u);
        prop_assert_eq!(r.spe_queued, 0, "the driver's stop drains the unit");
        let decoded = RecordDecoder::new(&r.spe_data).collect::<Result<Vec<_>, _>>().unwrap();
        prop_assert_eq!(decoded.len() as u64, u.written);
        if spe.discard {
            prop_assert_eq!(u.written, 0);
        }
        if !spe.user && !spe.kernel {
            prop_assert_eq!(u.sampled, 0);
        }
    }
}

#[test]
fn equal_seeds_give_identical_traces_and_counts() {
    let run = |seed| {
        let mut m = common::machine(2);
        let mut cfg = common::host(2_000_000);
        cfg.seed = seed;
        host::run(&mut m, &cfg).unwrap()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.spe_data, y.spe_data);
        assert_eq!(x.counters, y.counters);
        assert_eq!(x.events, y.events);
        assert_eq!(x.access, y.access);
    }
    assert_ne!(a[0].spe_data, c[0].spe_data);
    assert!(!a[0].spe_data.is_empty());
}
