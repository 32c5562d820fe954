//! The program output, as data: what the director does to the broadcast picture (cuts, moves,
//! overlays), where the picture goes (`rtmp://`, `rtmps://`, `srt://`, `.mkv`/`.mp4` files) with
//! which encoding settings, the ffmpeg command line that sends it, how a target is written in
//! logs without its secret, and the frame code stamped in a corner of every output frame so that
//! the delay to the viewers can be measured by reading the stream back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scene::format::Easing;

/// What the director does to the program picture. Staff only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ProgramAction {
    /// Cut to a viewpoint of the scene.
    Cut {
        /// Viewpoint name, from the scene's `viewpoints`.
        viewpoint: String,
    },
    /// Move smoothly to a viewpoint.
    Move {
        /// Viewpoint name.
        viewpoint: String,
        /// Duration of the move (0 to 600 seconds).
        seconds: f32,
        /// Shape of the move.
        #[serde(default)]
        easing: Easing,
    },
    /// Show or hide one of the program's overlays.
    Overlay {
        /// Which overlay.
        overlay: Overlay,
        /// Shown or hidden.
        visible: bool,
    },
}

impl ProgramAction {
    /// Whether every number in the action is finite.
    pub fn numbers_are_finite(&self) -> bool {
        match self {
            ProgramAction::Move { seconds, .. } => seconds.is_finite(),
            _ => true,
        }
    }
}

impl std::fmt::Display for ProgramAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramAction::Cut { viewpoint } => write!(f, "cut to {viewpoint}"),
            ProgramAction::Move { viewpoint, seconds, .. } => write!(f, "move to {viewpoint} over {seconds} s"),
            ProgramAction::Overlay { overlay, visible: true } => write!(f, "show the {} overlay", overlay.name()),
            ProgramAction::Overlay { overlay, visible: false } => write!(f, "hide the {} overlay", overlay.name()),
        }
    }
}

pub use crate::scene::format::Overlay;

/// Something wrong with an output before anything starts.
#[derive(Debug, Error, PartialEq)]
pub enum OutputError {
    /// The URL's scheme is not one Parvis sends to.
    #[error("{url}: unknown output; expected rtmp://, rtmps://, srt:// or a file ending in .mkv or .mp4")]
    UnknownScheme {
        /// The target, without its secret.
        url: String,
    },
    /// The URL has no host, or no stream path for RTMP.
    #[error("{url}: {why}")]
    BadUrl {
        /// The target, without its secret.
        url: String,
        /// What is missing.
        why: &'static str,
    },
    /// A recording's folder does not exist or cannot be written.
    #[error("cannot record to {path}: {why}")]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Output size or rate out of range.
    #[error("{0}")]
    Settings(String),
    /// A network output that is not on this machine while tests run (`PARVIS_OUTPUT_LOOPBACK_ONLY`).
    #[error("{url}: only loopback outputs are allowed here (PARVIS_OUTPUT_LOOPBACK_ONLY is set)")]
    NotLoopback {
        /// The target, without its secret.
        url: String,
    },
}

/// Where the program goes.
#[derive(Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// RTMP or RTMPS ingest (Twitch, YouTube, nginx-rtmp): FLV container.
    Rtmp(String),
    /// SRT: MPEG-TS container.
    Srt(String),
    /// A file: Matroska (survives a crash) or MP4 (needs a clean stop).
    File(PathBuf),
}

// The URL holds the stream key: Debug prints the redacted form, so that a target in a log line
// or an error never shows it.
impl std::fmt::Debug for OutputTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTarget({})", self.redacted())
    }
}

