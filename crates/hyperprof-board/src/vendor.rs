//! hyperprof's vendor-specific hypervisor service: how a guest profiler
//! hands the SPE records it collected to the VMM, so that the VMM can write
//! them as that VM's perf.data.
//!
//! The calls follow the SMC Calling Convention (Arm DEN 0028): fast calls,
//! SMC64, owner 6 ("Vendor Specific Hypervisor Service"), made with HVC.
//! X0 returns [`SUCCESS`] or a negative error code, like PSCI's.
//!
//! | Function ID          | Call                | Arguments                                        |
//! |----------------------|---------------------|--------------------------------------------------|
//! | [`SPE_RECORDS`]      | hand records over   | X1 = IPA of the bytes, X2 = length, X3 = flags    |
//!
//! [`SPE_RECORDS`] copies X2 bytes of SPE records from guest physical
//! address X1 (they need not be whole records: the VMM concatenates the
//! pieces of one vCPU in order) and attributes them to the calling vCPU.
//! X3 bit 0 ([`FLAG_TRUNCATED`]) says the guest lost records before these
//! (its buffer filled while it could not drain it), so the VMM can count
//! the gap. The call returns [`INVALID_PARAMETERS`] for a range outside
//! guest RAM, unknown flag bits or a piece longer than [`MAX_PIECE`], and
//! [`NO_SPACE`] when the VMM's store for the VM is full; nothing is stored
//! then.

/// Hand SPE records to the VMM (SMC64 fast call, owner 6, function 1).
pub const SPE_RECORDS: u32 = 0xC600_0001;
/// SPE_RECORDS flag: records were lost before this piece.
pub const FLAG_TRUNCATED: u64 = 1;

/// Success.
pub const SUCCESS: u64 = 0;
/// NOT_SUPPORTED (-1): an unknown function of the service.
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// INVALID_PARAMETERS (-2).
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
/// NO_SPACE (-3): the VMM's store for this VM is full.
pub const NO_SPACE: u64 = -3i64 as u64;

/// The longest piece one call may hand over: 16 MiB.
pub const MAX_PIECE: u64 = 16 << 20;
/// What the VMM keeps for one VM unless told otherwise: 256 MiB.
pub const DEFAULT_STORE_LIMIT: u64 = 256 << 20;

/// Whether `fid` belongs to this service (SMCCC owner 6, fast call).
pub fn is_vendor_call(fid: u32) -> bool {
    fid >> 24 & 0xBF == 0x86
}

/// The records the vCPUs of one VM handed over, with a bound on the total.
#[derive(Clone, Debug)]
pub struct RecordStore {
    per_vcpu: Vec<Vec<u8>>,
    pieces: Vec<u64>,
    truncations: Vec<u64>,
    held: u64,
    limit: u64,
    refused: u64,
}

impl RecordStore {
    /// An empty store for `vcpus` vCPUs holding at most `limit` bytes.
    pub fn new(vcpus: usize, limit: u64) -> RecordStore {
        RecordStore {
            per_vcpu: vec![Vec::new(); vcpus],
            pieces: vec![0; vcpus],
            truncations: vec![0; vcpus],
            held: 0,
            limit,
            refused: 0,
        }
    }

    /// Appends `bytes` for vCPU `vcpu`; false (nothing stored) when the
    /// store would exceed its limit or there is no such vCPU.
    pub fn push(&mut self, vcpu: usize, bytes: &[u8], truncated: bool) -> bool {
        let len = bytes.len() as u64;
        let Some(buf) = self.per_vcpu.get_mut(vcpu) else {
            return false;
        };
        if self.held.saturating_add(len) > self.limit {
            self.refused = self.refused.saturating_add(len);
            return false;
        }
        buf.extend_from_slice(bytes);
        self.held += len;
        self.pieces[vcpu] += 1;
        if truncated {
            self.truncations[vcpu] += 1;
        }
        true
    }

    /// Whether `len` more bytes fit; counts them as refused when not.
    pub fn has_room(&mut self, len: u64) -> bool {
        if self.held.saturating_add(len) > self.limit {
            self.refused = self.refused.saturating_add(len);
            false
        } else {
            true
        }
    }

