use super::*;

const RAM: Region = Region {
    base: 0x4000_0000,
    size: 128 << 20,
};

/// A segment for [`elf`]: (vaddr, paddr, bytes, memsz).
type Seg = (u64, u64, Vec<u8>, u64);

/// An ELF64 AArch64 executable with the given PT_LOAD segments.
fn elf(entry: u64, segs: &[Seg]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(ELF_MAGIC);
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&entry.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
    let mut data_off = 64 + 56 * segs.len() as u64;
    let mut data = Vec::new();
    for (vaddr, paddr, bytes, memsz) in segs {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[4..8].copy_from_slice(&5u32.to_le_bytes());
        ph[8..16].copy_from_slice(&data_off.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        b.extend_from_slice(&ph);
        data.extend_from_slice(bytes);
        data_off += bytes.len() as u64;
    }
    b.extend_from_slice(&data);
    b
}

#[test]
fn elf_segments_load_at_their_physical_addresses_and_entry_translates() {
    let code = vec![0x1f, 0x20, 0x03, 0xd5];
    let img = load(
        &elf(
            0xffff_0000_0008_0004,
            &[(0xffff_0000_0008_0000, 0x4008_0000, code.clone(), 0x1000)],
        ),
        RAM,
    )
    .unwrap();
    assert_eq!(img.kind, ImageKind::Elf);
    assert_eq!(img.entry, 0x4008_0004);
    assert_eq!(img.segments.len(), 1);
    assert_eq!(img.segments[0].addr, 0x4008_0000);
    assert_eq!(img.segments[0].data, code);
    assert_eq!(img.segments[0].mem_size, 0x1000);
    assert_eq!(img.dtb_address(0x1000, RAM), Ok(RAM.base));
}

#[test]
fn segments_are_sorted_and_the_dtb_moves_past_an_image_at_ram_base() {
    let img = load(
        &elf(
            0x4000_0000,
            &[
                (0x4010_0000, 0x4010_0000, vec![1; 8], 8),
                (0x4000_0000, 0x4000_0000, vec![2; 8], 0x3000),
            ],
        ),
        RAM,
    )
    .unwrap();
    assert_eq!(img.segments[0].addr, 0x4000_0000);
    assert_eq!(img.end(), 0x4010_0008);
    assert_eq!(img.dtb_address(0x1000, RAM), Ok(0x4020_0000));
}

#[test]
fn raw_images_load_at_ram_plus_0x80000() {
    let img = load(&[0x1f, 0x20, 0x03, 0xd5], RAM).unwrap();
    assert_eq!(img.kind, ImageKind::Raw);
    assert_eq!(img.entry, 0x4008_0000);
    assert_eq!(img.dtb_address(64, RAM), Ok(RAM.base));
}

#[test]
fn an_arm64_image_header_reserves_its_image_size() {
    let mut b = vec![0u8; 64];
    b[16..24].copy_from_slice(&0x30_0000u64.to_le_bytes());
    b[56..60].copy_from_slice(&ARM64_IMAGE_MAGIC.to_le_bytes());
    let img = load(&b, RAM).unwrap();
    assert_eq!(img.segments[0].mem_size, 0x30_0000);
    assert_eq!(img.end(), 0x4038_0000);
}

#[test]
fn malformed_images_say_what_is_wrong() {
    assert_eq!(load(&[], RAM), Err(ImageError::Empty));
    assert!(matches!(
        load(b"\x7fELF\x02\x01", RAM),
        Err(ImageError::Truncated {
            what: "the ELF header",
            ..
        })
    ));
    let good = elf(0x4008_0000, &[(0x4008_0000, 0x4008_0000, vec![0; 16], 16)]);
    let mut b = good.clone();
    b[4] = 1;
    assert_eq!(load(&b, RAM), Err(ImageError::NotAarch64("not ELFCLASS64")));
    let mut b = good.clone();
    b[18] = 62;
    assert_eq!(
        load(&b, RAM),
        Err(ImageError::NotAarch64("e_machine is not EM_AARCH64"))
    );
    let mut b = good.clone();
    b[16] = 1;
    assert_eq!(load(&b, RAM), Err(ImageError::ElfType(1)));
    // Cut inside the segment's bytes.
    assert!(matches!(
        load(&good[..good.len() - 4], RAM),
        Err(ImageError::Truncated {
            what: "a segment's bytes",
            ..
        })
    ));
    // Program headers pointing past the end.
    let mut b = good.clone();
    b[32..40].copy_from_slice(&0xffff_ffff_ffff_fff0u64.to_le_bytes());
    assert!(matches!(
        load(&b, RAM),
        Err(ImageError::Truncated {
            what: "the program headers",
            ..
        })
    ));
    assert_eq!(load(&elf(0, &[]), RAM), Err(ImageError::NoSegments));
    // Program headers smaller than ELF64's at an offset near the end of the
    // address space (found by the guest_image fuzz target: the error's own
    // arithmetic overflowed).
    let mut b = good.clone();
    b[32..40].copy_from_slice(&0xffff_ffff_ffff_ffd8u64.to_le_bytes());
    b[54..56].copy_from_slice(&48u16.to_le_bytes());
    assert!(matches!(
        load(&b, RAM),
        Err(ImageError::Truncated {
            what: "a program header",
            end: u64::MAX,
            ..
        })
    ));
    assert!(matches!(
        load(&elf(0x1000, &[(0x1000, 0x1000, vec![0; 4], 4)]), RAM),
        Err(ImageError::OutsideRam { start: 0x1000, .. })
    ));
    assert!(matches!(
        load(
            &elf(0x4000_0000, &[(0x4000_0000, 0x4000_0000, vec![0; 8], 4)]),
            RAM
        ),
        Err(ImageError::SegmentSizes { index: 0, .. })
    ));
    assert_eq!(
        load(
            &elf(
                0x4000_0000,
                &[
                    (0x4000_0000, 0x4000_0000, vec![0; 4], 0x2000),
                    (0x4000_1000, 0x4000_1000, vec![0; 4], 4)
                ]
            ),
            RAM
        ),
        Err(ImageError::Overlap(0, 1))
    );
    assert_eq!(
        load(
            &elf(0x5000_0000, &[(0x4000_0000, 0x4000_0000, vec![0; 4], 4)]),
            RAM
        ),
        Err(ImageError::EntryOutside(0x5000_0000))
    );
    // A segment whose end wraps around the address space.
    assert!(matches!(
        load(
            &elf(
                0x4000_0000,
                &[(0x4000_0000, 0x4000_0000, vec![0; 4], u64::MAX)]
            ),
            RAM
        ),
        Err(ImageError::OutsideRam { .. })
    ));
    let big = vec![0u8; (RAM.size as usize) - 0x8_0000 + 1];
    assert!(matches!(
        load(&big, RAM),
        Err(ImageError::OutsideRam { .. })
    ));
}

#[test]
fn no_room_for_the_dtb_is_an_error() {
    let ram = Region {
        base: 0x4000_0000,
        size: 0x20_0000,
    };
    let img = load(
        &elf(
            0x4000_0000,
            &[(0x4000_0000, 0x4000_0000, vec![0; 4], 0x1f_0000)],
        ),
        ram,
    )
    .unwrap();
    assert_eq!(
        img.dtb_address(0x2_0000, ram),
        Err(ImageError::NoRoomForDtb(0x2_0000))
    );
}

proptest::proptest! {
    /// Whatever the bytes, loading returns an image or an error, and an
    /// image always lies in RAM with its entry inside it.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), elf_head in proptest::prelude::any::<bool>()) {
        let mut b = bytes;
        if elf_head && b.len() >= 20 {
            b[..4].copy_from_slice(ELF_MAGIC);
            b[4] = 2;
            b[5] = 1;
            b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        }
        if let Ok(img) = load(&b, RAM) {
            for s in &img.segments {
                proptest::prop_assert!(s.addr >= RAM.base && s.region().end() <= RAM.end());
            }
            proptest::prop_assert!(img.segments.iter().any(|s| s.region().contains(img.entry)));
        }
    }
}
