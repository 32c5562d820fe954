//! Stage parameters at run time: their current values, and how a value is checked before it
//! replaces the old one. Values are plain data so that commands can carry them.

use std::fmt;

use bevy::prelude::Resource;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scene::format::{Colour, ParamKind, SceneFile, StageParamDef};

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
#[derive(Debug, Clone, Default, PartialEq, Resource)]
pub struct StageParams {
    entries: Vec<(StageParamDef, ParamValue)>,
}

impl StageParams {
    /// Every parameter of the scene at its default value.
    pub fn from_scene(scene: &SceneFile) -> Self {
        Self {
            entries: scene
                .params
                .iter()
                .map(|def| (def.clone(), ParamValue::default_of(&def.kind)))
                .collect(),
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
                    Err(ParamError::OutOfRange {
                        name: name.to_owned(),
                        value: *v,
                        min: *min,
                        max: *max,
                    })
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
        let slot = self
            .entries
            .iter_mut()
            .find(|(d, _)| d.name == name)
            .map(|(_, v)| v)
            .expect("checked above");
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
