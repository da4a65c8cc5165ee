//! Live jobs' sources: the `POST /api/v1/live` body checked field by field, and the factory that opens a source as a `LiveFeed` for the job manager.
//!
//! A body names one source: `{"interface": "eth0", "netns": ..., "filter": ...}` (an
//! interface, or several as a list, in a network namespace given by path or inode),
//! `{"url": "ws://host/capture?..."}` (a remote Packetflix-compatible stream, also spelled
//! `packetflix:ws://...`) or `{"hep": true}` (the HEP listener of `[hep]`), and may add
//! `duration` (`"90s"` or seconds) and `name`. Anything else is a 400 naming the field.
//!
//! The job manager knows no source kind: [`LiveSources`] turns a [`LiveSource`] into a
//! [`LiveFeed`] (every kind feeds the same bounded queue, `callflow_live::channel`, and
//! [`ChannelFeed`] is its analysis end as a feed). [`LiveSources::builtin`] opens the kinds
//! this build has; an embedder (or a test) may hand the server another factory with
//! [`crate::Server::with_live_sources`].

use crate::error::ApiError;
use callflow_config::Settings;
use callflow_correlate::{FrameSource, Pulled};
use callflow_decode::capture::CaptureError;
use callflow_decode::LinkType;
use callflow_jobs::{LiveCounts, LiveFeed};
use callflow_live::ChannelSource;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A network namespace, by the path of a handle to it (`/run/netns/NAME`,
/// `/proc/PID/ns/net`) or by its inode number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Netns {
    /// A path naming it.
    Path(PathBuf),
    /// Its inode number.
    Inode(u64),
}

/// Where a live job's packets come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveSource {
    /// Interfaces captured in a network namespace.
    Interface {
        /// The interfaces; empty: every interface of the namespace.
        interfaces: Vec<String>,
        /// The namespace; `None`: callflowd's own.
        netns: Option<Netns>,
        /// A BPF capture filter.
        filter: Option<String>,
        /// Capture in promiscuous mode.
        promiscuous: bool,
        /// Bytes kept of each packet.
        snaplen: u32,
    },
    /// A remote Packetflix-compatible capture stream.
    Remote {
        /// Its `ws://` or `wss://` URL (the `packetflix:` prefix removed).
        url: String,
    },
    /// The HEP listener of `[hep]`.
    Hep,
}

impl LiveSource {
    /// The kind's name, as in the body's field.
    pub fn kind(&self) -> &'static str {
        match self {
            LiveSource::Interface { .. } => "interface",
            LiveSource::Remote { .. } => "url",
            LiveSource::Hep => "hep",
        }
    }

    /// How a job on it is named when the body gives no `name`.
    fn label(&self) -> String {
        match self {
            LiveSource::Interface { interfaces, netns, .. } => {
                let ifaces = if interfaces.is_empty() { "any".to_string() } else { interfaces.join("/") };
                match netns {
                    Some(Netns::Path(p)) => format!("live {ifaces} in {}", p.display()),
                    Some(Netns::Inode(i)) => format!("live {ifaces} in netns {i}"),
                    None => format!("live {ifaces}"),
                }
            }
            LiveSource::Remote { url } => format!("live {url}"),
            LiveSource::Hep => "live HEP".to_string(),
        }
    }
}

/// A checked `POST /api/v1/live` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRequest {
    /// The source.
    pub source: LiveSource,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The job's name.
    pub name: String,
}

/// The fields each source kind may have, besides `duration` and `name`.
const INTERFACE_FIELDS: [&str; 5] = ["interface", "netns", "filter", "promiscuous", "snaplen"];
const COMMON_FIELDS: [&str; 2] = ["duration", "name"];
/// The longest job name, as for uploads.
const MAX_NAME_BYTES: usize = 255;
/// The longest filter or URL accepted.
const MAX_TEXT_BYTES: usize = 4096;

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

