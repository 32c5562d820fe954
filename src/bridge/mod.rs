//! Chat bridges from streaming platforms into the audience pipeline. `irc` parses the Twitch
//! dialect of IRCv3; the connection and the `ChatBridge` interface come with the Twitch bridge.

pub mod irc;
