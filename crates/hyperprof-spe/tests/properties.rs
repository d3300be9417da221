//! Laws of the codec, checked over generated inputs.

use hyperprof_spe::packet::{decode, OpClass, Packet};
use hyperprof_spe::perf_data::{self, AuxBuffer, PerfData};
use hyperprof_spe::record::{CodeAddress, OpType, PhysAddr};
use hyperprof_spe::text::{write_dump_line, DumpWalker, FixedBuf};
use hyperprof_spe::{encode, Record, RecordDecoder, RecordErrorKind};
use proptest::prelude::*;

fn sized_value() -> impl Strategy<Value = (u8, u64)> {
    prop_oneof![
        any::<u8>().prop_map(|v| (1u8, v as u64)),
        any::<u16>().prop_map(|v| (2u8, v as u64)),
        any::<u32>().prop_map(|v| (4u8, v as u64)),
        any::<u64>().prop_map(|v| (8u8, v)),
    ]
}

fn index() -> impl Strategy<Value = (u8, bool)> {
    prop_oneof![(0u8..8, Just(false)), (0u8..32, Just(true))]
}

/// Every packet kind a profiling unit can emit (alignment packets depend on
/// their address and are covered by the dump-walk law).
pub fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        Just(Packet::Pad),
        Just(Packet::End),
        any::<u64>().prop_map(Packet::Timestamp),
        sized_value().prop_map(|(size, bits)| Packet::Events { size, bits }),
        sized_value().prop_map(|(size, value)| Packet::DataSource { size, value }),
        (0u8..4, any::<u32>()).prop_map(|(index, id)| Packet::Context { index, id }),
        (0u8..3, any::<u8>()).prop_map(|(c, payload)| Packet::OpType {
            class: OpClass::from_bits(c),
            payload
        }),
        (index(), any::<u64>()).prop_map(|((index, extended), payload)| Packet::Address {
            index,
            payload,
            extended
        }),
        (index(), any::<u16>()).prop_map(|((index, extended), value)| Packet::Counter {
            index,
            value,
            extended
        }),
    ]
}

fn code_address() -> impl Strategy<Value = CodeAddress> {
    (0u64..(1 << 56), 0u8..4, any::<bool>()).prop_map(|(addr, el, ns)| CodeAddress { addr, el, ns })
}

fn record() -> impl Strategy<Value = Record> {
    let phys = (0u64..(1 << 56), any::<bool>(), any::<bool>(), 0u8..16)
        .prop_map(|(addr, ns, ch, pat)| PhysAddr { addr, ns, ch, pat });
    let op = (0u8..3, any::<u8>()).prop_map(|(c, payload)| OpType {
        class: OpClass::from_bits(c),
        payload,
    });
    (
        (
            proptest::option::of(code_address()),
            proptest::option::of(code_address()),
            proptest::option::of(code_address()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(phys),
            proptest::option::of(op),
            proptest::option::of(any::<u64>()),
        ),
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |((pc, tgt, pbt, va, pa, op, ev), (tot, iss, xl, c1, c2, ds, ts))| Record {
                pc,
                branch_target: tgt,
                prev_branch_target: pbt,
                data_va: va,
                data_pa: pa,
                op,
                events: ev,
                total_latency: tot,
                issue_latency: iss,
                translation_latency: xl,
                context_el1: c1,
                context_el2: c2,
                data_source: ds,
                timestamp: ts,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn packets_round_trip(p in packet()) {
        let mut b = [0u8; 16];
        let n = encode(&p, &mut b).unwrap();
        prop_assert_eq!(n, p.encoded_len());
        prop_assert_eq!(decode(&b[..n], 0), Ok((p, n)));
    }

    #[test]
    fn records_round_trip(recs in proptest::collection::vec(record(), 1..20)) {
        let mut buf = vec![0u8; recs.len() * 128];
        let mut at = 0;
        for r in &recs {
            at += r.encode_padded(&mut buf[at..], 128).unwrap();
        }
        let got: Vec<Record> = RecordDecoder::new(&buf[..at])
            .map(|r| r.map(|(_, r)| r))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(got, recs);
    }

    #[test]
    fn decoder_never_panics_and_reports_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..512), base in any::<usize>()) {
        let _ = decode(&bytes, base);
        let mut last = 0;
        for r in RecordDecoder::with_base(&bytes, base) {
            match r {
                Ok((off, _)) => { prop_assert!(off >= last && off < bytes.len()); last = off; }
                Err(e) => {
                    prop_assert!(e.offset < bytes.len());
                    if let RecordErrorKind::Packet(_) = e.kind {
                        prop_assert!(decode(&bytes[e.offset..], base.wrapping_add(e.offset)).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn dump_walk_covers_every_byte_once(bytes in proptest::collection::vec(any::<u8>(), 0..512), base in 0usize..4096) {
        let mut next = 0;
        let mut out = FixedBuf::<65536>::default();
        for item in DumpWalker::new(&bytes, base) {
            prop_assert_eq!(item.offset, next);
            prop_assert!(item.len >= 1);
            next += item.len;
            write_dump_line(&mut out, &bytes, &item);
        }
        prop_assert_eq!(next, bytes.len());
        let text = out.as_str();
        prop_assert!(text.lines().all(|l| l.starts_with(".  ")));
    }

    #[test]
    fn perf_data_reader_never_panics_on_damaged_files(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut file = Vec::new();
        let buffers = [AuxBuffer { cpu: 1, aux_offset: 0, data: &data }];
        perf_data::write_profile::<()>(&perf_data::Profile::bare(&buffers, 8), &mut |b| { file.extend_from_slice(b); Ok(()) }).unwrap();
        for (at, x) in flips {
            let at = at % file.len();
            file[at] ^= x;
        }
        file.truncate(cut % (file.len() + 1));
        if let Ok(pd) = PerfData::parse(&file) {
            for t in pd.aux_traces() {
                match t {
                    Ok(t) => prop_assert!(t.data_offset + t.data.len() <= file.len()),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }
}
