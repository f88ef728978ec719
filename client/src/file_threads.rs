//! File reads and writes on threads of their own, so a file's encryption or decryption runs
//! beside its disk traffic instead of between it.
//!
//! Copying a buffer from or into the kernel's page cache costs about half as much as the
//! cipher on it, and the SHA-256 of the plaintext about as much again (a profile of
//! `escape-load files`, the benchmark's file workload, shows the split). Done in line, they add to
//! every chunk; on a [`ReadAhead`] or [`WriteBehind`] thread they run while the next chunk is
//! encrypted, so a stream is bounded by its slowest stage rather than by their sum. The reading
//! side hashes what it reads, so encryption's digest of its plaintext needs no thread of its own.
//!
//! When decrypting, the plaintext to write and hash comes out of the cipher on the caller's
//! thread, so [`pipe`] takes it from there: the caller reads (decrypts) whole chunks and passes
//! each to a writing thread, which passes it on to a digest thread, which hands it back to be
//! filled again. No byte is copied between the stages.
//!
//! Invariants: bytes pass in the order they were read or written; an error on a thread
//! surfaces, as that same error, on the next call or at `finish`, never as an early end of the
//! file or a write reported done; dropping either side stops and joins its thread.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use ring::digest::{Context, Digest, SHA256};

/// How many bytes pass between the threads at once.
pub const BUFFER: usize = 1024 * 1024;
/// Buffers in flight: enough that neither side waits on a short stall of the other, few enough
/// that memory stays at a few MiB whatever the file's size.
const IN_FLIGHT: usize = 4;

/// What the reading thread hands over: a buffer and how many of its bytes were read, or the
/// error that ended the file.
type Filled = io::Result<(Vec<u8>, usize)>;

fn stopped() -> io::Error {
    io::Error::other("the file's reading or writing thread stopped")
}

/// Waits for `worker` and turns a panic into an error.
fn join<T>(worker: Option<JoinHandle<io::Result<T>>>) -> io::Result<T> {
    match worker.map(JoinHandle::join) {
        Some(Ok(result)) => result,
        Some(Err(_)) | None => Err(stopped()),
    }
}

/// Chunks queued between two stages of a [`pipe`].
const PIPE_IN_FLIGHT: usize = 8;

/// Why a [`pipe`] stopped.
#[derive(Debug)]
pub enum PipeError {
    Read(io::Error),
    /// Writing failed, or one of the pipe's threads did.
    Write(io::Error),
}

/// Copies `reader` to `writer` in chunks of [`BUFFER`] bytes, calling `progress` with the bytes
/// read so far after each, and returns how many bytes it copied and their SHA-256. Reading stays
/// on the caller's thread; writing and the digest run on threads of their own, so the three
/// overlap instead of adding up, and a few buffers serve the whole stream.
///
/// A failed write stops the copy and is the error returned, even if reading failed too.
pub fn pipe(
    reader: &mut impl Read,
    writer: &mut (impl Write + Send),
    mut progress: impl FnMut(u64),
) -> Result<(u64, Digest), PipeError> {
    std::thread::scope(|scope| {
        let (to_write, written) = sync_channel::<Vec<u8>>(PIPE_IN_FLIGHT);
        let (to_hash, hashed) = sync_channel::<Vec<u8>>(PIPE_IN_FLIGHT);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(2 * PIPE_IN_FLIGHT + 2);
        let writing = scope.spawn(move || -> io::Result<()> {
            for chunk in written {
                writer.write_all(&chunk)?;
                // Fails only if the digest thread panicked, which its join reports.
                let _ = to_hash.send(chunk);
            }
            writer.flush()
        });
        let hasher = scope.spawn(move || {
            let mut digest = Context::new(&SHA256);
            for chunk in hashed {
                digest.update(&chunk);
                let _ = recycle.try_send(chunk);
            }
            digest.finish()
        });
        let copied = (|| {
            let mut done = 0u64;
            loop {
                let mut chunk = recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BUFFER));
                chunk.clear();
                (&mut *reader).take(BUFFER as u64).read_to_end(&mut chunk)?;
                if chunk.is_empty() {
                    return Ok(done);
                }
                done += chunk.len() as u64;
                if to_write.send(chunk).is_err() {
                    // The writing thread stopped on an error: its join below reports it.
                    return Ok(done);
                }
                progress(done);
            }
        })();
        // The channel closes here: the writing thread writes what is queued and ends, and with
        // it the digest thread.
        drop(to_write);
        writing
            .join()
            .map_err(|_| PipeError::Write(stopped()))?
            .map_err(PipeError::Write)?;
        let digest = hasher.join().map_err(|_| PipeError::Write(stopped()))?;
        Ok((copied.map_err(PipeError::Read)?, digest))
    })
}

