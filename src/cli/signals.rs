//! SIGINT (Ctrl-C) and SIGTERM: the first asks the venue to stop cleanly
//! (`parvis::app::shutdown`), a second one stops the process at once.

use std::sync::atomic::{AtomicU32, Ordering};

/// Watches for the signals on a thread of its own, for the rest of the process.
pub fn watch() {
    let spawned = std::thread::Builder::new().name("parvis-signals".into()).spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else {
            eprintln!("parvis: cannot watch for SIGINT and SIGTERM; stop with SIGKILL");
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                eprintln!("parvis: cannot watch for SIGINT and SIGTERM; stop with SIGKILL");
                return;
            };
            static SEEN: AtomicU32 = AtomicU32::new(0);
            loop {
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                if SEEN.fetch_add(1, Ordering::SeqCst) > 0 {
                    eprintln!("parvis: {name} again: stopping at once");
                    std::process::exit(130);
                }
                eprintln!("parvis: {name}: closing the venue (again to stop at once)");
                parvis::app::shutdown::request();
            }
        });
    });
    if let Err(e) = spawned {
        eprintln!("parvis: cannot watch for SIGINT and SIGTERM ({e}); stop with SIGKILL");
    }
}
