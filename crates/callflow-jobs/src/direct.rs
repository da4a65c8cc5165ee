//! One capture analysed directly into a result file or standard output, without a job or a store: `callflow-cli analyze` (and `--input`/`--output`) and `callflowd --input`/`--output` share it.
//!
//! [`analyze_to_output`] opens the capture (a path, or `-` for standard input), runs the
//! analysis with the classifier it is given, and writes the `callflow/v1` document (or
//! NDJSON, a session per line as each completes, then a summary line). A result file is
//! written under a temporary name beside the target and renamed into place at the end, so
//! a failed run never leaves a half-written result under the name asked for; what is not
//! a regular file (`/dev/null`, a named pipe, a terminal) is written to directly.
//! [`read_tls_key_log`] reads the TLS key log a user gives (`--tls-keylog`).

use callflow_classify::Classifier;
use callflow_correlate::{analyze_with_classifier, AnalyzeControl, AnalyzerOptions, Unattended};
use callflow_decode::capture::{CaptureError, CaptureReader};
use callflow_decode::diameter::{Dictionary, DictionaryError};
use callflow_decode::tls::keylog::{KeyLog, KeyLogError, SharedKeyLog};
use callflow_model::{Document, Session};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the result is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResultFormat {
    /// One `callflow/v1` JSON document.
    #[default]
    Json,
    /// Newline-delimited JSON: one line per session as it completes, then a summary line.
    Ndjson,
}

/// What [`analyze_to_output`] analyses, and where the result goes.
#[derive(Clone, Debug)]
pub struct DirectAnalysis {
    /// The capture file; `-` reads standard input.
    pub input: PathBuf,
    /// The result file; `None` or `-`: standard output.
    pub output: Option<PathBuf>,
    /// The result's format.
    pub format: ResultFormat,
    /// Indent the JSON document.
    pub pretty: bool,
    /// Analysis threads (`AnalyzerOptions::threads`); at least 1.
    pub threads: usize,
    /// The Diameter dictionary (`AnalyzerOptions::diameter_dictionary`); `None`: the
    /// built-in one.
    pub diameter_dictionary: Option<Arc<Dictionary>>,
    /// The TLS key log SIP over TLS is decrypted with (`AnalyzerOptions::tls_keys`; the
    /// capture's own Decryption Secrets Blocks are added to it).
    pub tls_keys: SharedKeyLog,
}

/// The Diameter dictionary a configuration asks for (`[diameter] dictionary`): the
/// built-in one extended by that file, or `None` (the built-in one) when the key is empty.
/// A file that cannot be read or has a mistake is an error naming it and the line.
pub fn diameter_dictionary(
    settings: &callflow_config::DiameterSettings,
) -> Result<Option<Arc<Dictionary>>, DictionaryError> {
    if settings.dictionary.as_os_str().is_empty() {
        return Ok(None);
    }
    Dictionary::with_file(&settings.dictionary).map(|d| Some(Arc::new(d)))
}

/// Reads a TLS key log file a user gave (NSS format, `SSLKEYLOGFILE`). A file that cannot
/// be read, or holds no secret at all, is an error naming it (and its first bad line).
pub fn read_tls_key_log(path: &Path) -> Result<SharedKeyLog, KeyLogFileError> {
    let text =
        std::fs::read(path).map_err(|source| KeyLogFileError::Read { path: path.display().to_string(), source })?;
    let (log, _) = KeyLog::parse_given(&text)
        .map_err(|source| KeyLogFileError::Format { path: path.display().to_string(), source })?;
    Ok(SharedKeyLog::new(log))
}

/// The key log kept beside a job's capture (an upload's `keylog` part): `CAPTURE.keylog`.
pub fn job_key_log_path(capture: &Path) -> PathBuf {
    let mut name = capture.as_os_str().to_owned();
    name.push(".keylog");
    PathBuf::from(name)
}

/// Why a TLS key log file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLogFileError {
    /// The file cannot be read.
    #[error("cannot read the TLS key log {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file holds no TLS secret.
    #[error("bad TLS key log {path}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, with the first bad line.
        #[source]
        source: KeyLogError,
    },
}

/// Why a direct analysis failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectError {
    /// The capture cannot be opened or read.
    #[error("cannot read capture {label}")]
    Capture {
        /// The capture as given (`-` for standard input).
        label: String,
        /// Why, with the offset.
        #[source]
        source: CaptureError,
    },
    /// The classifier could not be made (nDPI failed to start...).
    #[error("cannot start the classifier: {0}")]
    Classifier(String),
    /// The result cannot be written (or moved into place).
    #[error("cannot write the result to {target}")]
    Output {
        /// The file, or `standard output`.
        target: String,
        /// Why (a closed pipe is `BrokenPipe`).
        #[source]
        source: io::Error,
    },
}

