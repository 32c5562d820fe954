//! AFL's inputs to the `irc_line` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::irc_line(data));
}
