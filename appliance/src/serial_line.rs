//! Opening a device file that may be a serial line, and setting the line up as the box's config
//! says (speed, data bits, parity, stop bits, flow control, raw mode): the serial receipt printer
//! (`printer.baud`...) and the EDC card terminal (`edc.baud`). Through rustix's termios, safe.
//!
//! Raw mode matters as much as the speed: a tty left in its default ("cooked") mode turns every
//! LF the printer is sent into CR LF and eats XON/XOFF bytes, which corrupts ESC/POS raster and
//! QR data; and its echo would send a terminal's answer straight back to it.
//!
//! The device is opened with `O_NOCTTY | O_NONBLOCK` (an RS-232 open would otherwise wait for the
//! carrier-detect line); `CLOCAL` is set so it never waits later either.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use rustix::fs::OFlags;
use rustix::termios::{self, ControlModes, InputModes, OptionalActions};

use crate::config::{FlowControl, Parity, SerialLine};

/// An opened device and whether it is a tty (then set up as asked).
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub tty: bool,
}

/// Open `path` for writing (`read` too when asked); when it is a tty, apply `line`. The file is
/// left non-blocking when `nonblocking`, else switched back to blocking writes.
pub fn open(path: &Path, read: bool, line: &SerialLine, nonblocking: bool) -> io::Result<Opened> {
    let file = std::fs::OpenOptions::new()
        .read(read)
        .write(true)
        .custom_flags((OFlags::NOCTTY | OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    let tty = termios::isatty(&file);
    if tty {
        apply(&file, line)?;
    }
    if !nonblocking {
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    }
    Ok(Opened { file, tty })
}

/// Set the tty behind `fd` to raw mode with `line`'s framing, now.
pub fn apply(fd: impl AsFd, line: &SerialLine) -> io::Result<()> {
    let mut t = termios::tcgetattr(&fd)?;
    t.make_raw();
    t.set_speed(line.baud)?;
    let c = &mut t.control_modes;
    c.remove(ControlModes::CSIZE | ControlModes::PARENB | ControlModes::PARODD);
    c.remove(ControlModes::CSTOPB | ControlModes::CRTSCTS);
    c.insert(ControlModes::CREAD | ControlModes::CLOCAL);
    c.insert(if line.data_bits == 7 {
        ControlModes::CS7
    } else {
        ControlModes::CS8
    });
    match line.parity {
        Parity::None => {}
        Parity::Even => c.insert(ControlModes::PARENB),
        Parity::Odd => c.insert(ControlModes::PARENB | ControlModes::PARODD),
    }
    if line.stop_bits == 2 {
        c.insert(ControlModes::CSTOPB);
    }
    t.input_modes
        .remove(InputModes::IXON | InputModes::IXOFF | InputModes::IXANY);
    match line.flow {
        FlowControl::None => {}
        FlowControl::RtsCts => t.control_modes.insert(ControlModes::CRTSCTS),
        FlowControl::XonXoff => t.input_modes.insert(InputModes::IXON | InputModes::IXOFF),
    }
    termios::tcsetattr(&fd, OptionalActions::Now, &t)?;
    Ok(())
}

/// What the tty behind `fd` is set to, in `line`'s terms (for `doctor`, and the tests).
pub fn read_back(fd: impl AsFd) -> io::Result<(SerialLine, bool)> {
    let t = termios::tcgetattr(&fd)?;
    let c = t.control_modes;
    let raw = !t
        .local_modes
        .intersects(termios::LocalModes::ICANON | termios::LocalModes::ECHO)
        && !t.output_modes.contains(termios::OutputModes::OPOST);
    Ok((
        SerialLine {
            baud: t.output_speed(),
            data_bits: if c & ControlModes::CSIZE == ControlModes::CS7 {
                7
            } else {
                8
            },
            parity: match (
                c.contains(ControlModes::PARENB),
                c.contains(ControlModes::PARODD),
            ) {
                (false, _) => Parity::None,
                (true, false) => Parity::Even,
                (true, true) => Parity::Odd,
            },
            stop_bits: if c.contains(ControlModes::CSTOPB) {
                2
            } else {
                1
            },
            flow: if c.contains(ControlModes::CRTSCTS) {
                FlowControl::RtsCts
            } else if t.input_modes.contains(InputModes::IXON) {
                FlowControl::XonXoff
            } else {
                FlowControl::None
            },
        },
        raw,
    ))
}

#[cfg(test)]
mod tests {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

    use super::*;

    /// A pseudo-terminal's slave path; the master is returned to keep it alive.
    fn pty() -> (std::os::fd::OwnedFd, std::path::PathBuf) {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        (
            master,
            std::path::PathBuf::from(name.to_str().expect("utf-8")),
        )
    }

    #[test]
    fn a_tty_gets_the_line_asked_for_and_raw_mode() {
        let (_master, path) = pty();
        for line in [
            SerialLine {
                baud: 19_200,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                flow: FlowControl::RtsCts,
            },
            // A pty keeps speed, stop bits and flow control but forces 8 data bits and no parity
            // (the kernel's pty driver), so 7E1 and odd parity cannot be shown on one here.
            SerialLine {
                baud: 4800,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 2,
                flow: FlowControl::XonXoff,
            },
            SerialLine {
                baud: 115_200,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                flow: FlowControl::None,
            },
        ] {
            let opened = open(&path, true, &line, false).expect("open the pty");
            assert!(opened.tty);
            assert_eq!(read_back(&opened.file).expect("tcgetattr"), (line, true));
            // Blocking again, as the printer's writes expect.
            let flags = rustix::fs::fcntl_getfl(&opened.file).expect("getfl");
            assert!(!flags.contains(OFlags::NONBLOCK));
        }
    }

    #[test]
    fn a_file_that_is_not_a_tty_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lp0");
        std::fs::write(&path, b"").expect("file");
        let opened = open(&path, false, &SerialLine::plain(9600), false).expect("open");
        assert!(!opened.tty);
        assert!(
            open(
                &dir.path().join("missing"),
                false,
                &SerialLine::plain(9600),
                false
            )
            .is_err()
        );
    }
}