impl OutputTarget {
    /// Reads `--stream URL` or `--record FILE`.
    pub fn parse(text: &str) -> Result<OutputTarget, OutputError> {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("rtmp://") || lower.starts_with("rtmps://") {
            let target = OutputTarget::Rtmp(text.to_owned());
            let rest = &text[text.find("://").map_or(0, |i| i + 3)..];
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.is_empty() {
                return Err(OutputError::BadUrl { url: target.redacted(), why: "no host" });
            }
            // An ingest URL is rtmp://host/app/key; a key may be given without the app only
            // on servers that accept it, so at least one path segment is required.
            if path.trim_matches('/').is_empty() {
                return Err(OutputError::BadUrl {
                    url: target.redacted(),
                    why: "no application or stream key (expected rtmp://host/app/key)",
                });
            }
            return Ok(target);
        }
        if lower.starts_with("srt://") {
            let target = OutputTarget::Srt(text.to_owned());
            let host = text[6..].split(['?', '/']).next().unwrap_or_default();
            if host.is_empty() || !host.contains(':') {
                return Err(OutputError::BadUrl { url: target.redacted(), why: "expected srt://host:port" });
            }
            return Ok(target);
        }
        if lower.contains("://") {
            let scheme = &text[..text.find("://").unwrap_or(0)];
            return Err(OutputError::UnknownScheme { url: format!("{scheme}://…") });
        }
        let path = PathBuf::from(text);
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("mkv" | "mp4") => Ok(OutputTarget::File(path)),
            // Not echoed whole: a URL typed without its scheme would show its key.
            Some(ext) if ext.len() <= 5 && !text.contains(['?', '@']) => {
                Err(OutputError::UnknownScheme { url: format!("a .{ext} file") })
            }
            _ => Err(OutputError::UnknownScheme { url: redact_url(text) }),
        }
    }

    /// With `loopback_only`, refuses a network target that is not on this machine. (Whether a
    /// recording's folder can be written is the edge's to find out: the model does no I/O.)
    pub fn check_host(&self, loopback_only: bool) -> Result<(), OutputError> {
        match self {
            OutputTarget::Rtmp(url) | OutputTarget::Srt(url) if loopback_only && !is_loopback_host(host_of(url)) => {
                Err(OutputError::NotLoopback { url: self.redacted() })
            }
            _ => Ok(()),
        }
    }

    /// The target as logs, `/metrics` and errors show it: an RTMP stream key, SRT pass phrase
    /// and stream id, and any user or password in the URL replaced by `…`.
    pub fn redacted(&self) -> String {
        match self {
            OutputTarget::File(path) => path.display().to_string(),
            OutputTarget::Rtmp(url) | OutputTarget::Srt(url) => redact_url(url),
        }
    }

    /// The secrets in this target (stream key, pass phrase, user info), to be scrubbed from
    /// anything ffmpeg prints.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            OutputTarget::Rtmp(url) | OutputTarget::Srt(url) => url_secrets(url),
            OutputTarget::File(_) => Vec::new(),
        }
    }

    /// The container ffmpeg writes.
    pub fn container(&self) -> &'static str {
        match self {
            OutputTarget::Rtmp(_) => "flv",
            OutputTarget::Srt(_) => "mpegts",
            OutputTarget::File(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("mp4")) => "mp4",
            OutputTarget::File(_) => "matroska",
        }
    }

    /// Whether this is a network stream (reconnected when lost) rather than a file.
    pub fn is_stream(&self) -> bool {
        !matches!(self, OutputTarget::File(_))
    }

    /// What ffmpeg is given as its output.
    pub fn ffmpeg_output(&self) -> String {
        match self {
            OutputTarget::Rtmp(url) | OutputTarget::Srt(url) => url.clone(),
            OutputTarget::File(path) => path.display().to_string(),
        }
    }
}

