//! AFL's inputs to the `vmc` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::vmc(data));
}
