//! Stopping cleanly on SIGINT (Ctrl-C) and SIGTERM: the binary's signal watcher calls
//! [`request`], every app built here ends its loop at the next frame ([`ShutdownPlugin`] for
//! the apps Bevy runs, [`requested`] for the loops the binary drives), and the caller then
//! closes the edges (sockets say "going away", bridges leave their platforms) and drops the
//! app, which flushes and syncs the command log. Bevy's own Ctrl-C handler is left out of the
//! apps so that there is one way to stop, the same for both signals.

use std::sync::atomic::{AtomicBool, Ordering};

use bevy::prelude::*;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks every venue app of this process to stop at its next frame.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Ends an app that Bevy runs (a window, a headset session) when a stop is asked for.
pub struct ShutdownPlugin;

impl Plugin for ShutdownPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Last, exit_when_requested);
    }
}

fn exit_when_requested(mut exit: MessageWriter<AppExit>, mut sent: Local<bool>) {
    if requested() && !*sent {
        *sent = true;
        info!("stopping: the venue closes");
        exit.write(AppExit::Success);
    }
}

/// How long a closing venue waits for its audience's connections to say goodbye.
pub const CLOSING_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Closes what the app has at its edges: the audience server's connections say "going away"
/// and its bridges leave their platforms, waiting up to [`CLOSING_GRACE`]. Then drop the app,
/// which flushes and syncs the command log.
pub fn close_edges(world: &mut World) {
    if let Some(server) = world.remove_resource::<crate::edges::audience::server::AudienceServer>() {
        server.shutdown(CLOSING_GRACE);
    }
    if let Some(osc) = world.remove_resource::<crate::edges::osc::OscEdge>() {
        osc.shutdown();
    }
    if let Some(nats) = world.remove_resource::<crate::edges::nats::NatsNode>() {
        nats.close(CLOSING_GRACE);
    }
    // The venue's end of the program queue goes first, then the encoders finish their files.
    world.remove_resource::<crate::engine::program::ProgramFeed>();
    if let Some(output) = world.remove_resource::<crate::edges::program::ProgramOutput>() {
        output.finish();
    }
}
