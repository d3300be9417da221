//! Physical memory against a flat model: sparse storage, NotRam errors,
//! all-or-nothing writes.

use hyperprof_sim::memory::{MemError, PhysMem};
use proptest::prelude::*;

const BASE: u64 = 0x4000_0000;
const SIZE: u64 = 0x8000; // 8 pages
const BASE2: u64 = BASE + SIZE + 0x2000; // a second region after a 2-page hole
const SIZE2: u64 = 0x2000;

fn is_ram(a: u64) -> bool {
    (BASE..BASE + SIZE).contains(&a) || (BASE2..BASE2 + SIZE2).contains(&a)
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Read(u64, usize),
    Zero(u64),
}

fn op() -> impl Strategy<Value = Op> {
    // Addresses from a little below the first region to a little past the second.
    let addr = (BASE - 0x100)..(BASE2 + SIZE2 + 0x100);
    prop_oneof![
        (
            addr.clone(),
            proptest::collection::vec(any::<u8>(), 0..9000)
        )
            .prop_map(|(a, d)| Op::Write(a, d)),
        (addr.clone(), 0usize..9000).prop_map(|(a, n)| Op::Read(a, n)),
        addr.prop_map(Op::Zero),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn matches_flat_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut mem = PhysMem::new();
        mem.add_ram(BASE, SIZE).unwrap();
        mem.add_ram(BASE2, SIZE2).unwrap();
        // Model: a flat byte array covering [BASE, BASE2 + SIZE2).
        let span = (BASE2 + SIZE2 - BASE) as usize;
        let mut model = vec![0u8; span];
        for op in ops {
            match op {
                Op::Write(a, d) => {
                    let first_bad = (a..a + d.len() as u64).find(|&x| !is_ram(x));
                    let r = mem.write(a, &d);
                    match first_bad {
                        Some(pa) => prop_assert_eq!(r, Err(MemError::NotRam { pa })),
                        None => {
                            prop_assert_eq!(r, Ok(()));
                            let o = (a - BASE) as usize;
                            model[o..o + d.len()].copy_from_slice(&d);
                        }
                    }
                }
                Op::Read(a, n) => {
                    let mut buf = vec![0xA5u8; n];
                    let first_bad = (a..a + n as u64).find(|&x| !is_ram(x));
                    let r = mem.read(a, &mut buf);
                    match first_bad {
                        Some(pa) => prop_assert_eq!(r, Err(MemError::NotRam { pa })),
                        None => {
                            prop_assert_eq!(r, Ok(()));
                            let o = (a - BASE) as usize;
                            prop_assert_eq!(&buf[..], &model[o..o + n]);
                        }
                    }
                }
                Op::Zero(a) => {
                    let page = a & !0xfff;
                    let r = mem.zero_page(a);
                    if is_ram(page) {
                        prop_assert_eq!(r, Ok(()));
                        let o = (page - BASE) as usize;
                        model[o..o + 4096].fill(0);
                    } else {
                        prop_assert_eq!(r, Err(MemError::NotRam { pa: page }));
                    }
                }
            }
        }
        // Whole-memory comparison, region by region, and page accounting.
        let mut buf = vec![0u8; SIZE as usize];
        mem.read(BASE, &mut buf).unwrap();
        prop_assert_eq!(&buf[..], &model[..SIZE as usize]);
        let mut buf2 = vec![0u8; SIZE2 as usize];
        mem.read(BASE2, &mut buf2).unwrap();
        let o2 = (BASE2 - BASE) as usize;
        prop_assert_eq!(&buf2[..], &model[o2..o2 + SIZE2 as usize]);
        prop_assert!(mem.touched_pages() <= ((SIZE + SIZE2) / 4096) as usize);
    }
}

#[test]
fn write_across_a_hole_writes_nothing() {
    let mut mem = PhysMem::new();
    mem.add_ram(BASE, SIZE).unwrap();
    mem.add_ram(BASE2, SIZE2).unwrap();
    let data = vec![0x77u8; (BASE2 + 0x10 - (BASE + SIZE - 0x10)) as usize];
    assert_eq!(
        mem.write(BASE + SIZE - 0x10, &data),
        Err(MemError::NotRam { pa: BASE + SIZE })
    );
    assert_eq!(mem.touched_pages(), 0);
    assert_eq!(mem.read_u64(BASE + SIZE - 8).unwrap(), 0);
    assert_eq!(mem.read_u64(BASE2).unwrap(), 0);
}

#[test]
fn sparse_large_ram_costs_only_touched_pages() {
    let mut mem = PhysMem::new();
    mem.add_ram(0x1_0000_0000, 1 << 40).unwrap(); // 1 TiB
    for i in 0..100u64 {
        mem.write_u64(0x1_0000_0000 + i * 0x100_0000_0000 / 128, i)
            .unwrap();
    }
    assert_eq!(mem.touched_pages(), 100);
    assert_eq!(mem.ram_size(), 1 << 40);
    assert_eq!(
        mem.read_u64(0x1_0000_0000 + 7 * 0x100_0000_0000 / 128)
            .unwrap(),
        7
    );
}
