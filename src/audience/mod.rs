//! The live audience: a WebSocket edge (`server`) speaking the audience protocol (`protocol`,
//! docs/protocol.md), moderation (`moderation`), the scene's rules (`rules`) and metrics
//! (`metrics`). [`AudiencePlugin`] connects the edge to the venue through the command pipeline.

pub mod metrics;
pub mod moderation;
pub mod moderator;
pub mod protocol;
pub mod rules;
pub mod server;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::VenueSystems;
use crate::command::{CommandOrigin, CurrentScene, LoggedCommand, RejectedCommand, SubmitCommand, VenueCommand};
use crate::params::StageParams;
use metrics::Rejection;
use moderator::ModeratorAction;
use protocol::ServerMessage;
use rules::{Cooldowns, NoFire, match_chat, match_reaction};
use server::{AudienceEvent, AudienceServer, UserId};

/// Most audience events handled in one frame; the rest wait in the channel for the next.
const EVENTS_PER_FRAME: usize = 50_000;
/// Least time between two `state` broadcasts.
const STATE_INTERVAL: Duration = Duration::from_millis(100);

/// The audience as the venue sees it.
#[derive(Debug, Default, Resource)]
pub struct Audience {
    /// Connected members and their display names.
    pub members: HashMap<UserId, Arc<str>>,
    /// Kill switch: while set, audience messages change nothing.
    pub paused: bool,
    next_message_id: u64,
    cooldowns: Cooldowns,
    /// Effects waiting for their command to be applied or refused, in submission order.
    pending: VecDeque<PendingEffect>,
    last_state: Option<Instant>,
    state_dirty: bool,
    /// Recent chat lines (id, sender), so a moderator can retract a member's lines.
    recent_lines: VecDeque<(u64, UserId)>,
}

/// Chat lines remembered for retraction.
const RECENT_LINES: usize = 2000;

#[derive(Debug)]
struct PendingEffect {
    user: UserId,
    by: Arc<str>,
    rule: String,
    received: Instant,
}

/// Connects a running [`AudienceServer`] (inserted as a resource) to the venue.
pub struct AudiencePlugin;

impl Plugin for AudiencePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Audience>()
            .add_systems(Update, receive_audience_events.in_set(VenueSystems::Ingest).run_if(resource_exists::<AudienceServer>))
            .add_systems(
                Update,
                (announce_applied_effects, broadcast_state).chain().in_set(VenueSystems::Present).run_if(resource_exists::<AudienceServer>),
            )
            .add_message::<AudienceInput>()
            .add_systems(Update, apply_audience_rules.in_set(VenueSystems::Decide).run_if(resource_exists::<AudienceServer>));
    }
}

/// An audience event, in the frame it arrived.
#[derive(Debug, Clone, Message)]
pub struct AudienceInput(pub AudienceEvent);

fn receive_audience_events(mut server: ResMut<AudienceServer>, mut audience: ResMut<Audience>, mut input: MessageWriter<AudienceInput>) {
    let mut taken = 0;
    while taken < EVENTS_PER_FRAME {
        let Ok(event) = server.events.try_recv() else { break };
        taken += 1;
        match &event {
            AudienceEvent::Joined { user, name } => {
                audience.members.insert(user.clone(), name.clone());
                audience.state_dirty = true;
            }
            AudienceEvent::Left { user } => {
                audience.members.remove(user);
                audience.state_dirty = true;
            }
            _ => {}
        }
        input.write(AudienceInput(event));
    }
    server.shared.metrics.queue_depth.store(server.events.len() as u64, Ordering::Relaxed);
}

/// Turns chat and reactions into venue commands through the scene's rules.
fn apply_audience_rules(
    server: Res<AudienceServer>,
    mut audience: ResMut<Audience>,
    mut input: MessageReader<AudienceInput>,
    scene: Option<Res<CurrentScene>>,
    params: Res<StageParams>,
    mut submit: MessageWriter<SubmitCommand>,
) {
    let Some(scene) = scene else { return };
    let shared = &server.shared;
    let now = Instant::now();
    for AudienceInput(event) in input.read() {
        let (user, name, fired, received) = match event {
            AudienceEvent::Chat { user, name, text, received } => {
                audience.next_message_id += 1;
                let line = ServerMessage::Chat {
                    id: audience.next_message_id,
                    from: name.to_string(),
                    text: text.clone(),
                };
                let _ = server.broadcast.send(line.to_json().into());
                let id = audience.next_message_id;
                if audience.recent_lines.len() == RECENT_LINES {
                    audience.recent_lines.pop_front();
                }
                audience.recent_lines.push_back((id, user.clone()));
                let fired = match_chat(&scene.0.rules, text, |p| params.get(p).map(|(d, _)| &d.kind));
                match fired {
                    Ok(Some(f)) => (user, name.clone(), f, *received),
                    Ok(None) => continue,
                    Err(why) => {
                        shared.metrics.reject(Rejection::Rule);
                        let message = match why {
                            NoFire::UnknownCommand(c) => {
                                let known: Vec<String> = scene.0.rules.iter().filter_map(|r| match &r.trigger {
                                    crate::scene::format::TriggerDef::Command(c) => Some(format!("!{c}")),
                                    _ => None,
                                }).collect();
                                format!("no command !{c}; this venue knows: {}", known.join(" "))
                            }
                            NoFire::MissingValue { command, known } if known.is_empty() => format!("!{command} needs a value"),
                            NoFire::MissingValue { command, known } => format!("!{command} needs one of: {}", known.join(", ")),
                        };
                        shared.send_to(user, &ServerMessage::error("not_allowed", message));
                        continue;
                    }
                }
            }
            AudienceEvent::React { user, emoji, received } => {
                let Some(fired) = match_reaction(&scene.0.rules, emoji) else { continue };
                let name = audience.members.get(user).cloned().unwrap_or_else(|| "?".into());
                (user, name, fired, *received)
            }
            AudienceEvent::Vote { user, .. } => {
                shared.send_to(user, &ServerMessage::error("no_poll", "no poll is open"));
                continue;
            }
            AudienceEvent::Moderator { moderator, action } => {
                match action {
                    ModeratorAction::Pause(paused) => {
                        audience.paused = *paused;
                        audience.state_dirty = true;
                        let text = if *paused { "audience effects are paused" } else { "audience effects are back on" };
                        let _ = server.broadcast.send(ServerMessage::Notice { text: text.into() }.to_json().into());
                    }
                    ModeratorAction::Clear { id, user } => {
                        let ids: Vec<u64> = audience
                            .recent_lines
                            .iter()
                            .filter(|(line, from)| Some(*line) == *id || user.as_deref() == Some(&**from))
                            .map(|(line, _)| *line)
                            .collect();
                        // A line older than the memory can still be retracted by id.
                        let ids = if ids.is_empty() { id.iter().copied().collect() } else { ids };
                        for id in ids {
                            let _ = server.broadcast.send(ServerMessage::Retract { id }.to_json().into());
                        }
                    }
                    ModeratorAction::Command(command) => {
                        submit.write(SubmitCommand {
                            origin: CommandOrigin::Moderator(moderator.to_string()),
                            command: command.clone(),
                        });
                    }
                }
                continue;
            }
            AudienceEvent::Joined { .. } | AudienceEvent::Left { .. } => continue,
        };
        let user = user.clone();
        if let Some(r) = submit_fired(&mut audience, shared, &params, &user, &name, fired, received, now) {
            submit.write(r);
        }
    }
    // Now and then, forget members' old cooldowns so a large audience does not grow the map.
    if audience.next_message_id.is_multiple_of(4096) {
        audience.cooldowns.prune(now);
    }
}