/// Analyses `request.input` with the classifier `classifier` makes and writes the result
/// as asked; returns the document (for its warnings). The capture is opened first (a
/// missing one leaves no result file behind and makes no classifier, whose making may
/// have something to say), then the output, then the classifier is made.
pub fn analyze_to_output<E: std::fmt::Display>(
    request: &DirectAnalysis,
    classifier: impl FnOnce() -> Result<Box<dyn Classifier>, E>,
) -> Result<Document, DirectError> {
    analyze_to_output_with(request, classifier, |_| Box::new(Unattended))
}

/// [`analyze_to_output`] with a hand on the analysis loop (a progress display): `control`
/// is made once the capture is open, from its size when known (a file, not standard
/// input or a pipe), and asked after every frame.
pub fn analyze_to_output_with<E: std::fmt::Display>(
    request: &DirectAnalysis,
    classifier: impl FnOnce() -> Result<Box<dyn Classifier>, E>,
    control: impl FnOnce(Option<u64>) -> Box<dyn AnalyzeControl>,
) -> Result<Document, DirectError> {
    let label = request.input.display().to_string();
    let capture = |source| DirectError::Capture { label: label.clone(), source };
    let mut reader = if label == "-" {
        CaptureReader::from_reader(Box::new(io::stdin()))
    } else {
        CaptureReader::open(&request.input)
    }
    .map_err(capture)?;
    let mut out = ResultWriter::create(request.output.as_deref())?;
    let classifier = classifier().map_err(|e| DirectError::Classifier(format!("{e:#}")))?;
    let mut control = control(callflow_correlate::FrameSource::total_bytes(&reader));
    let opts = AnalyzerOptions {
        threads: request.threads.max(1),
        diameter_dictionary: request.diameter_dictionary.clone(),
        tls_keys: request.tls_keys.clone(),
        ..AnalyzerOptions::default()
    };
    let doc = match request.format {
        ResultFormat::Json => {
            let doc =
                analyze_with_classifier(&mut reader, &label, opts, classifier, None, &mut *control).map_err(capture)?;
            out.write_document(&doc, request.pretty)?;
            doc
        }
        ResultFormat::Ndjson => {
            let mut write_error = None;
            let mut sink = |session| {
                if write_error.is_none() {
                    if let Err(e) = out.write_session_line(&session) {
                        write_error = Some(e);
                    }
                }
            };
            let doc = analyze_with_classifier(&mut reader, &label, opts, classifier, Some(&mut sink), &mut *control)
                .map_err(capture)?;
            if let Some(e) = write_error {
                return Err(e);
            }
            out.write_summary_line(&doc)?;
            doc
        }
    };
    out.finish()?;
    Ok(doc)
}

/// Where a result goes, as a `callflow/v1` document or as NDJSON lines (a `session` line
/// per session, a `summary` line at the end): standard output, what is not a regular file,
/// or a temporary file renamed into place by [`ResultWriter::finish`]. The one writer of
/// these lines, for file analyses ([`analyze_to_output`]) and live ones (`callflow-cli`).
pub struct ResultWriter {
    writer: BufWriter<Box<dyn Write>>,
    /// What the errors name.
    target: String,
    /// The temporary file and the target, for a regular file.
    file: Option<(PathBuf, PathBuf)>,
    /// Flush after every line, so a reader sees each as it is written (live input).
    flush_lines: bool,
}

impl ResultWriter {
    /// Standard output for `None` or `-`; `path` itself when it exists and is not a
    /// regular file; else a temporary file beside `path` (beside the file a symbolic link
    /// points to, so that the link stays a link), moved into place by
    /// [`ResultWriter::finish`].
    pub fn create(path: Option<&Path>) -> Result<ResultWriter, DirectError> {
        let p = match path {
            Some(p) if p != Path::new("-") => p,
            _ => return Ok(ResultWriter::new(Box::new(io::stdout().lock()), "standard output".into(), None)),
        };
        let target = p.display().to_string();
        let failed = |source| DirectError::Output { target: target.clone(), source };
        // Missing (the usual case) or unreachable: creating the temporary file says why.
        if std::fs::metadata(p).is_ok_and(|meta| !meta.is_file()) {
            let file = std::fs::OpenOptions::new().write(true).open(p).map_err(failed)?;
            return Ok(ResultWriter::new(Box::new(file), target, None));
        }
        // A link is followed to the file it names (a dangling link: to where it points).
        let dest = match std::fs::read_link(p) {
            Ok(dest) if dest.is_absolute() => dest,
            Ok(dest) => p.parent().map_or(dest.clone(), |dir| dir.join(&dest)),
            Err(_) => p.to_path_buf(),
        };
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let file = File::create(&tmp).map_err(failed)?;
        Ok(ResultWriter::new(Box::new(file), target, Some((tmp, dest))))
    }

