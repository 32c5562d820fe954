//! OSC type tags, apart from the control room's address space (`osc`) so that readers of other
//! OSC protocols (VMC, `performer`) can name what they received without importing the venue's
//! commands and scene format, which would close a circle of imports.

use rosc::OscType;

/// The type tags of a message's arguments, as OSC writes them (`,fff`).
pub fn type_tags(args: &[OscType]) -> String {
    let mut tags = String::from(",");
    for a in args {
        tags.push(match a {
            OscType::Int(_) => 'i',
            OscType::Float(_) => 'f',
            OscType::String(_) => 's',
            OscType::Blob(_) => 'b',
            OscType::Time(_) => 't',
            OscType::Long(_) => 'h',
            OscType::Double(_) => 'd',
            OscType::Char(_) => 'c',
            OscType::Color(_) => 'r',
            OscType::Midi(_) => 'm',
            OscType::Bool(true) => 'T',
            OscType::Bool(false) => 'F',
            OscType::Array(_) => '[',
            OscType::Nil => 'N',
            OscType::Inf => 'I',
        });
    }
    tags
}
