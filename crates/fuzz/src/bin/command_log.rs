//! AFL's inputs to the `command_log` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::command_log(data));
}