/// Checks pause, cooldowns and the value of a fired rule, and makes the command.
fn submit_fired(
    audience: &mut Audience,
    shared: &server::Shared,
    params: &StageParams,
    user: &UserId,
    name: &Arc<str>,
    fired: rules::Fired<'_>,
    received: Instant,
    now: Instant,
) -> Option<SubmitCommand> {
    if audience.paused {
        shared.send_to(user, &ServerMessage::Notice { text: "audience effects are paused by the moderators".into() });
        return None;
    }
    let rule = fired.rule;
    if let Err(wait) = audience.cooldowns.try_fire(rule, user, now, false) {
        shared.metrics.reject(Rejection::Rule);
        shared.send_to(user, &ServerMessage::error("rate_limited", format!("!{} is cooling down; retry in {:.0} s", rule.name, wait.as_secs_f32().ceil())));
        return None;
    }
    let value = match params.parse_value(&rule.param, &fired.value) {
        Ok(v) => v,
        Err(e) => {
            shared.metrics.reject(Rejection::Rule);
            shared.send_to(user, &ServerMessage::error("bad_value", e.to_string()));
            return None;
        }
    };
    audience.pending.push_back(PendingEffect {
        user: user.clone(),
        by: name.clone(),
        rule: rule.name.clone(),
        received,
    });
    Some(SubmitCommand {
        origin: CommandOrigin::Audience(user.to_string()),
        command: VenueCommand::SetParam { name: rule.param.clone(), value },
    })
}

/// Tells everyone what the audience changed, once the command is really applied.
fn announce_applied_effects(
    server: Res<AudienceServer>,
    mut audience: ResMut<Audience>,
    mut applied: MessageReader<LoggedCommand>,
    mut rejected: MessageReader<RejectedCommand>,
) {
    let shared = &server.shared;
    for entry in applied.read() {
        let (CommandOrigin::Audience(user), VenueCommand::SetParam { name, value }) = (&entry.origin, &entry.command) else {
            continue;
        };
        let Some(pending) = audience.pending.pop_front() else { continue };
        debug_assert_eq!(&*pending.user, user.as_str());
        shared.metrics.commands_applied.fetch_add(1, Ordering::Relaxed);
        shared.metrics.observe_latency(pending.received.elapsed());
        let effect = ServerMessage::Effect {
            param: name.clone(),
            value: value.to_string(),
            by: pending.by.to_string(),
            rule: Some(pending.rule),
        };
        let _ = server.broadcast.send(effect.to_json().into());
        audience.state_dirty = true;
    }
    for refusal in rejected.read() {
        if let CommandOrigin::Audience(user) = &refusal.origin {
            audience.pending.pop_front();
            shared.send_to(user, &ServerMessage::error("not_allowed", refusal.error.to_string()));
        }
    }
}

/// Sends the venue's state to everyone when it changes, at most every [`STATE_INTERVAL`].
fn broadcast_state(server: Res<AudienceServer>, mut audience: ResMut<Audience>, params: Res<StageParams>) {
    if params.is_changed() {
        audience.state_dirty = true;
    }
    let now = Instant::now();
    if !audience.state_dirty || audience.last_state.is_some_and(|t| now.duration_since(t) < STATE_INTERVAL) {
        return;
    }
    audience.state_dirty = false;
    audience.last_state = Some(now);
    let state = ServerMessage::State {
        params: params.iter().map(|(d, v)| (d.name.clone(), v.to_string())).collect::<BTreeMap<_, _>>(),
        poll: None,
        audience: audience.members.len() as u32,
        paused: audience.paused,
    };
    let json: Arc<str> = state.to_json().into();
    *server.shared.state_json.write().expect("state snapshot") = json.clone();
    let _ = server.broadcast.send(json);
}