fn host_of(url: &str) -> &str {
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A URL as logs may show it: scheme and host; of the path, only its first segment when more
/// follow (an RTMP application, an HLS folder), everything else (a stream key, a playlist named
/// after it) as `…`; query values and any user or password as `…`. The same for every scheme, so
/// that a mistyped or unusual URL hides as much as a usual one.
pub fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = url.split_at(scheme_end);
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = authority.rsplit_once('@').map_or(authority.to_owned(), |(_, h)| format!("…@{h}"));
    let mut out = format!("{scheme}{authority}");
    match path.filter(|p| !p.is_empty()) {
        Some(path) => match path.split_once('/') {
            Some((first, _)) => out.push_str(&format!("/{first}/…")),
            None => out.push_str("/…"),
        },
        None => out.push_str(path.map_or("", |_| "/")),
    }
    if let Some(query) = query {
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=…"),
                None => "…".to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// What [`redact_url`] hides, to scrub from anything ffmpeg prints: the URL, its user info,
/// its path beyond the first segment (or the whole of a one-segment path), its query values.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = vec![url.to_owned()];
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let rest_no_query = rest.split('?').next().unwrap_or_default();
    let (authority, path) = rest_no_query.split_once('/').unwrap_or((rest_no_query, ""));
    if let Some((user, _)) = authority.rsplit_once('@') {
        secrets.push(user.to_owned());
    }
    match path.split_once('/') {
        Some((_, hidden)) => secrets.push(hidden.to_owned()),
        None => secrets.push(path.to_owned()),
    }
    if let Some((_, query)) = rest.split_once('?') {
        secrets.extend(query.split('&').map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v).to_owned()));
    }
    secrets.retain(|s| s.len() >= 3);
    secrets
}

/// Replaces each of `secrets` in `text` by `…` (ffmpeg prints its output URL in errors).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    // Longest first, so that the whole URL goes before its key alone.
    let mut sorted: Vec<&String> = secrets.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in sorted {
        // A whole URL becomes its redacted form, so that the message still says where.
        let with = if secret.contains("://") { redact_url(secret) } else { "…".to_owned() };
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), &with);
        }
    }
    out
}

/// Size, rate and bit rates of the program output. The defaults fit Twitch's 720p30 ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frames a second.
    pub fps: u32,
    /// Video bit rate, kbit/s.
    pub video_kbps: u32,
    /// Audio bit rate, kbit/s (AAC, 48 kHz stereo).
    pub audio_kbps: u32,
    /// Seconds between keyframes (Twitch asks for 2).
    pub keyframe_seconds: u32,
    /// The video encoder: `libx264`, or a hardware one such as `h264_nvenc`.
    pub encoder: String,
}

impl Default for OutputSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            video_kbps: 4500,
            audio_kbps: 160,
            keyframe_seconds: 2,
            encoder: "libx264".into(),
        }
    }
}

/// Audio samples a second in the program output.
pub const AUDIO_RATE: u32 = 48_000;
/// Largest output, in pixels a side.
pub const MAX_SIDE: u32 = 4096;

impl OutputSettings {
    /// Checks sizes and rates.
    pub fn check(&self) -> Result<(), OutputError> {
        let Self { width, height, fps, video_kbps, audio_kbps, keyframe_seconds, .. } = *self;
        if width % 2 != 0 || height % 2 != 0 {
            return Err(OutputError::Settings(format!(
                "output size {width}x{height}: both sides must be even (H.264's 4:2:0 colour)"
            )));
        }
        if !(16..=MAX_SIDE).contains(&width) || !(16..=MAX_SIDE).contains(&height) {
            return Err(OutputError::Settings(format!(
                "output size {width}x{height}: each side is 16 to {MAX_SIDE} pixels"
            )));
        }
        if !(1..=120).contains(&fps) {
            return Err(OutputError::Settings(format!("output rate {fps} fps: 1 to 120")));
        }
        if !(100..=100_000).contains(&video_kbps) {
            return Err(OutputError::Settings(format!("video bit rate {video_kbps} kbit/s: 100 to 100000")));
        }
        if !(32..=512).contains(&audio_kbps) {
            return Err(OutputError::Settings(format!("audio bit rate {audio_kbps} kbit/s: 32 to 512")));
        }
        if !(1..=10).contains(&keyframe_seconds) {
            return Err(OutputError::Settings(format!("keyframe interval {keyframe_seconds} s: 1 to 10")));
        }
        Ok(())
    }

