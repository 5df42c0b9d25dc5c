//! Stopping a command cleanly. Ctrl-C (SIGINT) and SIGTERM (`kill`, job schedulers,
//! `systemctl stop`) are handled alike: a training run finishes the current step, saves a
//! checkpoint, prints how to resume, and exits with 128 + the signal number — 130 for SIGINT,
//! 143 for SIGTERM, as a shell reports a process killed by that signal. Every other long loop
//! (evaluation passes, precise statistics, measurements) calls [`check`] between two of its
//! steps and stops with [`Error::Stopped`], which exits with the same code. A second signal
//! exits at once with the same code (the last checkpoint, written atomically, stays valid).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::error::Error;

/// The first signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Set in a process of a data-parallel job, whose processes may only stop together, at a
/// training step they agree on: [`check`] lets loops run on there.
static ONLY_AT_STEPS: AtomicBool = AtomicBool::new(false);

/// A signal that asks training to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT, Ctrl-C.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// 128 + the signal number, the exit status a shell expects.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// The signal received since [`watch`] was called, if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s if s == libc::SIGTERM => Some(Signal::Terminate),
        _ => Some(Signal::Interrupt),
    }
}

/// `Err(Error::Stopped)` once a signal has arrived: what every long loop calls between two of
/// its steps. Never stops a process of a data-parallel job (see [`stop_only_at_steps`]).
pub fn check() -> Result<(), Error> {
    if ONLY_AT_STEPS.load(Ordering::SeqCst) {
        return Ok(());
    }
    received().map_or(Ok(()), |signal| Err(Error::Stopped(signal)))
}

/// From now on [`check`] never stops this process: it is one of a data-parallel job, whose
/// processes stop together at a training step they agree on (and whose evaluations between
/// epochs, on process 0 alone, must not leave the others waiting at the next step).
pub fn stop_only_at_steps() {
    ONLY_AT_STEPS.store(true, Ordering::SeqCst);
}

/// Starts recording SIGINT and SIGTERM instead of dying on them (once per process).
pub fn watch() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Err(e) = imp::install() {
            eprintln!("warning: Ctrl-C and SIGTERM will not stop training cleanly: {e}");
        }
    });
}

/// Printed on the first signal. What is saved depends on the command (a training run saves a
/// checkpoint and says so; a measurement writes nothing), so the message promises nothing.
const MESSAGE: &str = "\nstopping at the next safe point (signal again to quit at once)...\n";

#[cfg(unix)]
mod imp {
    use super::{Ordering, MESSAGE, RECEIVED};

    /// The handler: only async-signal-safe calls (an atomic swap, `write`, `_exit`).
    extern "C" fn on_signal(signal: libc::c_int) {
        if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
            // SAFETY: _exit is async-signal-safe and ends the process.
            unsafe { libc::_exit(128 + signal) };
        }
        // SAFETY: write(2) on stderr with a valid buffer is async-signal-safe.
        unsafe { libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len()) };
    }

    pub fn install() -> std::io::Result<()> {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler only does async-signal-safe
            // work; SA_RESTART keeps blocking reads and writes from failing with EINTR.
            let rc = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod imp {
    use super::{Ordering, MESSAGE, RECEIVED};

    /// Elsewhere only Ctrl-C can be caught (through the `ctrlc` crate).
    pub fn install() -> Result<(), ctrlc::Error> {
        ctrlc::set_handler(|| {
            if RECEIVED.swap(libc::SIGINT, Ordering::SeqCst) != 0 {
                std::process::exit(130);
            }
            eprint!("{MESSAGE}");
        })
    }
}
