//! One container's log writer: Docker's log stream in, CRI records out.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::format::{self, MAX_RECORD, Stream};
use super::{Reopen, Target};
use crate::docker::DockerClient;
use crate::docker::time::rfc3339_to_ns;

/// How long written records may sit in the buffer before they reach the file.
const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// How much of the file's end is read to find where to resume.
const TAIL_BYTES: u64 = 4 * MAX_RECORD as u64;

/// Opens (creating) a log file for appending, with its directory. A
/// symlink there (cri-dockerd's link to Docker's own log) is replaced:
/// we must never append to the file it points at.
pub fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

pub fn position_file(dir: &Path, container_id: &str) -> PathBuf {
    dir.join(format!("{container_id}.pos"))
}

/// Where the last written record stands: its time (ns) and how many records
/// at the end of the output carry that time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    ns: i64,
    records: usize,
}

impl Position {
    /// Records written at `ns`. The position never goes back: Docker stamps
    /// stdout and stderr in separate readers, so a record of one stream may
    /// arrive after a newer one of the other, and a resume from an older
    /// position would write the newer records again.
    fn advance(&mut self, ns: i64, records: usize) {
        if ns == self.ns {
            self.records += records;
        } else if ns > self.ns {
            *self = Position { ns, records };
        }
    }
}

fn read_tail(path: &Path) -> Option<Position> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    // The first line may be cut: drop it unless the tail is the whole file.
    let text = if len > TAIL_BYTES {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    } else {
        &text
    };
    format::last_position(text).map(|(ns, records)| Position { ns, records })
}

fn read_position(file: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(file).ok()?;
    let (ns, records) = text.trim().split_once(' ')?;
    Some(Position {
        ns: ns.parse().ok()?,
        records: records.parse().ok()?,
    })
}

fn save_position(file: &Path, p: Position) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomically(file, format!("{} {}\n", p.ns, p.records).as_bytes())
    };
    if let Err(e) = write() {
        warn!(path = %file.display(), error = %e, "cannot save log position");
    }
}

/// Records where a writer with nothing written yet starts (ns).
pub fn save_start(dir: &Path, container_id: &str, ns: i64) {
    save_position(
        &position_file(dir, container_id),
        Position { ns, records: 0 },
    );
}

/// The writer's state across Docker streams and reopens.
struct Output {
    file: BufWriter<File>,
    path: PathBuf,
    position: Position,
    /// While Docker replays from a second we had reached: the point up to
    /// which its messages were already written. Cleared at the first newer
    /// message. Outside a replay nothing is skipped, since stdout and stderr
    /// are stamped by separate readers and may arrive slightly out of order.
    replay: Option<Position>,
    scratch: Vec<u8>,
    dirty: bool,
}

impl Output {
    /// Writes one Docker message unless it was written before a restart.
    fn message(&mut self, stream: Stream, frame: &[u8]) {
        let Some((ts, content)) = format::split_docker_message(frame) else {
            return;
        };
        let ns = rfc3339_to_ns(ts);
        let records = format::record_count(content, MAX_RECORD);
        if let Some(mut upto) = self.replay {
            if ns < upto.ns {
                return;
            }
            if ns == upto.ns && upto.records > 0 {
                upto.records = upto.records.saturating_sub(records);
                self.replay = Some(upto);
                return;
            }
            self.replay = None;
        }
        self.scratch.clear();
        format::encode(ts, stream, content, MAX_RECORD, &mut self.scratch);
        if let Err(e) = self.file.write_all(&self.scratch) {
            warn!(path = %self.path.display(), error = %e, "cannot write container log");
        }
        self.position.advance(ns, records);
        self.dirty = true;
    }

    fn flush(&mut self) {
        if let Err(e) = self.file.flush() {
            warn!(path = %self.path.display(), error = %e, "cannot flush container log");
        }
        self.dirty = false;
    }

    fn reopen(&mut self, positions: &Path, id: &str) -> std::io::Result<()> {
        self.flush();
        save_position(&position_file(positions, id), self.position);
        self.file = BufWriter::with_capacity(64 * 1024, open(&self.path)?);
        Ok(())
    }
}