    /// Bytes of one RGBA frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 4
    }

    /// ffmpeg's arguments: raw RGBA frames on standard input, 16-bit stereo PCM at
    /// [`AUDIO_RATE`] from `audio_input` (a `tcp://` address ffmpeg connects to), encoded and
    /// written to `target`.
    pub fn ffmpeg_args(&self, target: &OutputTarget, audio_input: &str) -> Vec<String> {
        let s = |v: &str| v.to_owned();
        let kbps = self.video_kbps;
        let gop = self.fps * self.keyframe_seconds;
        let mut args = vec![
            s("-hide_banner"),
            s("-nostdin"),
            s("-nostats"),
            // Progress on standard output: how far the output has really been written (an
            // RTMP output only moves once the server takes it).
            s("-progress"),
            s("pipe:1"),
            s("-stats_period"),
            s("0.5"),
            s("-loglevel"),
            s("warning"),
            s("-y"),
            // Raw input needs no probing: starting at once matters on a reconnect.
            s("-probesize"),
            s("32"),
            s("-analyzeduration"),
            s("0"),
            s("-f"),
            s("rawvideo"),
            s("-pix_fmt"),
            s("rgba"),
            s("-s"),
            format!("{}x{}", self.width, self.height),
            s("-framerate"),
            self.fps.to_string(),
            s("-thread_queue_size"),
            s("64"),
            s("-i"),
            s("pipe:0"),
            s("-f"),
            s("s16le"),
            s("-ar"),
            AUDIO_RATE.to_string(),
            s("-ch_layout"),
            s("stereo"),
            s("-thread_queue_size"),
            s("256"),
            s("-i"),
            audio_input.to_owned(),
            s("-map"),
            s("0:v"),
            s("-map"),
            s("1:a"),
            s("-c:v"),
            self.encoder.clone(),
        ];
        if self.encoder == "libx264" {
            args.extend([s("-preset"), s("veryfast"), s("-tune"), s("zerolatency")]);
        } else if self.encoder.ends_with("_nvenc") {
            args.extend([s("-preset"), s("p4"), s("-tune"), s("ll")]);
        }
        args.extend([
            s("-pix_fmt"),
            s("yuv420p"),
            s("-b:v"),
            format!("{kbps}k"),
            s("-maxrate"),
            format!("{kbps}k"),
            s("-bufsize"),
            format!("{}k", kbps * 2),
            s("-g"),
            gop.to_string(),
            s("-keyint_min"),
            gop.to_string(),
            s("-sc_threshold"),
            s("0"),
            s("-c:a"),
            s("aac"),
            s("-b:a"),
            format!("{}k", self.audio_kbps),
            s("-ar"),
            AUDIO_RATE.to_string(),
        ]);
        if target.is_stream() {
            // A server that stops reading ends ffmpeg within 5 s instead of hanging it.
            args.extend([s("-rw_timeout"), s("5000000")]);
        }
        if target.container() == "mp4" {
            args.extend([s("-movflags"), s("+faststart")]);
        }
        args.extend([s("-f"), s(target.container()), target.ffmpeg_output()]);
        args
    }
}

/// The frame code: a row of [`stamp::BITS`] black or white squares in the bottom-right corner,
/// between two marker squares, carrying the output frame's number (modulo 2^16) and a parity
/// bit. Squares of [`stamp::CELL`] pixels survive H.264 at streaming bit rates.
pub mod stamp {
    /// Pixels a side of one square.
    pub const CELL: usize = 8;
    /// Data bits (16 of value, 1 of parity).
    pub const BITS: usize = 17;
    /// Squares in the row: a white and a black marker, the bits, a black and a white marker.
    pub const CELLS: usize = BITS + 4;

    /// Writes `value` (its low 16 bits) into an RGBA frame of `width` x `height`.
    pub fn write(rgba: &mut [u8], width: usize, height: usize, value: u32) {
        let Some((x0, y0)) = origin(width, height) else { return };
        for (i, white) in cells(value).into_iter().enumerate() {
            let v = if white { 255 } else { 0 };
            for y in y0..y0 + CELL {
                let row = (y * width + x0 + i * CELL) * 4;
                for px in rgba[row..row + CELL * 4].chunks_exact_mut(4) {
                    px.copy_from_slice(&[v, v, v, 255]);
                }
            }
        }
    }

