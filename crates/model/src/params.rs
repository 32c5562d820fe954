//! Stage parameters at run time: their current values, and how a value is checked before it
//! replaces the old one. Values are plain data so that commands can carry them.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scene::format::{Colour, Easing, ParamKind, SceneFile, StageParamDef};

/// A value of a stage parameter, as carried by commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    /// A colour.
    Colour(Colour),
    /// A number.
    Float(f32),
    /// One of an enum parameter's options.
    Enum(String),
    /// On or off.
    Bool(bool),
}

impl ParamValue {
    /// The name of this value's type, as used in messages and scene files.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Colour(_) => "Colour",
            ParamValue::Float(_) => "Float",
            ParamValue::Enum(_) => "Enum",
            ParamValue::Bool(_) => "Bool",
        }
    }

    /// Reads a value written as text (`#ff8800`, `0.5`, `night`, `true`) as the type `kind` needs.
    /// The value is not range-checked here; [`StageParams::set`] does that.
    pub fn parse_for(param: &str, kind: &ParamKind, text: &str) -> Result<Self, ParamError> {
        let text = text.trim();
        let invalid = |expected: &str| ParamError::Unparsable {
            name: param.to_owned(),
            expected: expected.to_owned(),
            found: text.to_owned(),
        };
        Ok(match kind {
            ParamKind::Colour { .. } => {
                ParamValue::Colour(Colour::parse(text).map_err(|_| invalid("a colour like #ff8800"))?)
            }
            ParamKind::Float { .. } => ParamValue::Float(text.parse().map_err(|_| invalid("a number"))?),
            ParamKind::Enum { .. } => ParamValue::Enum(text.to_owned()),
            ParamKind::Bool { .. } => ParamValue::Bool(match text {
                "true" | "on" | "yes" | "1" => true,
                "false" | "off" | "no" | "0" => false,
                _ => return Err(invalid("true or false")),
            }),
        })
    }

    /// The default value of a parameter kind.
    pub fn default_of(kind: &ParamKind) -> Self {
        match kind {
            ParamKind::Colour { default } => ParamValue::Colour(*default),
            ParamKind::Float { default, .. } => ParamValue::Float(*default),
            ParamKind::Enum { default, .. } => ParamValue::Enum(default.clone()),
            ParamKind::Bool { default } => ParamValue::Bool(*default),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Colour(c) => write!(f, "{c}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Enum(s) => f.write_str(s),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Why a parameter value was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParamError {
    /// No parameter has that name.
    #[error("no stage parameter named {name:?}; the venue has: {known}")]
    Unknown {
        /// Name asked for.
        name: String,
        /// Names the venue has, comma-separated.
        known: String,
    },
    /// The value has another type than the parameter.
    #[error("stage parameter {name:?} is a {expected}, but the value is a {found}")]
    WrongType {
        /// Parameter name.
        name: String,
        /// The parameter's type.
        expected: &'static str,
        /// The value's type.
        found: &'static str,
    },
    /// A number outside the parameter's range, or not a number.
    #[error("stage parameter {name:?} takes {min} to {max}, not {value}")]
    OutOfRange {
        /// Parameter name.
        name: String,
        /// Value given.
        value: f32,
        /// Smallest allowed.
        min: f32,
        /// Largest allowed.
        max: f32,
    },
    /// An enum value that is not one of the options.
    #[error("stage parameter {name:?} takes one of {options}, not {value:?}")]
    UnknownOption {
        /// Parameter name.
        name: String,
        /// Value given.
        value: String,
        /// Allowed options, comma-separated.
        options: String,
    },
    /// Text that could not be read as the parameter's type.
    #[error("stage parameter {name:?} needs {expected}, found {found:?}")]
    Unparsable {
        /// Parameter name.
        name: String,
        /// What was expected.
        expected: String,
        /// Text given.
        found: String,
    },
}

/// The venue's stage parameters and their current values, in scene-file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageParams {
    entries: Vec<(StageParamDef, ParamValue)>,
    /// Parameters moving towards a value (`AnimateParam`), at most one move per parameter.
    moves: Vec<Move>,
}

/// A parameter moving from one value to another.
#[derive(Debug, Clone, PartialEq)]
struct Move {
    index: usize,
    from: ParamValue,
    to: ParamValue,
    /// Start, in seconds of the app's clock.
    start: f64,
    seconds: f32,
    easing: Easing,
}

/// sRGB component to linear light, so that colours blend as light does.
fn to_linear(c: f32) -> f32 {
    if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
}

fn to_srgb(c: f32) -> f32 {
    if c <= 0.003_130_8 { c * 12.92 } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 }
}