fn text(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_TEXT_BYTES => {
            Err(bad(format!("`{field}` is longer than {MAX_TEXT_BYTES} bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("`{field}` must be a string, not {other}"))),
    }
}

/// An interface name as the kernel allows it: 1 to 15 bytes, no `/`, no space, no NUL.
fn interface_name(name: &str) -> Result<String, ApiError> {
    let ok =
        !name.is_empty() && name.len() <= 15 && name != "." && name != ".." && !name.contains(['/', ' ', '\0', ':']);
    if !ok {
        return Err(bad(format!(
            "`interface`: `{name}` is not an interface name (1 to 15 bytes, no `/`, `:` or space)"
        )));
    }
    Ok(name.to_string())
}

/// Checks a `POST /api/v1/live` body; the error names the field at fault.
pub fn parse_live_request(body: &Value) -> Result<LiveRequest, ApiError> {
    let Value::Object(body) = body else {
        return Err(bad("the body must be a JSON object naming a source: `interface`, `url` or `hep`".into()));
    };
    let kinds: Vec<&str> = ["interface", "url", "hep"].into_iter().filter(|k| body.contains_key(*k)).collect();
    let kind = match kinds[..] {
        [kind] => kind,
        [] => return Err(bad("no source: give one of `interface`, `url` or `hep`".into())),
        _ => return Err(bad(format!("several sources ({}): give only one", kinds.join(", ")))),
    };
    let allowed: Vec<&str> = match kind {
        "interface" => INTERFACE_FIELDS.to_vec(),
        other => vec![other],
    };
    if let Some(field) = body.keys().find(|k| !allowed.contains(&k.as_str()) && !COMMON_FIELDS.contains(&k.as_str())) {
        let known = INTERFACE_FIELDS.iter().chain(&["url", "hep"]).any(|k| k == field);
        return Err(bad(if known {
            format!("`{field}` does not go with `{kind}`")
        } else {
            format!(
                "unknown field `{field}`: a live source is `interface` (with `netns`, `filter`, `promiscuous`, \
                 `snaplen`), `url` or `hep`, with `duration` and `name`"
            )
        }));
    }
    let source = match kind {
        "interface" => {
            let interfaces = match &body["interface"] {
                Value::String(s) if s.is_empty() || s == "any" => Vec::new(),
                // Packetflix separates interfaces by `/`.
                Value::String(s) => s.split('/').map(interface_name).collect::<Result<_, _>>()?,
                Value::Array(list) => list
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => interface_name(s),
                        other => Err(bad(format!("`interface`: {other} is not an interface name"))),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(bad(format!("`interface` must be a name or a list of names, not {other}"))),
            };
            let netns = match body.get("netns") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.starts_with('/') && !p.contains('\0') => Some(Netns::Path(p.into())),
                Some(Value::Number(n)) if n.as_u64().is_some_and(|i| i > 0) => n.as_u64().map(Netns::Inode),
                Some(other) => {
                    return Err(bad(format!(
                        "`netns` must be an absolute path (/run/netns/NAME, /proc/PID/ns/net) or an inode number, \
                         not {other}"
                    )))
                }
            };
            let promiscuous = match body.get("promiscuous") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(other) => return Err(bad(format!("`promiscuous` must be true or false, not {other}"))),
            };
            let snaplen = match body.get("snaplen") {
                None | Some(Value::Null) => 262_144,
                Some(Value::Number(n)) if n.as_u64().is_some_and(|s| (64..=262_144).contains(&s)) => {
                    n.as_u64().unwrap_or(262_144) as u32
                }
                Some(other) => {
                    return Err(bad(format!("`snaplen` must be a number of bytes from 64 to 262144, not {other}")))
                }
            };
            LiveSource::Interface { interfaces, netns, filter: text(body, "filter")?, promiscuous, snaplen }
        }
        "url" => {
            let url = text(body, "url")?.ok_or_else(|| bad("`url` must be a ws:// or wss:// URL".into()))?;
            let bare = url.strip_prefix("packetflix:").unwrap_or(&url);
            if !(bare.starts_with("ws://") || bare.starts_with("wss://")) || bare.len() <= "wss://".len() {
                return Err(bad(format!("`url` must be a ws:// or wss:// URL (or packetflix:ws://...), not `{url}`")));
            }
            LiveSource::Remote { url: bare.to_string() }
        }
        _ => match &body["hep"] {
            Value::Bool(true) => LiveSource::Hep,
            other => return Err(bad(format!("`hep` must be true, not {other}"))),
        },
    };
    let duration = match body.get("duration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|s| s > 0) => n.as_u64().map(Duration::from_secs),
        Some(Value::String(s)) => Some(
            callflow_config::duration::parse(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad(format!("`duration`: `{s}` is not a duration (90s, 10m, 2h, or seconds)")))?,
        ),
        Some(other) => return Err(bad(format!("`duration` must be like \"90s\" or a number of seconds, not {other}"))),
    };
    let name = match text(body, "name")? {
        Some(n) if n.len() > MAX_NAME_BYTES => {
            return Err(bad(format!("`name` is longer than {MAX_NAME_BYTES} bytes")))
        }
        Some(n) => n,
        None => source.label(),
    };
    Ok(LiveRequest { source, duration, name })
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// This build cannot open sources of this kind.
    #[error("{0}")]
    Unavailable(String),
    /// The configuration turns this kind off; the message names the key.
    #[error("{0}")]
    Disabled(String),
    /// The source was refused or failed to open (no such interface, namespace or host,
    /// not permitted...); the message says which.
    #[error("cannot open the live source: {0}")]
    Open(String),
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> ApiError {
        match e {
            SourceError::Unavailable(m) => ApiError::NotImplemented(m),
            SourceError::Disabled(m) => ApiError::Forbidden(m),
            e @ SourceError::Open(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Opens a [`LiveSource`] under the server's settings. Runs on the blocking pool.
type OpenSource = dyn Fn(&LiveSource, &Settings) -> Result<Box<dyn LiveFeed>, SourceError> + Send + Sync;

/// The factory of live sources the server uses; see the module documentation.
#[derive(Clone)]
pub struct LiveSources(Arc<OpenSource>);

impl std::fmt::Debug for LiveSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSources").finish_non_exhaustive()
    }
}

impl LiveSources {
    /// A factory calling `open`.
    pub fn new(
        open: impl Fn(&LiveSource, &Settings) -> Result<Box<dyn LiveFeed>, SourceError> + Send + Sync + 'static,
    ) -> LiveSources {
        LiveSources(Arc::new(open))
    }

    /// The kinds this build can open: an interface (`callflow_live::capture`, libpcap in
    /// the namespace), a remote stream (`callflow_live::remote`, connecting again with
    /// backoff when lost, each loss and return a notice) and HEP (`callflow_live::hep`, the
    /// listener of `[hep]`, its agents' ids put on the messages).
    pub fn builtin() -> LiveSources {
        LiveSources::new(|source, settings| {
            let open = |e: callflow_live::LiveError| SourceError::Open(e.to_string());
            let (tx, rx) = callflow_live::channel(settings.live.queue_frames, TICK);
            match source {
                // Capturing interfaces is what `[capture]` allows (with the privileges it
                // checks at start), for live jobs as for the capture service.
                LiveSource::Interface { .. } if !settings.capture.enabled => Err(SourceError::Disabled(
                    "capturing from interfaces is off: set capture.enabled = true ([capture]; callflowd then needs \
                     CAP_SYS_ADMIN and CAP_NET_RAW)"
                        .into(),
                )),
                LiveSource::Interface { interfaces, netns, filter, promiscuous, snaplen } => {
                    let spec = callflow_live::capture::CaptureSpec {
                        netns: netns.as_ref().map(|n| match n {
                            Netns::Path(p) => callflow_live::capture::NetnsTarget::Path(p.clone()),
                            Netns::Inode(i) => callflow_live::capture::NetnsTarget::Inode(*i),
                        }),
                        interfaces: interfaces.clone(),
                        filter: filter.clone(),
                        promiscuous: *promiscuous,
                        snaplen: *snaplen,
                    };
                    let handle = callflow_live::capture::start(&spec, tx).map_err(open)?;
                    Ok(Box::new(ChannelFeed::new(rx).holding(handle)))
                }
                LiveSource::Hep => {
                    let options = callflow_live::hep::HepOptions::from_settings(&settings.hep).map_err(open)?;
                    let listener = callflow_live::hep::start(&options, tx).map_err(open)?;
                    let annotations = listener.annotations();
                    let feed = ChannelFeed::new(rx).annotating(move |s| annotations.annotate(s)).holding(listener);
                    Ok(Box::new(feed))
                }
                LiveSource::Remote { url } => {
                    use callflow_live::remote::{self, Backoff, RemoteSpec};
                    let mut spec = RemoteSpec::parse(url).map_err(|e| SourceError::Open(e.to_string()))?;
                    // A live job outlives a lost stream: it connects again, saying so.
                    let (notices, notices_rx) = std::sync::mpsc::channel();
                    spec.reconnect = Some(Backoff::default());
                    spec.on_event = Some(Arc::new(move |event| {
                        let _ = notices.send(remote_notice(event));
                    }));
                    let handle = remote::start(&spec, tx).map_err(|e| SourceError::Open(e.to_string()))?;
                    Ok(Box::new(ChannelFeed::new(rx).with_notices(notices_rx).holding(handle)))
                }
            }
        })
    }

    /// Opens `source`.
    pub fn open(&self, source: &LiveSource, settings: &Settings) -> Result<Box<dyn LiveFeed>, SourceError> {
        (self.0)(source, settings)
    }
}

/// A remote stream's reconnection as a live job's notice.
fn remote_notice(event: &callflow_live::remote::RemoteEvent) -> String {
    use callflow_live::remote::RemoteEvent;
    match event {
        RemoteEvent::Lost { reason, retry_in } => {
            format!("the remote stream was lost ({reason}); connecting again in {:.1} s", retry_in.as_secs_f64())
        }
        RemoteEvent::Reconnected { attempt } => format!("the remote stream is back (attempt {attempt})"),
        other => format!("remote stream: {other:?}"),
    }
}

/// How long a live source's queue waits for a frame before the analysis is told that time
/// moved on (so that calls that are over are reported without waiting for traffic).
pub const TICK: Duration = Duration::from_millis(200);

/// What [`ChannelFeed::annotating`] keeps.
type Annotate = dyn Fn(&mut callflow_model::Session) + Send + Sync;

/// The analysis end of a live source's queue (`callflow_live::channel`) as a [`LiveFeed`],
/// holding whatever keeps the source running (a capture handle, a listener) until the job
/// ends, and the notices its receiving side sends.
pub struct ChannelFeed {
    source: ChannelSource,
    notices: Option<std::sync::mpsc::Receiver<String>>,
    annotate: Option<Arc<Annotate>>,
    _running: Option<Box<dyn Send>>,
}

impl ChannelFeed {
    /// A feed reading `source`.
    pub fn new(source: ChannelSource) -> ChannelFeed {
        ChannelFeed { source, notices: None, annotate: None, _running: None }
    }

    /// Changes each session with `annotate` before it is stored (see `LiveFeed::annotator`).
    pub fn annotating(
        mut self,
        annotate: impl Fn(&mut callflow_model::Session) + Send + Sync + 'static,
    ) -> ChannelFeed {
        self.annotate = Some(Arc::new(annotate));
        self
    }

    /// Keeps `running` (dropped, and so stopped, with the feed).
    pub fn holding(mut self, running: impl Send + 'static) -> ChannelFeed {
        self._running = Some(Box::new(running));
        self
    }

    /// Passes on the notices sent to `notices` (a reconnecting stream's, say).
    pub fn with_notices(mut self, notices: std::sync::mpsc::Receiver<String>) -> ChannelFeed {
        self.notices = Some(notices);
        self
    }
}

impl FrameSource for ChannelFeed {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        self.source.next_frame()
    }

    fn bytes_consumed(&self) -> u64 {
        self.source.bytes_consumed()
    }

    fn link_types(&self) -> &[LinkType] {
        self.source.link_types()
    }
}

impl LiveFeed for ChannelFeed {
    fn counts(&self) -> LiveCounts {
        let (received, bytes, dropped, source_dropped) = self.source.counters().snapshot();
        LiveCounts { received, bytes, dropped, source_dropped }
    }

    fn notices(&mut self) -> Vec<String> {
        self.notices.as_ref().map_or_else(Vec::new, |rx| rx.try_iter().take(64).collect())
    }

    fn annotator(&self) -> Option<callflow_jobs::SessionAnnotator> {
        let annotate = self.annotate.clone()?;
        Some(Box::new(move |s| annotate(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value, expected: Result<&str, &str>) {
        let got = parse_live_request(&body).map(|r| format!("{:?} {:?} {}", r.source, r.duration, r.name));
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{body}"),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{body}: {e}"),
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn bodies_accepted() {
        check(
            json!({"interface": "eth0/eth1", "netns": 4026532000u64, "filter": "udp", "duration": "90s"}),
            Ok("Interface { interfaces: [\"eth0\", \"eth1\"], netns: Some(Inode(4026532000)), filter: Some(\"udp\"), \
                promiscuous: true, snaplen: 262144 } Some(90s) live eth0/eth1 in netns 4026532000"),
        );
        check(
            json!({"interface": ["veth0"], "netns": "/run/netns/t", "promiscuous": false, "name": "sbc"}),
            Ok("Interface { interfaces: [\"veth0\"], netns: Some(Path(\"/run/netns/t\")), filter: None, \
                promiscuous: false, snaplen: 262144 } None sbc"),
        );
        check(json!({"interface": "any", "duration": 5}), Ok("Interface { interfaces: [], netns: None, filter: None, promiscuous: true, snaplen: 262144 } Some(5s) live any"));
        check(
            json!({"url": "packetflix:ws://h:5001/capture?netns=1"}),
            Ok("Remote { url: \"ws://h:5001/capture?netns=1\" } None live ws://h:5001/capture?netns=1"),
        );
        check(json!({"hep": true}), Ok("Hep None live HEP"));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        check(json!([]), Err("JSON object"));
        check(json!({}), Err("no source"));
        check(json!({"interface": "eth0", "hep": true}), Err("several sources (interface, hep)"));
        check(json!({"interfce": "eth0"}), Err("no source"));
        check(json!({"interface": "eth0", "fliter": "udp"}), Err("unknown field `fliter`"));
        check(json!({"url": "ws://h/x", "filter": "udp"}), Err("`filter` does not go with `url`"));
        check(json!({"interface": "eth0/../x"}), Err("`interface`: `..` is not"));
        check(json!({"interface": 3}), Err("`interface` must be"));
        check(json!({"interface": "eth0", "netns": "run/netns/x"}), Err("`netns` must be"));
        check(json!({"interface": "eth0", "snaplen": 10}), Err("`snaplen`"));
        check(json!({"url": "http://h/capture"}), Err("`url` must be a ws://"));
        check(json!({"hep": false}), Err("`hep` must be true"));
        check(json!({"hep": true, "duration": "soon"}), Err("`duration`: `soon`"));
        check(json!({"hep": true, "duration": -1}), Err("`duration` must be"));
        check(json!({"hep": true, "name": "x".repeat(300)}), Err("`name` is longer"));
    }
}
