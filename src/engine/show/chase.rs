//! The transport chasing external timecode: readings arrive from an edge (LTC audio, MIDI Time
//! Code) through a bounded channel; each is placed on the show by its song's timecode, and the
//! model's [`Chaser`] says when to locate, play or hold. What it does is a `Transport` command
//! like any other (origin `control`), so a chased show is logged and replays.

use std::time::Instant;

use bevy::prelude::*;
use tokio::sync::mpsc;

use super::{Shows, TransportState};
use crate::engine::command::SubmitCommand;
use crate::model::command::{CommandOrigin, TransportAction, VenueCommand};
use crate::model::show::chase::{ChaseAction, ChasePolicy, Chaser, show_position};
use crate::model::show::timecode::{FrameRate, Timecode};

/// Readings waiting for the venue; an edge drops new ones when it is full.
pub const READINGS_CAPACITY: usize = 256;

/// A timecode read by an edge.
#[derive(Debug, Clone, Copy)]
pub struct TimecodeReading {
    /// The label.
    pub timecode: Timecode,
    /// Its rate.
    pub rate: FrameRate,
    /// When the frame it labels began, here.
    pub received: Instant,
    /// A locate (MTC full frame): move there, but the timecode is not running.
    pub locate_only: bool,
}

/// The venue's end of a timecode source.
#[derive(Resource)]
pub struct TimecodeLink {
    readings: mpsc::Receiver<TimecodeReading>,
    /// The source, as the log names it (`ltc song.wav`).
    pub source: String,
    chaser: Chaser,
    epoch: Instant,
    warned: bool,
}

/// The channel from a timecode edge to the venue.
pub fn timecode_link(source: String, policy: ChasePolicy) -> (mpsc::Sender<TimecodeReading>, TimecodeLink) {
    let (tx, rx) = mpsc::channel(READINGS_CAPACITY);
    let link = TimecodeLink { readings: rx, source, chaser: Chaser::new(policy), epoch: Instant::now(), warned: false };
    (tx, link)
}

/// Chases a [`TimecodeLink`] when one is inserted.
pub struct ChasePlugin;

impl Plugin for ChasePlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            Update,
            chase_timecode
                .run_if(resource_exists::<TimecodeLink>)
                .after(super::ShowSystems::Clock)
                .in_set(crate::engine::schedule::VenueSystems::Ingest),
        );
    }
}

/// Follows the latest reading of the frame: locate and play when the show is elsewhere, hold
/// after a dropout longer than the freewheel.
fn chase_timecode(
    link: Option<ResMut<TimecodeLink>>,
    shows: Res<Shows>,
    mut submit: MessageWriter<SubmitCommand>,
    mut rest: ResMut<crate::engine::rest::Rest>,
) {
    let Some(mut link) = link else { return };
    let link = &mut *link;
    let mut latest = None;
    while let Ok(reading) = link.readings.try_recv() {
        latest = Some(reading);
    }
    let Some(show) = shows.running.as_ref() else { return };
    let now = Instant::now();
    let seconds = |t: Instant| t.saturating_duration_since(link.epoch).as_secs_f64();
    let origin = CommandOrigin::Control(link.source.clone());
    let transport = |action| SubmitCommand {
        origin: origin.clone(),
        command: VenueCommand::Transport { show: show.plan.name.clone(), action },
    };
    if link.chaser.locked() {
        // Readings come every frame of timecode: stay awake to see them stop.
        rest.busy();
    }
    let Some(reading) = latest else {
        if let Some(ChaseAction::Hold) = link.chaser.tick(seconds(now)) {
            warn!("{}: timecode lost for {:.1} s: the show holds", link.source, link.chaser.policy.freewheel);
            submit.write(transport(TransportAction::Pause));
        }
        return;
    };
    let Some(target) = show_position(&show.plan, reading.timecode, reading.rate) else {
        if !link.warned {
            warn!(
                "{}: timecode {} is before every song's timecode in show {}",
                link.source, reading.timecode, show.plan.name
            );
            link.warned = true;
        }
        return;
    };
    // The label names the frame that began when it was read: the show is that much further on.
    let target = target + now.saturating_duration_since(reading.received).as_secs_f64();
    let playing = show.state == TransportState::Playing;
    let actions = if reading.locate_only {
        link.chaser.locate(target, show.position).into_iter().collect()
    } else {
        link.chaser.reading(target, show.position, playing, seconds(now))
    };
    for action in actions {
        submit.write(transport(match action {
            ChaseAction::Locate(to) => TransportAction::Seek { seconds: to },
            ChaseAction::Play => TransportAction::Play,
            ChaseAction::Hold => TransportAction::Pause,
        }));
    }
}