/// The value a fraction `k` of the way from `from` to `to`. Types that do not blend switch at the end.
fn blend(from: &ParamValue, to: &ParamValue, k: f32) -> ParamValue {
    match (from, to) {
        (ParamValue::Float(a), ParamValue::Float(b)) => ParamValue::Float(a + (b - a) * k),
        (ParamValue::Colour(a), ParamValue::Colour(b)) => {
            // Colour channels blend in linear light; alpha is already linear.
            let channel = |i: usize| {
                to_srgb(to_linear(a.srgba[i]) + (to_linear(b.srgba[i]) - to_linear(a.srgba[i])) * k).clamp(0.0, 1.0)
            };
            let srgba = [channel(0), channel(1), channel(2), a.srgba[3] + (b.srgba[3] - a.srgba[3]) * k];
            ParamValue::Colour(crate::scene::format::Colour { srgba })
        }
        _ if k >= 1.0 => to.clone(),
        _ => from.clone(),
    }
}

impl StageParams {
    /// Every parameter of the scene at its default value.
    pub fn from_scene(scene: &SceneFile) -> Self {
        Self {
            entries: scene.params.iter().map(|def| (def.clone(), ParamValue::default_of(&def.kind))).collect(),
            moves: Vec::new(),
        }
    }

    /// Every parameter with the value it will settle at: the end of its move if it is
    /// animating, otherwise its value.
    pub fn iter_settled(&self) -> impl Iterator<Item = (&StageParamDef, &ParamValue)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, (d, v))| (d, self.moves.iter().find(|m| m.index == i).map_or(v, |m| &m.to)))
    }

    /// Position of a parameter already checked to exist.
    fn index_of(&self, name: &str) -> usize {
        self.entries.iter().position(|(d, _)| d.name == name).expect("checked by the caller")
    }

    /// Whether the named parameter is moving.
    pub fn is_animating(&self, name: &str) -> bool {
        self.moves.iter().any(|m| self.entries[m.index].0.name == name)
    }

    /// Whether any parameter is moving.
    pub fn any_animating(&self) -> bool {
        !self.moves.is_empty()
    }

    /// Starts moving a parameter to `to` over `seconds` from the app time `now` (seconds),
    /// replacing any move it was making. Zero seconds sets the value at once.
    pub fn animate(
        &mut self,
        name: &str,
        to: ParamValue,
        seconds: f32,
        easing: Easing,
        now: f64,
    ) -> Result<(), ParamError> {
        self.check(name, &to)?;
        let index = self.index_of(name);
        self.moves.retain(|m| m.index != index);
        if seconds <= 0.0 {
            self.entries[index].1 = to;
            return Ok(());
        }
        let from = self.entries[index].1.clone();
        self.moves.push(Move { index, from, to, start: now, seconds, easing });
        Ok(())
    }

    /// Advances every move to the app time `now`; finished moves end exactly on their value.
    pub fn advance(&mut self, now: f64) {
        let entries = &mut self.entries;
        self.moves.retain(|m| {
            let t = ((now - m.start) / f64::from(m.seconds)) as f32;
            entries[m.index].1 = blend(&m.from, &m.to, m.easing.apply(t));
            t < 1.0
        });
    }

    /// Ends every move on its value at once (a replay has no time to wait).
    pub fn settle(&mut self) {
        for m in self.moves.drain(..) {
            self.entries[m.index].1 = m.to;
        }
    }

    /// The definition and value of a parameter.
    pub fn get(&self, name: &str) -> Option<(&StageParamDef, &ParamValue)> {
        self.entries.iter().find(|(d, _)| d.name == name).map(|(d, v)| (d, v))
    }

    /// The current value of a parameter.
    pub fn value(&self, name: &str) -> Option<&ParamValue> {
        self.get(name).map(|(_, v)| v)
    }

    /// Every parameter with its value, in scene-file order.
    pub fn iter(&self) -> impl Iterator<Item = (&StageParamDef, &ParamValue)> {
        self.entries.iter().map(|(d, v)| (d, v))
    }

    /// The definition of a parameter, or an error naming the known ones.
    pub fn def(&self, name: &str) -> Result<&StageParamDef, ParamError> {
        self.get(name).map(|(d, _)| d).ok_or_else(|| ParamError::Unknown {
            name: name.to_owned(),
            known: self.entries.iter().map(|(d, _)| d.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Checks `value` against the parameter's type and constraints without changing anything.
    pub fn check(&self, name: &str, value: &ParamValue) -> Result<(), ParamError> {
        let def = self.def(name)?;
        let wrong = || ParamError::WrongType {
            name: name.to_owned(),
            expected: kind_type_name(&def.kind),
            found: value.type_name(),
        };
        match (&def.kind, value) {
            (ParamKind::Colour { .. }, ParamValue::Colour(c)) => {
                if c.srgba.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
                    Ok(())
                } else {
                    Err(ParamError::Unparsable {
                        name: name.to_owned(),
                        expected: "colour components from 0 to 1".into(),
                        found: format!("{:?}", c.srgba),
                    })
                }
            }
            (ParamKind::Float { min, max, .. }, ParamValue::Float(v)) => {
                if v.is_finite() && (*min..=*max).contains(v) {
                    Ok(())
                } else {
                    Err(ParamError::OutOfRange { name: name.to_owned(), value: *v, min: *min, max: *max })
                }
            }
            (ParamKind::Enum { options, .. }, ParamValue::Enum(v)) => {
                if options.contains(v) {
                    Ok(())
                } else {
                    Err(ParamError::UnknownOption {
                        name: name.to_owned(),
                        value: v.clone(),
                        options: options.join(", "),
                    })
                }
            }
            (ParamKind::Bool { .. }, ParamValue::Bool(_)) => Ok(()),
            _ => Err(wrong()),
        }
    }

    /// Reads `text` as a value of the named parameter (as on the command line: `#ff8800`, `0.5`,
    /// `night`, `true`) and checks it against the parameter's constraints.
    pub fn parse_value(&self, name: &str, text: &str) -> Result<ParamValue, ParamError> {
        let value = ParamValue::parse_for(name, &self.def(name)?.kind, text)?;
        self.check(name, &value)?;
        Ok(value)
    }

    /// Replaces a parameter's value after checking it. Returns whether the value changed.
    pub fn set(&mut self, name: &str, value: ParamValue) -> Result<bool, ParamError> {
        self.check(name, &value)?;
        let index = self.index_of(name);
        // A value set outright ends any move the parameter was making.
        self.moves.retain(|m| m.index != index);
        let slot = &mut self.entries[index].1;
        let changed = *slot != value;
        *slot = value;
        Ok(changed)
    }
}

/// The type name of a parameter kind.
pub fn kind_type_name(kind: &ParamKind) -> &'static str {
    match kind {
        ParamKind::Colour { .. } => "Colour",
        ParamKind::Float { .. } => "Float",
        ParamKind::Enum { .. } => "Enum",
        ParamKind::Bool { .. } => "Bool",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::format::Colour;

    fn params() -> StageParams {
        let scene: SceneFile = ron::from_str(
            r##"(version: 1, venue: (title: "t"), params: [
                (name: "fog", label: "Fog", kind: Float(default: 0.0, min: 0.0, max: 1.0)),
                (name: "light", label: "Light", kind: Colour(default: "#000000")),
                (name: "sky", label: "Sky", kind: Enum(default: "day", options: ["day", "night"])),
            ])"##,
        )
        .expect("test scene");
        StageParams::from_scene(&scene)
    }

    #[test]
    fn moves_blend_over_time_and_end_exactly() {
        let mut p = params();
        p.animate("fog", ParamValue::Float(1.0), 2.0, Easing::Linear, 10.0).unwrap();
        p.animate("light", ParamValue::Colour(Colour::rgb(1.0, 1.0, 1.0)), 2.0, Easing::Linear, 10.0).unwrap();
        assert_eq!(
            p.iter_settled().find(|(d, _)| d.name == "fog").map(|(_, v)| v.clone()),
            Some(ParamValue::Float(1.0))
        );
        p.advance(11.0);
        assert_eq!(p.value("fog"), Some(&ParamValue::Float(0.5)));
        let ParamValue::Colour(mid) = p.value("light").unwrap().clone() else { panic!() };
        // Half the light, blended in linear space, is brighter than half the sRGB value.
        assert!(mid.srgba[0] > 0.7 && mid.srgba[0] < 0.75, "{mid:?}");
        p.advance(12.5);
        assert_eq!(p.value("fog"), Some(&ParamValue::Float(1.0)));
        assert!(!p.any_animating());
    }

    #[test]
    fn setting_a_value_cancels_its_move_and_bad_targets_are_refused() {
        let mut p = params();
        p.animate("fog", ParamValue::Float(1.0), 5.0, Easing::InOut, 0.0).unwrap();
        p.set("fog", ParamValue::Float(0.2)).unwrap();
        assert!(!p.is_animating("fog"));
        p.advance(10.0);
        assert_eq!(p.value("fog"), Some(&ParamValue::Float(0.2)));
        assert!(p.animate("fog", ParamValue::Float(3.0), 1.0, Easing::Linear, 0.0).is_err(), "out of range");
        p.animate("sky", ParamValue::Enum("night".into()), 1.0, Easing::Linear, 0.0).unwrap();
        p.advance(0.5);
        assert_eq!(p.value("sky"), Some(&ParamValue::Enum("day".into())), "enums switch at the end");
        p.settle();
        assert_eq!(p.value("sky"), Some(&ParamValue::Enum("night".into())));
    }
}
