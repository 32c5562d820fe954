//! Live captions: what a performer or the narrator says, transcribed on this machine by a
//! speech recogniser (the edge runs it), shown in the venue, on the audience page and on the
//! broadcast output. Every line goes through the command pipeline (`caption`, logged, replayed)
//! after the same moderation as chat text; a line the moderation refuses is held hidden for a
//! moderator, who can also correct or hide any line before or after it shows. Captions are
//! shown in the surtitle band, in the language spoken, so every place that shows surtitles
//! shows them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bevy::prelude::*;

use crate::engine::audience::hub::MetricsSection;
use crate::engine::command::{AppliedCommand, SubmitCommand};
use crate::engine::rest::Rest;
use crate::engine::schedule::VenueSystems;
use crate::model::command::{CommandOrigin, MAX_CAPTION_CHARS, VenueCommand};

/// Lines kept for corrections and hiding (older ones can no longer be changed).
const KEPT_LINES: usize = 64;
/// Lines shown at once: the line being spoken and the one before it.
const SHOWN_LINES: usize = 2;

/// A line from the recogniser: new or revised.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognisedLine {
    /// The recogniser's number for the line.
    pub id: u64,
    /// Its words so far.
    pub text: String,
    /// Whether the line is complete.
    pub done: bool,
    /// When the edge read it, for latency.
    pub received: Instant,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CaptionStats {
    /// Lines and revisions received from the recogniser.
    pub received: AtomicU64,
    /// Lines held hidden because moderation refused them.
    pub held: AtomicU64,
    /// Seconds of audio given to the recogniser, in milliseconds.
    pub audio_ms: AtomicU64,
    /// Times the recogniser was started again after stopping.
    pub restarts: AtomicU64,
    /// Lines from the recogniser that were not its protocol, or came faster than the venue
    /// took them (dropped).
    pub bad_lines: AtomicU64,
}

impl MetricsSection for CaptionStats {
    fn render(&self, out: &mut String) {
        let rows: [(&str, &str, &AtomicU64); 5] = [
            ("caption_lines_received_total", "Caption lines and revisions from the recogniser.", &self.received),
            ("caption_lines_held_total", "Caption lines held hidden for a moderator.", &self.held),
            ("caption_audio_milliseconds_total", "Audio given to the speech recogniser.", &self.audio_ms),
            ("caption_restarts_total", "Restarts of the recogniser after it stopped.", &self.restarts),
            ("caption_bad_lines_total", "Recogniser lines not in its protocol, or dropped.", &self.bad_lines),
        ];
        for (name, help, value) in rows {
            crate::engine::audience::hub::write_counter(out, name, help, value.load(Ordering::Relaxed));
        }
    }
}

/// The venue's end of the recogniser's channel.
#[derive(Resource)]
pub struct CaptionLink {
    /// Lines from the edge. The edge's thread waits on a full channel (the recogniser is
    /// behind, not the venue), so no line is lost.
    pub lines: tokio::sync::mpsc::Receiver<RecognisedLine>,
    /// The origin lines are logged with: `control` "captions <engine>".
    pub origin: CommandOrigin,
    /// Counters, shared with the edge.
    pub stats: Arc<CaptionStats>,
}

/// One caption line as the venue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionLine {
    /// The recogniser's number.
    pub id: u64,
    /// The words.
    pub text: String,
    /// Complete.
    pub done: bool,
    /// Hidden by a moderator (or held by moderation).
    pub hidden: bool,
    /// Corrected by staff: the recogniser's later revisions are ignored.
    pub corrected: bool,
    /// Venue seconds when its words last changed, to let it go after a while (hiding or
    /// showing it again does not count: that would bring back lines that had gone).
    pub changed: f64,
    /// Venue seconds when it arrived, for the delay before it shows.
    pub arrived: f64,
}

/// The live captions: the lines, and what shows now.
#[derive(Resource, Debug, Clone)]
pub struct LiveCaptions {
    /// The language spoken (BCP 47): captions show as surtitles in it.
    pub language: String,
    /// Seconds a complete line stays up once nothing follows it.
    pub linger: f64,
    /// Seconds a line waits before it shows, for a moderator to hide or correct it first
    /// (`parvis run --captions-delay`; 0 by default: captions are late enough).
    pub delay: f64,
    /// Recent lines, oldest first.
    pub lines: VecDeque<CaptionLine>,
    /// The text shown now (empty: none).
    pub text: String,
}

impl Default for LiveCaptions {
    fn default() -> Self {
        Self { language: "en".into(), linger: 6.0, delay: 0.0, lines: VecDeque::new(), text: String::new() }
    }
}

/// The caption systems, in the venue's frame.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptionSystems {
    /// Recognised lines into `caption` commands, in [`VenueSystems::Ingest`].
    Ingest,
    /// Applied caption commands into [`LiveCaptions`], in [`VenueSystems::Simulate`].
    Follow,
}

/// Live captions; does nothing until a [`CaptionLink`] is inserted or caption commands arrive.
pub struct CaptionsPlugin;

impl Plugin for CaptionsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<LiveCaptions>()
            .configure_sets(Update, CaptionSystems::Ingest.in_set(VenueSystems::Ingest))
            // Before the show's surtitles, which show the captions (`engine::show`).
            .configure_sets(Update, CaptionSystems::Follow.in_set(VenueSystems::Simulate))
            .add_systems(Update, ingest_lines.run_if(resource_exists::<CaptionLink>).in_set(CaptionSystems::Ingest))
            .add_systems(Update, follow_captions.in_set(CaptionSystems::Follow));
    }
}

