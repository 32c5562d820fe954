//! The audience's edge: the web server with the audience page, its WebSocket (`/ws`) and
//! `/metrics` (`server`), the moderators' channel (`/mod`, `moderator`), what the venue says to
//! everyone gathered per interval (`fanout`) and written into the members' sockets it shares
//! with their connections (`outlet`), and what their tasks share (`shared`). Everything
//! it accepts goes into the venue through the engine's [`crate::engine::audience::hub`].

pub mod fanout;
pub mod moderator;
pub mod outlet;
pub mod server;
pub mod session;
pub mod shared;