    /// For an analysis that never ends on its own (live input): standard output for `None`
    /// or `-`, else `path` written in place, and every line flushed as it is written, so
    /// that whoever follows the output sees each session when it completes.
    pub fn streaming(path: Option<&Path>) -> Result<ResultWriter, DirectError> {
        let mut out = match path {
            Some(p) if p != Path::new("-") => {
                let target = p.display().to_string();
                let file = File::create(p).map_err(|source| DirectError::Output { target: target.clone(), source })?;
                ResultWriter::new(Box::new(file), target, None)
            }
            _ => ResultWriter::new(Box::new(io::stdout()), "standard output".into(), None),
        };
        out.flush_lines = true;
        Ok(out)
    }

    fn new(writer: Box<dyn Write>, target: String, file: Option<(PathBuf, PathBuf)>) -> ResultWriter {
        ResultWriter { writer: BufWriter::with_capacity(1 << 20, writer), target, file, flush_lines: false }
    }

    fn failed(&self, source: io::Error) -> DirectError {
        DirectError::Output { target: self.target.clone(), source }
    }

    /// Serializes `value` and a newline; a serializer's I/O error is kept as such (a
    /// closed pipe stays `BrokenPipe`).
    pub fn write_line(&mut self, value: &impl Serialize, pretty: bool) -> Result<(), DirectError> {
        let written = if pretty {
            serde_json::to_writer_pretty(&mut self.writer, value)
        } else {
            serde_json::to_writer(&mut self.writer, value)
        };
        written
            .map_err(io::Error::from)
            .and_then(|()| self.writer.write_all(b"\n"))
            .and_then(|()| if self.flush_lines { self.writer.flush() } else { Ok(()) })
            .map_err(|e| self.failed(e))
    }

    /// The whole `callflow/v1` document, on one line unless `pretty`.
    pub fn write_document(&mut self, doc: &Document, pretty: bool) -> Result<(), DirectError> {
        self.write_line(doc, pretty)
    }

    /// A session as an NDJSON `session` line.
    pub fn write_session_line(&mut self, session: &Session) -> Result<(), DirectError> {
        #[derive(Serialize)]
        struct Line<'a> {
            r#type: &'static str,
            #[serde(flatten)]
            session: &'a Session,
        }
        self.write_line(&Line { r#type: "session", session }, false)
    }

    /// The NDJSON `summary` line: everything of `doc` but its sessions.
    pub fn write_summary_line(&mut self, doc: &Document) -> Result<(), DirectError> {
        #[derive(Serialize)]
        struct Summary<'a> {
            r#type: &'static str,
            format: &'a str,
            source: &'a callflow_model::SourceInfo,
            stats: &'a callflow_model::Stats,
            flows: &'a [callflow_model::Flow],
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            subscribers: &'a [callflow_model::Subscriber],
            #[serde(skip_serializing_if = "Option::is_none")]
            kpis: Option<&'a callflow_model::Kpis>,
        }
        let line = Summary {
            r#type: "summary",
            format: &doc.format,
            source: &doc.source,
            stats: &doc.stats,
            flows: &doc.flows,
            subscribers: &doc.subscribers,
            kpis: doc.kpis.as_deref(),
        };
        self.write_line(&line, false)
    }

    /// Flushes, and moves a file into place.
    pub fn finish(mut self) -> Result<(), DirectError> {
        self.writer.flush().map_err(|e| self.failed(e))?;
        if let Some((tmp, dest)) = self.file.take() {
            if let Err(e) = std::fs::rename(&tmp, &dest) {
                let _ = std::fs::remove_file(&tmp);
                return Err(self.failed(e));
            }
        }
        Ok(())
    }
}

impl Drop for ResultWriter {
    fn drop(&mut self) {
        // Reached with a file still pending only when writing failed: remove the partial file.
        if let Some((tmp, _)) = self.file.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod dictionary_tests {
    use super::*;
    use callflow_config::DiameterSettings;

    #[test]
    fn the_configured_diameter_dictionary_is_loaded_or_its_mistake_named() {
        assert!(diameter_dictionary(&DiameterSettings::default()).unwrap().is_none(), "empty: the built-in one");
        let dir = std::env::temp_dir().join(format!("callflow-jobs-dict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[[application]]\nid = 4242\nname = \"Mine\"\n").unwrap();
        let dict = diameter_dictionary(&DiameterSettings { dictionary: good }).unwrap().unwrap();
        assert_eq!(dict.application(4242).map(|a| a.name.as_str()), Some("Mine"));
        assert_eq!(dict.application(16_777_238).map(|a| a.name.as_str()), Some("Gx"), "built-in entries stay");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "\n[[application]]\nname = \"Mine\"\n").unwrap();
        let err = diameter_dictionary(&DiameterSettings { dictionary: bad.clone() }).unwrap_err().to_string();
        assert_eq!(err, format!("{}:2: missing field `id`", bad.display()));
        std::fs::remove_dir_all(dir).ok();
    }
}
