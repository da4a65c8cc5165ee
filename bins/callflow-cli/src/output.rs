//! Writing results: to standard output, or to a file that appears only once complete.

use anyhow::{Context, Result};
use callflow_model::{Document, Session};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where results go. A file is written under a temporary name beside the target and
/// renamed at the end, so a crash or an error never leaves a half-written result under
/// the name the user asked for. What is not a file (`/dev/null`, a named pipe, a
/// terminal) is written to directly: renaming over it would replace it with a file.
pub struct Output {
    writer: BufWriter<Box<dyn Write>>,
    file: Option<(PathBuf, PathBuf)>,
}

impl Output {
    /// Standard output for `None` or `-`; `path` itself when it exists and is not a
    /// regular file; else a temporary file beside `path` (beside the file a symbolic link
    /// points to, so that the link stays a link).
    pub fn create(path: Option<&Path>) -> Result<Output> {
        let p = match path {
            None => return Ok(Output::stdout()),
            Some(p) if p == Path::new("-") => return Ok(Output::stdout()),
            Some(p) => p,
        };
        // Missing (the usual case) or unreachable: creating the temporary file says why.
        if std::fs::metadata(p).is_ok_and(|meta| !meta.is_file()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("cannot open {} for writing", p.display()))?;
            return Ok(Output { writer: BufWriter::with_capacity(1 << 20, Box::new(file)), file: None });
        }
        // A link is followed to the file it names (a dangling link: to where it points).
        let target = match std::fs::read_link(p) {
            Ok(dest) if dest.is_absolute() => dest,
            Ok(dest) => p.parent().map_or(dest.clone(), |dir| dir.join(&dest)),
            Err(_) => p.to_path_buf(),
        };
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Output { writer: BufWriter::with_capacity(1 << 20, Box::new(file)), file: Some((tmp, target)) })
    }

    fn stdout() -> Output {
        Output { writer: BufWriter::with_capacity(1 << 20, Box::new(io::stdout().lock())), file: None }
    }

    /// Writes the whole document.
    pub fn write_document(&mut self, doc: &Document, pretty: bool) -> Result<()> {
        if pretty {
            serde_json::to_writer_pretty(&mut self.writer, doc)?;
        } else {
            serde_json::to_writer(&mut self.writer, doc)?;
        }
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Writes one NDJSON session line.
    pub fn write_session_line(&mut self, session: &Session) -> Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            r#type: &'static str,
            #[serde(flatten)]
            session: &'a Session,
        }
        serde_json::to_writer(&mut self.writer, &Line { r#type: "session", session })?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Writes the NDJSON summary line that ends the stream.
    pub fn write_summary_line(&mut self, doc: &Document) -> Result<()> {
        #[derive(Serialize)]
        struct Summary<'a> {
            r#type: &'static str,
            format: &'a str,
            source: &'a callflow_model::SourceInfo,
            stats: &'a callflow_model::Stats,
            flows: &'a [callflow_model::Flow],
        }
        let line = Summary {
            r#type: "summary",
            format: &doc.format,
            source: &doc.source,
            stats: &doc.stats,
            flows: &doc.flows,
        };
        serde_json::to_writer(&mut self.writer, &line)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes, and moves a file into place.
    pub fn finish(mut self) -> Result<()> {
        self.writer.flush()?;
        if let Some((tmp, target)) = self.file.take() {
            std::fs::rename(&tmp, &target)
                .with_context(|| format!("cannot move {} to {}", tmp.display(), target.display()))?;
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Reached with a file still pending only when writing failed: remove the partial file.
        if let Some((tmp, _)) = self.file.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// True when the error chain ends in a closed pipe (the reader of our output went away).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}