/// Lines from the recogniser become commands, after the chat's moderation: a refused line is
/// logged hidden, for a moderator to show or correct.
fn ingest_lines(
    mut link: ResMut<CaptionLink>,
    audience: Option<Res<crate::engine::audience::hub::AudienceLink>>,
    mut submit: MessageWriter<SubmitCommand>,
    mut default_blocklist: Local<Option<crate::model::audience::moderation::Blocklist>>,
    mut held: Local<Vec<u64>>,
) {
    while let Ok(line) = link.lines.try_recv() {
        link.stats.received.fetch_add(1, Ordering::Relaxed);
        let mut text: String = line.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some((cut, _)) = text.char_indices().nth(MAX_CAPTION_CHARS) {
            text.truncate(cut);
        }
        // The chat's moderation: its cleaning (invisible and reordering characters go), then its
        // blocklist (the venue's own words when an audience runs, else the built-in ones).
        let refused = if text.is_empty() {
            None
        } else {
            use crate::model::audience::moderation::{Blocklist, sanitize};
            match sanitize(&text, MAX_CAPTION_CHARS) {
                Ok(clean) => {
                    text = clean;
                    let blocklist = match audience.as_deref() {
                        Some(a) => &a.hub.policy.blocklist,
                        None => &*default_blocklist.get_or_insert_with(Blocklist::default_fr_en),
                    };
                    blocklist.check(&text).err()
                }
                Err(e) => Some(e),
            }
        };
        let id = line.id;
        // The hiding goes first, so the words never show for a frame.
        let held_now = refused.is_some() && !held.contains(&id);
        if !held_now {
            submit.write(SubmitCommand {
                origin: link.origin.clone(),
                command: VenueCommand::Caption { id, text: text.clone(), done: line.done },
            });
        }
        // Held as soon as a revision is refused (a partial line shows too), once per line.
        if let Some(why) = refused
            && !held.contains(&id)
        {
            held.push(id);
            if held.len() > KEPT_LINES {
                held.remove(0);
            }
            link.stats.held.fetch_add(1, Ordering::Relaxed);
            warn!("caption #{id} held for a moderator: {why}");
            submit.write(SubmitCommand {
                origin: link.origin.clone(),
                command: VenueCommand::HideCaption { id, hidden: true },
            });
            submit.write(SubmitCommand {
                origin: link.origin.clone(),
                command: VenueCommand::Caption { id, text, done: line.done },
            });
        }
    }
}

/// Follows applied caption commands, and works out what shows: the last lines that are not
/// hidden, until a complete line has been up for `linger` seconds with nothing after it.
fn follow_captions(
    mut applied: MessageReader<AppliedCommand>,
    mut captions: ResMut<LiveCaptions>,
    time: Res<Time>,
    mut rest: ResMut<Rest>,
) {
    let now = time.elapsed_secs_f64();
    for entry in applied.read() {
        let staff = !matches!(entry.origin, CommandOrigin::Control(_));
        match &entry.command {
            VenueCommand::Caption { id, text, done } => {
                let existing = captions.lines.iter().position(|l| l.id == *id);
                match existing {
                    Some(i) => {
                        let line = &mut captions.lines[i];
                        // A correction stands: the recogniser revising its guess does not undo it.
                        if line.corrected && !staff {
                            continue;
                        }
                        line.text = text.clone();
                        line.done |= *done;
                        line.corrected |= staff;
                        line.changed = now;
                    }
                    None => {
                        captions.lines.push_back(CaptionLine {
                            id: *id,
                            text: text.clone(),
                            done: *done,
                            hidden: false,
                            corrected: staff,
                            changed: now,
                            arrived: now,
                        });
                        while captions.lines.len() > KEPT_LINES {
                            captions.lines.pop_front();
                        }
                    }
                }
            }
            VenueCommand::HideCaption { id, hidden } => {
                if let Some(line) = captions.lines.iter_mut().find(|l| l.id == *id) {
                    line.hidden = *hidden;
                } else if *hidden {
                    // Hidden before the recogniser's line arrived: keep the decision for it.
                    captions.lines.push_back(CaptionLine {
                        id: *id,
                        text: String::new(),
                        done: false,
                        hidden: true,
                        corrected: false,
                        changed: now,
                        arrived: now,
                    });
                }
            }
            VenueCommand::LoadScene { .. } => captions.lines.clear(),
            _ => {}
        }
    }
    let (linger, delay) = (captions.linger, captions.delay);
    let last_change = captions.lines.iter().map(|l| l.changed).fold(f64::MIN, f64::max);
    let text = if now - last_change > linger {
        String::new()
    } else {
        let shown: Vec<&str> = captions
            .lines
            .iter()
            .filter(|l| !l.hidden && !l.text.is_empty() && now - l.arrived >= delay)
            .rev()
            .take(SHOWN_LINES)
            .map(|l| l.text.as_str())
            .collect();
        shown.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    if captions.text != text {
        captions.text = text;
    }
    if !captions.text.is_empty() || captions.lines.iter().any(|l| now - l.arrived < delay) {
        // Lines come up after `delay` and go after `linger`: frames must come to do it.
        rest.busy();
    }
}