/// Follows the container's output until it ends (the container exited and
/// its output is drained); survives Docker restarts by resuming.
pub async fn run(
    docker: Arc<DockerClient>,
    target: Target,
    file: File,
    mut reopens: mpsc::Receiver<Reopen>,
    positions: PathBuf,
) {
    let id = target.container_id.clone();
    let saved = read_position(&position_file(&positions, &id));
    let position = read_tail(&target.path).or(saved).unwrap_or(Position {
        ns: target.start_at,
        records: 0,
    });
    let mut out = Output {
        file: BufWriter::with_capacity(64 * 1024, file),
        path: target.path.clone(),
        position,
        replay: None,
        scratch: Vec::with_capacity(MAX_RECORD + 128),
        dirty: false,
    };
    // After the container exits, one more pass without `follow` picks up
    // records Docker wrote as the followed stream was closing.
    let mut final_pass = false;
    loop {
        let Ok(client) = docker.get().await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut options = LogsOptionsBuilder::default()
            .follow(!final_pass)
            .stdout(true)
            .stderr(true)
            .timestamps(true);
        if out.position.ns > 0 {
            let secs = out.position.ns / 1_000_000_000;
            options = options.since(i32::try_from(secs).unwrap_or(i32::MAX));
        }
        out.replay = (out.position.ns > 0).then_some(out.position);
        let mut stream = client.logs(&id, Some(options.build()));
        let mut tty_line: Vec<u8> = Vec::new();
        let mut flush_at = Instant::now();
        let ended = loop {
            tokio::select! {
                biased;
                Some(ack) = reopens.recv() => {
                    let _ = ack.send(out.reopen(&positions, &id));
                }
                item = stream.next() => match item {
                    None => break true,
                    Some(Err(e)) => {
                        debug!(container = %id, error = %e, "log stream broke");
                        break false;
                    }
                    Some(Ok(item)) => {
                        if !out.dirty {
                            flush_at = Instant::now() + FLUSH_AFTER;
                        }
                        match item {
                            LogOutput::StdOut { message } => out.message(Stream::Stdout, &message),
                            LogOutput::StdErr { message } => out.message(Stream::Stderr, &message),
                            LogOutput::Console { message } => {
                                // TTY: one raw stream; cut it into messages at newlines.
                                tty_line.extend_from_slice(&message);
                                while let Some(end) = tty_line.iter().position(|b| *b == b'\n') {
                                    let line: Vec<u8> = tty_line.drain(..=end).collect();
                                    out.message(Stream::Stdout, &line);
                                }
                            }
                            LogOutput::StdIn { .. } => {}
                        }
                    }
                },
                _ = tokio::time::sleep_until(flush_at), if out.dirty => out.flush(),
            }
        };
        if !tty_line.is_empty() {
            out.message(Stream::Stdout, &tty_line);
        }
        out.flush();
        if final_pass && ended {
            return;
        }
        if ended && !still_running(&docker, &id).await {
            final_pass = true;
            continue;
        }
        // dockerd went away (or the stream broke): resume after a pause.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn still_running(docker: &DockerClient, id: &str) -> bool {
    match docker.inspect_container(id, "container").await {
        Ok(Some(c)) => c.state.and_then(|s| s.running) == Some(true),
        Ok(None) => false,
        // dockerd unreachable: keep trying.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_output_skips_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut out = Output {
            file: BufWriter::new(open(&path).unwrap()),
            path: path.clone(),
            position: Position::default(),
            replay: None,
            scratch: vec![],
            dirty: false,
        };
        out.message(Stream::Stdout, b"2026-01-01T00:00:01.000000000Z one\n");
        out.message(Stream::Stderr, b"2026-01-01T00:00:02.000000000Z two\n");
        out.message(Stream::Stdout, b"2026-01-01T00:00:02.000000000Z three\n");
        out.flush();
        let pos = read_tail(&path).unwrap();
        assert_eq!(pos.records, 2);

        // A restart replays from the same second; only new messages land.
        let mut again = Output {
            file: BufWriter::new(open(&path).unwrap()),
            path: path.clone(),
            position: pos,
            replay: Some(pos),
            scratch: vec![],
            dirty: false,
        };
        for m in [
            &b"2026-01-01T00:00:01.000000000Z one\n"[..],
            b"2026-01-01T00:00:02.000000000Z two\n",
            b"2026-01-01T00:00:02.000000000Z three\n",
            b"2026-01-01T00:00:03.000000000Z four\n",
        ] {
            again.message(Stream::Stdout, m);
        }
        again.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let contents: Vec<&str> = text
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap())
            .collect();
        assert_eq!(contents, ["one", "two", "three", "four"]);
        assert!(text.contains(" stderr F two\n"));
    }

    #[test]
    fn out_of_order_streams_are_all_written_outside_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut out = Output {
            file: BufWriter::new(open(&path).unwrap()),
            path: path.clone(),
            position: Position::default(),
            replay: None,
            scratch: vec![],
            dirty: false,
        };
        // stderr's reader stamped its line a little before stdout's.
        out.message(Stream::Stdout, b"2026-01-01T00:00:02.000000000Z out\n");
        out.message(Stream::Stderr, b"2026-01-01T00:00:01.900000000Z err\n");
        out.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(" stderr F err\n"), "{text}");
    }

    #[test]
    fn positions_survive_in_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = position_file(dir.path(), "abc");
        save_position(&f, Position { ns: 42, records: 3 });
        assert_eq!(read_position(&f), Some(Position { ns: 42, records: 3 }));
    }

    #[test]
    fn the_position_never_goes_back() {
        let mut p = Position::default();
        p.advance(200, 1);
        // A stderr record stamped before the stdout one already written.
        p.advance(150, 1);
        assert_eq!(
            p,
            Position {
                ns: 200,
                records: 1
            }
        );
        p.advance(200, 2);
        assert_eq!(
            p,
            Position {
                ns: 200,
                records: 3
            }
        );
        p.advance(300, 1);
        assert_eq!(
            p,
            Position {
                ns: 300,
                records: 1
            }
        );
    }
}
