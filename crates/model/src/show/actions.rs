//! A cue's actions as venue commands: what the curator wrote (`Set(param: "fog", value:
//! "0.4")`) read against the venue's stage parameters, so that `parvis check` refuses what the
//! show would refuse on the night.

use crate::command::VenueCommand;
use crate::params::{ParamError, StageParams};
use crate::program::ProgramAction;
use crate::scene::format::CueAction;

/// The venue command a cue action stands for; a value that does not read or fit its parameter
/// is refused with the parameter's own message.
pub fn cue_command(action: &CueAction, params: &StageParams) -> Result<VenueCommand, ParamError> {
    Ok(match action {
        CueAction::Set { param, value } => {
            VenueCommand::SetParam { name: param.clone(), value: params.parse_value(param, value)? }
        }
        CueAction::Animate { param, to, seconds, easing } => VenueCommand::AnimateParam {
            name: param.clone(),
            to: params.parse_value(param, to)?,
            seconds: *seconds,
            easing: *easing,
        },
        CueAction::Spawn { effect, seed } => VenueCommand::SpawnEffect { effect: effect.clone(), seed: *seed },
        CueAction::Hotspot(name) => VenueCommand::ShowHotspot { name: name.clone() },
        CueAction::Tour(tour) => VenueCommand::PlayTour { tour: tour.clone(), language: None },
        CueAction::OpenPoll(poll) => VenueCommand::OpenPoll { poll: poll.clone() },
        CueAction::ClosePoll(poll) => VenueCommand::ClosePoll { poll: poll.clone() },
        CueAction::HideTexts => VenueCommand::HideText { id: None },
        CueAction::OpenWindow { rules, seconds, label } => {
            VenueCommand::OpenWindow { rules: rules.clone(), seconds: *seconds, label: label.clone() }
        }
        CueAction::CloseWindow(rules) => VenueCommand::CloseWindow { rules: rules.clone() },
        CueAction::Cut(viewpoint) => {
            VenueCommand::Program { action: ProgramAction::Cut { viewpoint: viewpoint.clone() } }
        }
        CueAction::MoveCamera { viewpoint, seconds, easing } => VenueCommand::Program {
            action: ProgramAction::Move { viewpoint: viewpoint.clone(), seconds: *seconds, easing: *easing },
        },
        CueAction::Overlay { overlay, visible } => {
            VenueCommand::Program { action: ProgramAction::Overlay { overlay: *overlay, visible: *visible } }
        }
    })
}
