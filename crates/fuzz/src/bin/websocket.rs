//! AFL's inputs to the `websocket` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::websocket(data));
}
