//! The CLI's standard output, where a reader that goes away
//! (`wpc ops | head -1`, `wpc run … | true`) is not an error: once a write
//! meets a closed pipe, later output is dropped and the command carries on
//! — outputs are still written, and the exit status is what the work
//! earned. Use [`crate::say!`] instead of `println!`, which panics there,
//! and [`crate::tell!`] instead of `eprintln!` for standard error (a
//! closed stderr drops the message; it must not turn an answer into a
//! panic).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout (and flushes, so a closed pipe is seen at the
/// line that met it); once stdout is closed, does nothing.
pub fn print(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tell(format_args!(
                "warning: cannot write to standard output ({e}); output dropped\n"
            ));
        }
    }
}

/// `println!` for the CLI: see the [module docs](crate::stdout).
#[macro_export]
macro_rules! say {
    () => { $crate::stdout::print(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::stdout::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes `args` to stderr; an error writing it is ignored.
pub fn tell(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `eprintln!` for the CLI: see the [module docs](crate::stdout).
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::stdout::tell(format_args!("{}\n", format_args!($($arg)*)))
    };
}