    /// Reads the frame code of an RGBA frame, if its markers are there and its parity holds.
    pub fn read(rgba: &[u8], width: usize, height: usize) -> Option<u16> {
        let (x0, y0) = origin(width, height)?;
        if rgba.len() < width * height * 4 {
            return None;
        }
        let mut bits = [false; CELLS];
        for (i, bit) in bits.iter_mut().enumerate() {
            // The mean of the square's middle, away from the edges that compression blurs.
            let mut sum = 0u32;
            let mut n = 0u32;
            for y in y0 + 2..y0 + CELL - 2 {
                for x in x0 + i * CELL + 2..x0 + (i + 1) * CELL - 2 {
                    let p = (y * width + x) * 4;
                    sum += (u32::from(rgba[p]) + u32::from(rgba[p + 1]) + u32::from(rgba[p + 2])) / 3;
                    n += 1;
                }
            }
            let mean = sum / n.max(1);
            if (64..192).contains(&mean) {
                return None;
            }
            *bit = mean >= 128;
        }
        let markers = [bits[0], bits[1], bits[CELLS - 2], bits[CELLS - 1]];
        if markers != [true, false, false, true] {
            return None;
        }
        let data = &bits[2..2 + BITS];
        let value = data[..16].iter().enumerate().fold(0u16, |v, (i, b)| v | (u16::from(*b) << i));
        if (value.count_ones() % 2 == 1) != data[16] {
            return None;
        }
        Some(value)
    }

    fn cells(value: u32) -> [bool; CELLS] {
        let value = value as u16;
        let mut out = [false; CELLS];
        out[0] = true;
        for (i, cell) in out[2..18].iter_mut().enumerate() {
            *cell = value >> i & 1 == 1;
        }
        out[18] = value.count_ones() % 2 == 1;
        out[CELLS - 1] = true;
        out
    }