/// Reads a file ahead of its consumer, and hashes it with SHA-256, on a second thread (see the
/// module's documentation).
pub struct ReadAhead {
    current: Vec<u8>,
    start: usize,
    end: usize,
    /// `None` once the file has ended or failed; `failed` tells which.
    full: Option<Receiver<Filled>>,
    failed: bool,
    empty: SyncSender<Vec<u8>>,
    worker: Option<JoinHandle<io::Result<Option<Digest>>>>,
}

impl ReadAhead {
    /// Starts reading `file`.
    pub fn new(mut file: File) -> io::Result<Self> {
        let mut digest = Context::new(&SHA256);
        let (send_full, full) = sync_channel::<Filled>(IN_FLIGHT);
        let (empty, recycled) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let worker = std::thread::Builder::new()
            .name("escape-read-ahead".into())
            .spawn(move || {
                loop {
                    let mut buffer = match recycled.try_recv() {
                        Ok(buffer) => buffer,
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0; BUFFER],
                    };
                    let filled = match fill(&mut file, &mut buffer) {
                        Ok(filled) => filled,
                        Err(e) => {
                            let message = io::Error::new(e.kind(), e.to_string());
                            let _ = send_full.send(Err(e));
                            return Err(message);
                        }
                    };
                    if filled == 0 {
                        return Ok(Some(digest.finish()));
                    }
                    digest.update(&buffer[..filled]);
                    if send_full.send(Ok((buffer, filled))).is_err() {
                        // The reader was dropped before the end: nothing more is wanted.
                        return Ok(None);
                    }
                }
            })?;
        Ok(Self {
            current: Vec::new(),
            start: 0,
            end: 0,
            full: Some(full),
            failed: false,
            empty,
            worker: Some(worker),
        })
    }

    /// Waits for the thread once the file has been read to its end, and returns the SHA-256 of
    /// every byte read.
    pub fn finish(mut self) -> io::Result<Digest> {
        if self.full.is_some() || self.failed {
            return Err(io::Error::other("the file was not read to its end"));
        }
        // The thread returns no digest only when the reader went away first, which `self`
        // being here rules out.
        join(self.worker.take())?.ok_or_else(stopped)
    }
}

/// Reads until `buffer` is full or the file ends; returns how many bytes it holds.
fn fill(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.failed {
            return Err(io::Error::other("reading the file failed earlier"));
        }
        if self.start == self.end
            && let Some(full) = &self.full
        {
            let spent = std::mem::take(&mut self.current);
            if !spent.is_empty() {
                let _ = self.empty.try_send(spent);
            }
            (self.start, self.end) = (0, 0);
            match full.recv() {
                Ok(Ok((buffer, filled))) => (self.current, self.end) = (buffer, filled),
                Ok(Err(e)) => {
                    (self.full, self.failed) = (None, true);
                    return Err(e);
                }
                // The thread ended: at the file's end, or by failing in a way `finish` reports.
                Err(_) => self.full = None,
            }
        }
        Ok(&self.current[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        self.start = (self.start + amount).min(self.end);
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing the channel first unblocks a thread waiting to hand over a buffer.
        self.full = None;
        let _ = join(self.worker.take());
    }
}

/// Writes to a file through a second thread (see the module's documentation).
pub struct WriteBehind {
    buffer: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<io::Result<()>>>,
}

impl WriteBehind {
    /// Starts the writing thread for `file`.
    pub fn new(mut file: File) -> io::Result<Self> {
        let (full, to_write) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (recycle, empty) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let worker = std::thread::Builder::new()
            .name("escape-write-behind".into())
            .spawn(move || {
                for mut buffer in to_write {
                    file.write_all(&buffer)?;
                    buffer.clear();
                    // The writer may be gone or have buffers enough: then this one is dropped.
                    let _ = recycle.try_send(buffer);
                }
                Ok(())
            })?;
        Ok(Self {
            buffer: Vec::with_capacity(BUFFER),
            full: Some(full),
            empty,
            worker: Some(worker),
        })
    }

    /// Hands the current buffer to the writing thread and takes an empty one.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER));
        let buffer = std::mem::replace(&mut self.buffer, next);
        match &self.full {
            Some(full) if full.send(buffer).is_ok() => Ok(()),
            _ => {
                // The thread stopped: its own error says why.
                self.full = None;
                match join(self.worker.take()) {
                    Err(e) => Err(e),
                    Ok(_) => Err(stopped()),
                }
            }
        }
    }

    /// Writes what is buffered and waits for every write to land.
    pub fn finish(mut self) -> io::Result<()> {
        self.hand_over()?;
        self.full = None;
        join(self.worker.take())
    }
}

