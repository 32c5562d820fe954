//! The venue rests when nothing changes: no frame is rendered (and, headless, no frame runs at
//! all) until something needs one. Every plugin says, each frame, whether it needs the next
//! one ([`Rest::busy`]: an animation, falling pieces, a tour, a poll being counted…), or a
//! frame at a later moment ([`Rest::wake_at`]); a command lingers a little so that what it
//! changed settles on screen and reaches the audience. Edges that bring input ring the
//! [`Doorbell`], which wakes a resting loop at once. The window rests through Bevy's reactive
//! update mode; the binary's headless loops wait on the doorbell. Headsets and the broadcast
//! output keep their own frame rate ([`Rest::enabled`] off).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;

/// How long frames continue after a command or an input, so that what changed settles (the
/// audience's state broadcasts are throttled to 10 a second, the picture follows a frame late).
pub const LINGER: Duration = Duration::from_millis(500);

/// How long a resting venue waits at most before a frame of its own (which checks the time
/// for what no input announces).
pub const HEARTBEAT: Duration = Duration::from_secs(60);

/// Wakes a resting venue from any thread: an edge that queued input for it rings.
#[derive(Clone, Default)]
pub struct Doorbell(Arc<DoorbellInner>);

#[derive(Default)]
struct DoorbellInner {
    rung: Mutex<bool>,
    ready: Condvar,
    /// Also called on each ring: a window's event loop is woken this way.
    hooks: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Doorbell")
    }
}

impl Doorbell {
    /// Something arrived: wake the venue.
    pub fn ring(&self) {
        let mut rung = self.0.rung.lock().expect("doorbell");
        *rung = true;
        drop(rung);
        self.0.ready.notify_all();
        for hook in self.0.hooks.lock().expect("doorbell hooks").iter() {
            hook();
        }
    }

    /// Also calls `hook` on each ring (a window's event loop proxy).
    pub fn on_ring(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.0.hooks.lock().expect("doorbell hooks").push(Box::new(hook));
    }

    /// Waits until a ring or `until`, whichever comes first; true when rung. A ring since the
    /// last wait counts at once.
    pub fn wait(&self, until: Instant) -> bool {
        let mut rung = self.0.rung.lock().expect("doorbell");
        while !*rung {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            rung = self.0.ready.wait_timeout(rung, until - now).expect("doorbell").0;
        }
        *rung = false;
        true
    }
}

/// Whether the venue needs its next frame, as its plugins said this frame.
#[derive(Debug, Resource)]
pub struct Rest {
    /// Rings when input arrives.
    pub doorbell: Doorbell,
    /// Whether the venue may rest at all (off for headsets, the broadcast output and runs of
    /// a set number of frames).
    pub enabled: bool,
    busy: bool,
    linger_until: Option<Instant>,
    wake_at: Option<Instant>,
    /// Whether the venue needed this frame's successor, as settled at the end of the frame.
    needs_frames: bool,
    /// When it should wake at the latest, as settled at the end of the frame.
    next_wake: Option<Instant>,
    /// Frames run since start.
    pub frames: u64,
}

impl Default for Rest {
    fn default() -> Self {
        Self {
            doorbell: Doorbell::default(),
            enabled: true,
            busy: false,
            // The first moments load the venue.
            linger_until: Some(Instant::now() + Duration::from_secs(2)),
            wake_at: None,
            needs_frames: true,
            next_wake: None,
            frames: 0,
        }
    }
}

impl Rest {
    /// Something needs the next frame (it moves, counts, streams or plays).
    pub fn busy(&mut self) {
        self.busy = true;
    }

    /// Something changed: frames continue for [`LINGER`].
    pub fn linger(&mut self) {
        let until = Instant::now() + LINGER;
        self.linger_until = Some(self.linger_until.map_or(until, |u| u.max(until)));
    }

    /// Something needs a frame at `at` (a poll closing, a vote's window ending).
    pub fn wake_at(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// Whether the venue needs frames now (as settled at the end of the last frame).
    pub fn needs_frames(&self) -> bool {
        !self.enabled || self.needs_frames
    }

    /// When a resting venue should run a frame by itself at the latest.
    pub fn next_wake(&self) -> Instant {
        let heartbeat = Instant::now() + HEARTBEAT;
        self.next_wake.map_or(heartbeat, |at| at.min(heartbeat))
    }
}

/// Where the frame's activity is settled: after everything else.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SettleRest;

/// Keeps [`Rest`]: plugins mark what they need during the frame; it is settled at its end.
pub struct RestPlugin;

impl Plugin for RestPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Rest>().add_systems(Last, settle.in_set(SettleRest));
    }
}

fn settle(mut rest: ResMut<Rest>) {
    let now = Instant::now();
    let rest = &mut *rest;
    rest.frames += 1;
    let lingering = rest.linger_until.is_some_and(|u| u > now);
    let due = rest.wake_at.is_some_and(|at| at <= now);
    rest.needs_frames = rest.busy || lingering || due;
    rest.next_wake = rest.wake_at.filter(|at| *at > now);
    rest.busy = false;
    if !lingering {
        rest.linger_until = None;
    }
    if due {
        rest.wake_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_wakes_a_waiting_loop_at_once_and_a_past_ring_counts() {
        let bell = Doorbell::default();
        let ringer = bell.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ringer.ring();
        });
        assert!(bell.wait(Instant::now() + Duration::from_secs(5)));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(45) && waited < Duration::from_secs(2), "{waited:?}");
        thread.join().unwrap();
        // Nothing rang since: the wait runs to its end.
        assert!(!bell.wait(Instant::now() + Duration::from_millis(20)));
        // A ring before the wait is not lost.
        bell.ring();
        assert!(bell.wait(Instant::now() + Duration::from_secs(5)));
    }

    #[test]
    fn the_venue_rests_once_nothing_is_busy_or_lingering_and_wakes_when_due() {
        let mut app = App::new();
        app.add_plugins(RestPlugin);
        app.world_mut().resource_mut::<Rest>().linger_until = None;
        app.update();
        assert!(!app.world().resource::<Rest>().needs_frames(), "nothing to do");
        app.world_mut().resource_mut::<Rest>().busy();
        app.update();
        assert!(app.world().resource::<Rest>().needs_frames());
        app.update();
        assert!(!app.world().resource::<Rest>().needs_frames(), "busy lasts one frame");
        app.world_mut().resource_mut::<Rest>().linger();
        app.update();
        assert!(app.world().resource::<Rest>().needs_frames(), "a change lingers");
        let soon = Instant::now() + Duration::from_millis(30);
        app.world_mut().resource_mut::<Rest>().wake_at(soon);
        std::thread::sleep(LINGER);
        app.update();
        let rest = app.world().resource::<Rest>();
        assert!(rest.needs_frames(), "the wake-up time has come");
        app.update();
        let rest = app.world().resource::<Rest>();
        assert!(!rest.needs_frames());
        assert!(rest.next_wake() <= Instant::now() + HEARTBEAT);
        let mut disabled = Rest { enabled: false, ..Rest::default() };
        disabled.needs_frames = false;
        assert!(disabled.needs_frames(), "a venue that may not rest always needs frames");
    }
}