    /// Changes the bound (what is held already stays).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Takes vCPU `vcpu`'s records handed over since the last take.
    pub fn take(&mut self, vcpu: usize) -> Vec<u8> {
        let out = self
            .per_vcpu
            .get_mut(vcpu)
            .map(std::mem::take)
            .unwrap_or_default();
        self.held -= out.len() as u64;
        out
    }

    /// How many pieces vCPU `vcpu` handed over (accepted ones).
    pub fn pieces(&self, vcpu: usize) -> u64 {
        self.pieces.get(vcpu).copied().unwrap_or(0)
    }

    /// How many pieces of vCPU `vcpu` said records were lost before them.
    pub fn truncations(&self, vcpu: usize) -> u64 {
        self.truncations.get(vcpu).copied().unwrap_or(0)
    }

    /// Bytes refused because the store was full.
    pub fn refused_bytes(&self) -> u64 {
        self.refused
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held
    }
}

/// What the hypervisor must do for one call of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Return this value in X0 at once.
    Return(u64),
    /// Copy `len` bytes from guest physical `ipa` into the store.
    Records {
        /// Guest physical address of the first byte.
        ipa: u64,
        /// Bytes to copy.
        len: u64,
        /// Records were lost before these.
        truncated: bool,
    },
}

/// Decodes one call of the service from the caller's X0–X3.
pub fn decode(x: [u64; 4]) -> Request {
    match x[0] as u32 {
        SPE_RECORDS => {
            let (ipa, len, flags) = (x[1], x[2], x[3]);
            if flags & !FLAG_TRUNCATED != 0 || len > MAX_PIECE || ipa.checked_add(len).is_none() {
                Request::Return(INVALID_PARAMETERS)
            } else {
                Request::Records {
                    ipa,
                    len,
                    truncated: flags & FLAG_TRUNCATED != 0,
                }
            }
        }
        _ => Request::Return(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_ids_are_vendor_hypervisor_fast_calls() {
        assert!(is_vendor_call(SPE_RECORDS));
        assert!(is_vendor_call(0x8600_0001)); // SMC32 form
        assert!(!is_vendor_call(0x8400_0000)); // PSCI
        assert!(!is_vendor_call(0xC500_0001)); // owner 5
        assert!(!is_vendor_call(0x4600_0001)); // yielding call
    }

    #[test]
    fn decode_checks_every_argument() {
        let ok = decode([SPE_RECORDS as u64, 0x4100_0000, 4096, 1]);
        assert_eq!(
            ok,
            Request::Records {
                ipa: 0x4100_0000,
                len: 4096,
                truncated: true
            }
        );
        let bad = |x| assert_eq!(decode(x), Request::Return(INVALID_PARAMETERS));
        bad([SPE_RECORDS as u64, 0x4100_0000, 4096, 2]);
        bad([SPE_RECORDS as u64, 0x4100_0000, MAX_PIECE + 1, 0]);
        bad([SPE_RECORDS as u64, u64::MAX - 8, 64, 0]);
        assert_eq!(
            decode([0xC600_0002, 0, 0, 0]),
            Request::Return(NOT_SUPPORTED)
        );
    }

    #[test]
    fn the_store_keeps_order_per_vcpu_and_its_bound() {
        let mut s = RecordStore::new(2, 10);
        assert!(s.push(0, &[1, 2, 3], false));
        assert!(s.push(1, &[9], true));
        assert!(s.push(0, &[4, 5], false));
        assert!(!s.push(0, &[0; 5], false), "over the limit");
        assert!(!s.push(2, &[0], false), "no such vCPU");
        assert_eq!(s.refused_bytes(), 5);
        assert_eq!(s.held(), 6);
        assert_eq!(s.take(0), vec![1, 2, 3, 4, 5]);
        assert_eq!(s.take(1), vec![9]);
        assert_eq!(s.truncations(1), 1);
        assert_eq!(
            (s.pieces(0), s.pieces(1)),
            (2, 1),
            "refused pieces are not counted"
        );
        assert_eq!(s.held(), 0);
        assert!(s.push(0, &[0; 10], false), "space is free again");
    }
}
