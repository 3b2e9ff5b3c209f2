//! The CLI's standard output, where a reader that goes away
//! (`wpc ops | head -1`, `wpc run … | true`) is not an error: once a write
//! meets a closed pipe, later output is dropped and the command carries on
//! — outputs are still written, and the exit status is what the work
//! earned. Use [`crate::say!`] instead of `println!`, which panics there.

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
            eprintln!("warning: cannot write to standard output ({e}); output dropped");
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
