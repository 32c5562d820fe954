//! `parvis render`: one frame of a venue, headless, into a PNG; with `--show NAME --at S`, the
//! venue as the show leaves it at that moment.

use anyhow::{Context, Result};

use super::args::*;
use super::venue::venue_setup;
use parvis::app::headless::HeadlessRenderer;
use parvis::engine::output::save_png;

pub fn render(args: RenderArgs) -> Result<()> {
    let setup = venue_setup(&args.venue)?;
    let mut renderer = HeadlessRenderer::new(setup, args.size);
    renderer.wait_until_ready().context("the venue did not load")?;
    if let (Some(show), Some(at)) = (&args.venue.show, args.at) {
        let fired = renderer.play_show_to(show, at).context("the show did not play")?;
        eprintln!("parvis: show {show} played to {at} s: {fired} cues fired");
    }
    for _ in 0..args.frames {
        renderer.step();
    }
    let image = renderer.capture()?;
    save_png(&image, &args.out)?;
    eprintln!("parvis: wrote {} ({}x{})", args.out.display(), image.width(), image.height());
    Ok(())
}