impl Write for WriteBehind {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.worker.is_none() {
            return Err(stopped());
        }
        let taken = (BUFFER - self.buffer.len()).min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == BUFFER {
            self.hand_over()?;
        }
        Ok(taken)
    }

    /// Hands what is buffered to the writing thread. It does not wait for the bytes to land:
    /// that is what [`WriteBehind::finish`] is for.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.full = None;
        let _ = join(self.worker.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn every_byte_lands_in_order_and_is_digested_across_buffers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        let bytes = pattern(BUFFER * 3 + 12_345);
        let mut writer = WriteBehind::new(File::create(&path).expect("create")).expect("start");
        // Odd-sized writes, so buffers fill across write boundaries.
        for piece in bytes.chunks(70_001) {
            writer.write_all(piece).expect("write");
        }
        writer.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read back"), bytes);

        let mut reader = ReadAhead::new(File::open(&path).expect("open")).expect("start");
        let mut read = Vec::new();
        let mut piece = vec![0; 50_003];
        loop {
            let n = reader.read(&mut piece).expect("read");
            if n == 0 {
                break;
            }
            read.extend_from_slice(&piece[..n]);
        }
        assert_eq!(read, bytes);
        let digest = reader.finish().expect("finish");
        assert_eq!(
            digest.as_ref(),
            ring::digest::digest(&SHA256, &bytes).as_ref()
        );
    }

    #[test]
    fn a_failing_write_surfaces_as_that_error_not_as_success() {
        // A file opened read-only: every write on the thread fails.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").expect("write");
        let mut writer = WriteBehind::new(File::open(&path).expect("open")).expect("start");
        // More buffers than the channel holds: a hand-over must wait on the thread, which stops
        // at its first failed write, so the failure cannot be missed.
        let bytes = vec![7u8; BUFFER * (IN_FLIGHT + 3)];
        let error = writer
            .write_all(&bytes)
            .expect_err("a write that failed on the thread was reported as done");
        assert!(
            error.raw_os_error().is_some(),
            "the thread's own error is not the one reported: {error}"
        );
        assert!(
            writer.finish().is_err(),
            "finish reported a failed file as written"
        );
    }

    #[test]
    fn a_failing_read_surfaces_as_that_error_not_as_the_end_of_the_file() {
        // A file opened write-only: the first read on the thread fails.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("write-only");
        let mut reader = ReadAhead::new(File::create(&path).expect("create")).expect("start");
        let mut piece = [0u8; 16];
        let error = reader
            .read(&mut piece)
            .expect_err("a failed read looked like the end of the file");
        assert!(
            error.raw_os_error().is_some(),
            "not the thread's error: {error}"
        );
        assert!(
            reader.read(&mut piece).is_err(),
            "a second read hid the failure"
        );
        assert!(
            reader.finish().is_err(),
            "finish reported a failed read as whole"
        );
    }

    #[test]
    fn a_reader_dropped_half_way_stops_its_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in");
        std::fs::write(&path, pattern(BUFFER * (IN_FLIGHT + 4))).expect("start");
        let mut reader = ReadAhead::new(File::open(&path).expect("open")).expect("start");
        let mut piece = [0u8; 16];
        reader.read_exact(&mut piece).expect("read");
        // Dropping joins the thread, which is blocked handing over a buffer: this returns only
        // if dropping unblocks it.
        drop(reader);
    }

    /// Takes `left` bytes, then fails every write.
    struct FullDisk {
        left: usize,
        taken: Vec<u8>,
    }

    impl Write for FullDisk {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = bytes.len().min(self.left);
            self.taken.extend_from_slice(&bytes[..n]);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Fails every read.
    struct CutCable;

    impl Read for CutCable {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("cable cut"))
        }
    }

    #[test]
    fn a_pipe_writes_every_byte_in_order_and_digests_them() {
        // More chunks than the stages queue between them, and a partial last one.
        let bytes = pattern(BUFFER * (2 * PIPE_IN_FLIGHT + 3) + 5);
        let (mut out, mut reported) = (Vec::new(), Vec::new());
        let (size, digest) =
            pipe(&mut bytes.as_slice(), &mut out, |done| reported.push(done)).expect("piped");
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(
            digest.as_ref(),
            ring::digest::digest(&SHA256, &bytes).as_ref()
        );
        assert!(out == bytes, "the copy differs from its source");
        assert_eq!(reported.last(), Some(&size), "progress reaches the end");
    }

    #[test]
    fn a_pipe_reports_a_failed_write_and_a_failed_read() {
        let bytes = vec![7u8; BUFFER * 4];
        let mut full = FullDisk {
            left: BUFFER + 10,
            taken: Vec::new(),
        };
        match pipe(&mut bytes.as_slice(), &mut full, |_| {}) {
            Err(PipeError::Write(e)) => assert_eq!(e.to_string(), "disk full"),
            other => panic!("expected the write's error, got {other:?}"),
        }
        assert_eq!(full.taken.len(), BUFFER + 10);

        let mut failing = bytes.as_slice().chain(CutCable);
        match pipe(&mut failing, &mut Vec::new(), |_| {}) {
            Err(PipeError::Read(e)) => assert_eq!(e.to_string(), "cable cut"),
            other => panic!("expected the read's error, got {other:?}"),
        }
    }
}