    fn origin(width: usize, height: usize) -> Option<(usize, usize)> {
        let w = CELLS * CELL;
        (width >= w + CELL && height >= 2 * CELL).then(|| (width - w - CELL / 2, height - CELL - CELL / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_and_checked() {
        assert!(matches!(OutputTarget::parse("rtmp://live.twitch.tv/app/live_123_abc"), Ok(OutputTarget::Rtmp(_))));
        assert!(matches!(OutputTarget::parse("srt://127.0.0.1:9000?mode=caller"), Ok(OutputTarget::Srt(_))));
        assert!(matches!(OutputTarget::parse("show.MKV"), Ok(OutputTarget::File(_))));
        assert_eq!(
            OutputTarget::parse("http://example.org/x").unwrap_err().to_string(),
            "http://…: unknown output; expected rtmp://, rtmps://, srt:// or a file ending in .mkv or .mp4"
        );
        assert!(OutputTarget::parse("show.avi").is_err());
        assert!(matches!(OutputTarget::parse("rtmp://host"), Err(OutputError::BadUrl { .. })));
        assert!(matches!(OutputTarget::parse("rtmp:///app/key"), Err(OutputError::BadUrl { .. })));
        assert!(matches!(OutputTarget::parse("srt://host"), Err(OutputError::BadUrl { .. })));
        let remote = OutputTarget::parse("rtmp://live.twitch.tv/app/key").unwrap();
        assert!(matches!(remote.check_host(true), Err(OutputError::NotLoopback { .. })));
        assert!(remote.check_host(false).is_ok());
        assert!(OutputTarget::parse("rtmp://127.0.0.1:1935/live/x").unwrap().check_host(true).is_ok());
        assert!(OutputTarget::parse("srt://[::1]:9000").unwrap().check_host(true).is_ok());
    }

    #[test]
    fn secrets_hide_in_every_shape_of_url() {
        for (url, key) in [
            ("RTMP://live.example.org/app/K3yOfTheStream", "K3yOfTheStream"),
            ("rtmp://live.example.org/K3yOfTheStream", "K3yOfTheStream"),
            ("rtmps://live.example.org:443/app/K3yOfTheStream?x=1", "K3yOfTheStream"),
            ("http://cdn.example.org/hls/K3yOfTheStream.m3u8", "K3yOfTheStream"),
            ("srt://host:9000/K3yOfTheStream", "K3yOfTheStream"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(key), "{url} shows as {shown}");
            let printed = format!("Error opening output {url}: I/O error");
            assert!(!scrub(&printed, &url_secrets(url)).contains(key), "{url}");
        }
        assert_eq!(redact_url("rtmp://live.example.org/K3yOfTheStream"), "rtmp://live.example.org/…");
        for typo in ["live.twitch.tv/app/live_123_K3yOfTheStream", "rtmp:/host/app/K3yOfTheStream"] {
            let err = OutputTarget::parse(typo).unwrap_err().to_string();
            assert!(!err.contains("K3yOfTheStream"), "{err}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let key = "live_123456_SeCrEtKeY";
        let target = OutputTarget::parse(&format!("rtmp://user:pw@live.twitch.tv/app/{key}")).unwrap();
        let shown = target.redacted();
        assert_eq!(shown, "rtmp://…@live.twitch.tv/app/…");
        assert!(!format!("{target:?}").contains(key));
        let err = format!("[flv @ 0x1] Failed to connect to rtmp://user:pw@live.twitch.tv/app/{key}: refused {key}");
        let clean = scrub(&err, &target.secrets());
        assert!(!clean.contains(key) && !clean.contains("pw@"), "{clean}");
        let srt = OutputTarget::parse("srt://127.0.0.1:9000?passphrase=hunter2hunter2&streamid=abc").unwrap();
        assert_eq!(srt.redacted(), "srt://127.0.0.1:9000?passphrase=…&streamid=…");
        assert!(!scrub("bad passphrase hunter2hunter2", &srt.secrets()).contains("hunter2"));
    }

    #[test]
    fn settings_are_checked() {
        assert!(OutputSettings::default().check().is_ok());
        let odd = OutputSettings { width: 1279, ..Default::default() };
        assert!(odd.check().unwrap_err().to_string().contains("even"));
        let huge = OutputSettings { width: 8192, ..Default::default() };
        assert!(huge.check().unwrap_err().to_string().contains("4096"));
        assert!(OutputSettings { fps: 0, ..Default::default() }.check().is_err());
        let args = OutputSettings::default()
            .ffmpeg_args(&OutputTarget::parse("rtmp://127.0.0.1/live/k").unwrap(), "tcp://127.0.0.1:1");
        let joined = args.join(" ");
        assert!(joined.contains("-s 1280x720 -framerate 30"), "{joined}");
        assert!(joined.contains("-g 60") && joined.ends_with("-f flv rtmp://127.0.0.1/live/k"), "{joined}");
    }

    #[test]
    fn stamps_read_back() {
        let (w, h) = (320, 180);
        let mut frame = vec![90u8; w * h * 4];
        assert_eq!(stamp::read(&frame, w, h), None);
        for value in [0u32, 1, 4242, 65_535, 65_536 + 7] {
            stamp::write(&mut frame, w, h, value);
            assert_eq!(stamp::read(&frame, w, h), Some(value as u16));
        }
        // A flipped bit breaks the parity.
        let (x0, y0) = (w - stamp::CELLS * stamp::CELL - 4, h - stamp::CELL - 4);
        let p = ((y0 + 4) * w + x0 + 2 * stamp::CELL + 4) * 4;
        let flipped = 255 - frame[p];
        for y in y0..y0 + stamp::CELL {
            for x in x0 + 2 * stamp::CELL..x0 + 3 * stamp::CELL {
                let q = (y * w + x) * 4;
                frame[q..q + 3].fill(flipped);
            }
        }
        assert_eq!(stamp::read(&frame, w, h), None);
        // Too small a frame has no room for a code.
        stamp::write(&mut vec![0; 16 * 16 * 4], 16, 16, 3);
    }
}
