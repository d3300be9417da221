//! The golden vectors of ARM-FACTS §3: bytes, the packet they decode to, and
//! the text perf 6.1 prints for them.

use hyperprof_spe::packet::{decode, OpClass, Packet};
use hyperprof_spe::text::{write_desc, FixedBuf};
use hyperprof_spe::{encode, RecordDecoder};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const GOLDEN: &[(&str, &str)] = &[
    ("b0 f4 d3 29 10 00 80 ff a0", "PC 0xff80001029d3f4 el1 ns=1"),
    ("b0 00 c4 15 08 00 00 ff ff", "PC 0xff00000815c400 el3 ns=1"),
    ("99 0b 00", "LAT 11 ISSUE"),
    ("98 0d 00", "LAT 13 TOT"),
    ("9a 01 00", "LAT 1 XLAT"),
    ("52 16 00", "EV RETIRED L1D-ACCESS TLB-ACCESS"),
    ("42 16", "EV RETIRED L1D-ACCESS TLB-ACCESS"),
    ("52 02 00", "EV RETIRED"),
    ("49 00", "LD GP-REG"),
    ("48 00", "OTHER INSN-OTHER"),
    ("4a 01", "B COND"),
    ("b2 d0 40 d8 70 00 00 ff 00", "VA 0xff000070d840d0"),
    (
        "b3 c0 eb 24 fb 00 00 00 80",
        "PA 0xfb24ebc0 ns=1 ch=0 pat=0",
    ),
    ("71 a5 1f b3 20 14 00 00 00", "TS 86447955877"),
    ("64 34 12 00 00", "CONTEXT 0x1234 el1"),
    ("00", "PAD"),
];

fn desc(p: &Packet) -> String {
    let mut b = FixedBuf::<256>::default();
    write_desc(&mut b, p);
    b.as_str().to_string()
}

#[test]
fn golden_vectors_decode_describe_and_reencode() {
    for (bytes, text) in GOLDEN {
        let b = hex(bytes);
        let (p, n) = decode(&b, 0).unwrap_or_else(|e| panic!("{bytes}: {e}"));
        assert_eq!(n, b.len(), "{bytes}: length");
        assert_eq!(desc(&p), *text, "{bytes}: text");
        let mut out = [0u8; 16];
        let m = encode(&p, &mut out).unwrap();
        assert_eq!(&out[..m], &b[..], "{bytes}: re-encoding");
    }
}

#[test]
fn golden_fields() {
    let (p, _) = decode(&hex("b0 f4 d3 29 10 00 80 ff a0"), 0).unwrap();
    assert_eq!(
        p,
        Packet::Address {
            index: 0,
            payload: 0xa0ff_8000_1029_d3f4,
            extended: false
        }
    );
    let (p, _) = decode(&hex("52 16 00"), 0).unwrap();
    assert_eq!(
        p,
        Packet::Events {
            size: 2,
            bits: 0x16
        }
    );
    let (p, _) = decode(&hex("4a 01"), 0).unwrap();
    assert_eq!(
        p,
        Packet::OpType {
            class: OpClass::Branch,
            payload: 1
        }
    );
    let (p, _) = decode(&hex("71 a5 1f b3 20 14 00 00 00"), 0).unwrap();
    assert_eq!(p, Packet::Timestamp(86447955877));
}

#[test]
fn golden_stream_assembles_into_one_record() {
    // PC, op, events, latencies, VA, PA, context, timestamp.
    let b = hex(
        "b0 f4 d3 29 10 00 80 ff a0  49 00  52 16 00  99 0b 00  98 0d 00 \
         b2 d0 40 d8 70 00 00 ff 00  9a 01 00  b3 c0 eb 24 fb 00 00 00 80 \
         64 34 12 00 00  71 a5 1f b3 20 14 00 00 00  00 00 00",
    );
    let recs: Vec<_> = RecordDecoder::new(&b).collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 1);
    let r = recs[0].1;
    let pc = r.pc.unwrap();
    assert_eq!((pc.addr, pc.el, pc.ns), (0xff_8000_1029_d3f4, 1, true));
    assert_eq!(pc.virtual_address(), 0xffff_8000_1029_d3f4);
    assert_eq!(r.issue_latency, Some(11));
    assert_eq!(r.total_latency, Some(13));
    assert_eq!(r.translation_latency, Some(1));
    assert_eq!(r.data_va, Some(0x00ff_0000_70d8_40d0));
    assert_eq!(r.data_pa.unwrap().addr, 0xfb24ebc0);
    assert_eq!(r.context_el1, Some(0x1234));
    assert_eq!(r.timestamp, Some(86447955877));
    assert!(r.has_event(hyperprof_spe::packet::event::RETIRED));
    assert!(!r.op.unwrap().is_store());
}
