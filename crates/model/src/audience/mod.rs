//! The audience as plain data and pure logic: the events edges hand to the venue (`event`),
//! the page's protocol (`protocol`, docs/protocol.md) and the moderators' (`moderator`),
//! cleaning and refusing text and the moderators' decisions (`moderation`), matching chat
//! against the scene's rules (`rules`), and counting votes and crowd energy (`polls`).

pub mod event;
pub mod moderation;
pub mod moderator;
pub mod polls;
pub mod protocol;
pub mod rules;
