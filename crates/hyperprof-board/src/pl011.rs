//! The Arm PrimeCell UART (PL011), as much of it as a guest console uses:
//! transmit, the flag register, the control and interrupt registers, and
//! the identification registers Linux's amba bus probes. Nothing is ever
//! received: the receive FIFO is always empty.
//!
//! Register offsets and reset values from the PL011 Technical Reference
//! Manual (Arm DDI 0183).

/// Data register: a write transmits its low byte.
pub const UARTDR: u64 = 0x000;
/// Receive status / error clear.
pub const UARTRSR: u64 = 0x004;
/// Flag register.
pub const UARTFR: u64 = 0x018;
/// IrDA low-power counter.
pub const UARTILPR: u64 = 0x020;
/// Integer baud rate divisor.
pub const UARTIBRD: u64 = 0x024;
/// Fractional baud rate divisor.
pub const UARTFBRD: u64 = 0x028;
/// Line control.
pub const UARTLCR_H: u64 = 0x02C;
/// Control.
pub const UARTCR: u64 = 0x030;
/// Interrupt FIFO level select.
pub const UARTIFLS: u64 = 0x034;
/// Interrupt mask set/clear.
pub const UARTIMSC: u64 = 0x038;
/// Raw interrupt status.
pub const UARTRIS: u64 = 0x03C;
/// Masked interrupt status.
pub const UARTMIS: u64 = 0x040;
/// Interrupt clear.
pub const UARTICR: u64 = 0x044;
/// DMA control.
pub const UARTDMACR: u64 = 0x048;

/// UARTFR.TXFE: the transmit FIFO is empty.
pub const FR_TXFE: u32 = 1 << 7;
/// UARTFR.RXFE: the receive FIFO is empty.
pub const FR_RXFE: u32 = 1 << 4;
/// The transmit interrupt bit of RIS/MIS/IMSC/ICR.
pub const INT_TX: u32 = 1 << 5;

/// UARTPeriphID0..3 and UARTPCellID0..3 at 0xFE0..0xFFC.
const ID: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

/// Why an access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// Not a 8-, 16- or 32-bit access, or not aligned to its size.
    Size,
    /// Past the 4 KiB register frame.
    Offset,
}

/// One PL011. Transmitted bytes collect in [`Pl011::output`] until taken.
#[derive(Clone, Debug)]
pub struct Pl011 {
    output: Vec<u8>,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Pl011 {
            output: Vec::new(),
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            ris: 0,
            dmacr: 0,
        }
    }
}

fn check(offset: u64, size: u8) -> Result<(), AccessError> {
    if !matches!(size, 1 | 2 | 4) || offset % u64::from(size) != 0 {
        return Err(AccessError::Size);
    }
    if offset >= 0x1000 {
        return Err(AccessError::Offset);
    }
    Ok(())
}

impl Pl011 {
    /// A UART after reset.
    pub fn new() -> Pl011 {
        Pl011::default()
    }

    /// The bytes transmitted so far, taken out.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The bytes transmitted and not yet taken.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The level of the UART's interrupt line (UARTINTR): any raw
    /// interrupt that is unmasked.
    pub fn irq_level(&self) -> bool {
        self.ris & self.imsc != 0
    }

    /// A read of `size` bytes at `offset`. Reserved offsets read as zero.
    pub fn read(&mut self, offset: u64, size: u8) -> Result<u64, AccessError> {
        check(offset, size)?;
        let v = match offset {
            UARTDR | UARTRSR => 0,
            UARTFR => FR_TXFE | FR_RXFE,
            UARTILPR => self.ilpr,
            UARTIBRD => self.ibrd,
            UARTFBRD => self.fbrd,
            UARTLCR_H => self.lcr_h,
            UARTCR => self.cr,
            UARTIFLS => self.ifls,
            UARTIMSC => self.imsc,
            UARTRIS => self.ris,
            UARTMIS => self.ris & self.imsc,
            UARTDMACR => self.dmacr,
            0xFE0..=0xFFC if offset % 4 == 0 => u32::from(ID[((offset - 0xFE0) / 4) as usize]),
            _ => 0,
        };
        Ok(u64::from(v))
    }

    /// A write of `size` bytes at `offset`. Read-only and reserved offsets
    /// ignore the write.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), AccessError> {
        check(offset, size)?;
        let v = value as u32;
        match offset {
            UARTDR => {
                self.output.push(v as u8);
                // The byte leaves at once, so the transmit FIFO is at or
                // below its trigger level again.
                self.ris |= INT_TX;
            }
            UARTILPR => self.ilpr = v & 0xFF,
            UARTIBRD => self.ibrd = v & 0xFFFF,
            UARTFBRD => self.fbrd = v & 0x3F,
            UARTLCR_H => self.lcr_h = v & 0xFF,
            UARTCR => self.cr = v & 0xFF87,
            UARTIFLS => self.ifls = v & 0x3F,
            UARTIMSC => self.imsc = v & 0x7FF,
            UARTICR => self.ris &= !v,
            UARTDMACR => self.dmacr = v & 0x7,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_collects_bytes_and_raises_tx_interrupt_when_unmasked() {
        let mut u = Pl011::new();
        for b in b"ok\n" {
            u.write(UARTDR, 4, u64::from(*b)).unwrap();
        }
        assert_eq!(u.output(), b"ok\n");
        assert!(!u.irq_level());
        u.write(UARTIMSC, 4, u64::from(INT_TX)).unwrap();
        assert!(u.irq_level());
        assert_eq!(u.read(UARTMIS, 4).unwrap(), u64::from(INT_TX));
        u.write(UARTICR, 4, u64::from(INT_TX)).unwrap();
        assert!(!u.irq_level());
        assert_eq!(u.take_output(), b"ok\n");
        assert!(u.output().is_empty());
    }

    #[test]
    fn reset_values_flags_and_ids() {
        let mut u = Pl011::new();
        assert_eq!(u.read(UARTFR, 4).unwrap(), u64::from(FR_TXFE | FR_RXFE));
        assert_eq!(u.read(UARTCR, 4).unwrap(), 0x300);
        assert_eq!(u.read(UARTIFLS, 4).unwrap(), 0x12);
        let id: Vec<u64> = (0..8).map(|i| u.read(0xFE0 + 4 * i, 4).unwrap()).collect();
        assert_eq!(id, vec![0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1]);
        u.write(UARTIBRD, 4, 0x1_0027).unwrap();
        assert_eq!(u.read(UARTIBRD, 4).unwrap(), 0x27);
    }

    #[test]
    fn bad_accesses_are_refused() {
        let mut u = Pl011::new();
        assert_eq!(u.read(0x1000, 4), Err(AccessError::Offset));
        assert_eq!(u.read(0x2, 4), Err(AccessError::Size));
        assert_eq!(u.write(0x0, 8, 0), Err(AccessError::Size));
        assert_eq!(u.write(0x0, 3, 0), Err(AccessError::Size));
    }
}
