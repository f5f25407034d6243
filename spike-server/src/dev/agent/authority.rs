//! Repairs the HTTP/2 `:authority` of Workload API calls arriving on a Unix socket.
//!
//! gRPC C-core (so py-spiffe, grpcio and friends) sends the percent-encoded socket path as
//! `:authority` on `unix:` targets (grpc/grpc#33571), e.g. `tmp%2Fagent%2Fnexus.sock`. The
//! `http` crate rightly refuses `%` in a host, so h2 resets every such stream with
//! PROTOCOL_ERROR before tonic sees it (hyperium/h2#487, still open). An authority means
//! nothing on a Unix socket, so this adapter sits between the socket and h2, decodes each
//! client header block, sets `:authority` to `localhost`, and re-encodes it. Everything else
//! passes through byte for byte.
//!
//! The adapter keeps two independent HPACK contexts — the client's (mirrored by our decoder)
//! and h2's (fed by our encoder) — so no dynamic-table state has to match across the rewrite.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// h2's default SETTINGS_MAX_FRAME_SIZE; tonic does not raise it, so emitted frames fit.
const MAX_OUT_FRAME: usize = 16_384;
/// h2's default SETTINGS_HEADER_TABLE_SIZE: the most a client may grow its encoder table to.
const HEADER_TABLE_SIZE: usize = 4_096;
/// Bounds memory per connection: a Workload API request's headers are a few hundred bytes.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
const MAX_IN_FRAME: usize = 16 * 1024 * 1024;
const REPLACEMENT: &[u8] = b"localhost";

enum Mode {
    Preface,
    Frames,
    /// Not HTTP/2 as we know it: hand bytes to h2 unchanged and let it reject them.
    Passthrough,
}

struct Pending {
    stream_id: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// A Unix stream whose inbound HTTP/2 header blocks get a valid `:authority`.
pub(super) struct AuthorityFix {
    inner: UnixStream,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    mode: Mode,
    pending: Option<Pending>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    eof: bool,
}

impl AuthorityFix {
    pub(super) fn new(inner: UnixStream) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            inner,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            mode: Mode::Preface,
            pending: None,
            decoder,
            encoder: loona_hpack::Encoder::new(),
            eof: false,
        }
    }

    /// Moves as many complete units as possible from `raw` to `out`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    self.out.append(&mut self.raw);
                    return Ok(());
                }
                Mode::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                    } else if n == PREFACE.len() {
                        self.out.extend(self.raw.drain(..n));
                        self.mode = Mode::Frames;
                    } else {
                        return Ok(());
                    }
                }
                Mode::Frames => {
                    if self.raw.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let len = usize::from(self.raw[0]) << 16
                        | usize::from(self.raw[1]) << 8
                        | usize::from(self.raw[2]);
                    if len > MAX_IN_FRAME {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    if self.raw.len() < FRAME_HEADER_LEN + len {
                        return Ok(());
                    }
                    let frame: Vec<u8> = self.raw.drain(..FRAME_HEADER_LEN + len).collect();
                    self.frame(&frame)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = [frame[5], frame[6], frame[7], frame[8]];
        let payload = &frame[FRAME_HEADER_LEN..];
        match kind {
            HEADERS => {
                if self.pending.is_some() {
                    return Err(protocol("HEADERS while a header block is open"));
                }
                let mut body = payload;
                if flags & FLAG_PADDED != 0 {
                    let (&pad, rest) = body.split_first().ok_or_else(|| protocol("bad padding"))?;
                    let keep = rest.len().checked_sub(usize::from(pad));
                    body = keep.map(|k| &rest[..k]).ok_or_else(|| protocol("bad padding"))?;
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    let fields = body.get(..5).ok_or_else(|| protocol("short PRIORITY"))?;
                    priority = Some([fields[0], fields[1], fields[2], fields[3], fields[4]]);
                    body = &body[5..];
                }
                self.pending = Some(Pending {
                    stream_id,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    block: body.to_vec(),
                });
            }
            CONTINUATION => match &mut self.pending {
                Some(p) if p.stream_id == stream_id => p.block.extend_from_slice(payload),
                _ => return Err(protocol("CONTINUATION without HEADERS")),
            },
            _ if self.pending.is_some() => {
                return Err(protocol("frame inside a header block"));
            }
            _ => {
                self.out.extend_from_slice(frame);
                return Ok(());
            }
        }
        if self.pending.as_ref().is_some_and(|p| p.block.len() > MAX_HEADER_BLOCK) {
            return Err(protocol("header block too large"));
        }
        if flags & FLAG_END_HEADERS != 0
            && let Some(pending) = self.pending.take()
        {
            self.rewrite(pending)?;
        }
        Ok(())
    }

    fn rewrite(&mut self, pending: Pending) -> io::Result<()> {
        let mut headers = self
            .decoder
            .decode(&pending.block)
            .map_err(|e| protocol(&format!("malformed HPACK block: {e}")))?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" {
                *value = REPLACEMENT.to_vec();
            }
        }
        let block = self.encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));

        let prefix: &[u8] = match &pending.priority {
            Some(p) => p,
            None => &[],
        };
        let first_room = MAX_OUT_FRAME - prefix.len();
        let (first, mut rest) = block.split_at(block.len().min(first_room));
        let mut flags = if pending.end_stream { FLAG_END_STREAM } else { 0 };
        if pending.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        self.emit(HEADERS, flags, pending.stream_id, &[prefix, first].concat());
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
            self.emit(CONTINUATION, flags, pending.stream_id, chunk);
        }
        Ok(())
    }

    fn emit(&mut self, kind: u8, flags: u8, stream_id: [u8; 4], payload: &[u8]) {
        let len = payload.len();
        // `len` is at most MAX_OUT_FRAME, so it fits the 24-bit length field.
        self.out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        self.out.extend_from_slice(&stream_id);
        self.out.extend_from_slice(payload);
    }
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from Workload API client: {what}"))
}

impl AsyncRead for AuthorityFix {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                // A truncated frame at EOF: let h2 see what there was.
                this.out.append(&mut this.raw);
                continue;
            }
            this.raw.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl AsyncWrite for AuthorityFix {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for AuthorityFix {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0];
        out.push(stream);
        out.extend_from_slice(payload);
        out
    }

    /// Splits the adapter's output into (type, flags, payload) frames after the preface.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        assert!(bytes.starts_with(PREFACE));
        bytes = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            out.push((bytes[3], bytes[4], bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    fn request(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("workload.spiffe.io", "true"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    #[tokio::test]
    async fn percent_encoded_socket_authority_becomes_localhost_and_the_rest_is_untouched() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut fixed = AuthorityFix::new(server);
        let mut encoder = loona_hpack::Encoder::new();
        let first = request("tmp%2Fspike%2Fnexus.sock");
        let block = encoder.encode(first.iter().map(|(n, v)| (&n[..], &v[..])));
        // Second request on the same connection: the client's encoder now refers to its
        // dynamic table, which the adapter must mirror.
        let block2 = encoder.encode(first.iter().map(|(n, v)| (&n[..], &v[..])));
        let settings = frame(0x4, 0, 0, &[]);
        let data = frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0");

        let mut wire = PREFACE.to_vec();
        wire.extend(&settings);
        // HEADERS, padded, split over a CONTINUATION frame.
        let (a, b) = block.split_at(block.len() / 2);
        let mut padded = vec![3u8];
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        wire.extend(frame(HEADERS, FLAG_PADDED, 1, &padded));
        wire.extend(frame(CONTINUATION, FLAG_END_HEADERS, 1, b));
        wire.extend(&data);
        wire.extend(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &block2));
        client.write_all(&wire).await.unwrap();
        client.shutdown().await.unwrap();

        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        let got = frames(&out);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!((got[0].0, got[0].2.as_slice()), (0x4, &[][..]), "SETTINGS passes through");
        assert_eq!(&frame(got[2].0, got[2].1, 1, &got[2].2), &data, "DATA passes through");

        let mut decoder = loona_hpack::Decoder::new();
        let mut expected = first.clone();
        expected[3].1 = b"localhost".to_vec();
        for (i, stream_flags) in [(1, FLAG_END_HEADERS), (3, FLAG_END_HEADERS | FLAG_END_STREAM)] {
            let (kind, flags, payload) = &got[i];
            assert_eq!((*kind, *flags), (HEADERS, stream_flags));
            assert_eq!(decoder.decode(payload).unwrap(), expected);
        }
    }

    #[tokio::test]
    async fn non_http2_bytes_pass_through_for_h2_to_reject() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut fixed = AuthorityFix::new(server);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn frames_interleaved_into_a_header_block_are_refused() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut fixed = AuthorityFix::new(server);
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, 0, 1, &[0x82]));
        wire.extend(frame(0x0, 0, 1, b"data inside a header block"));
        client.write_all(&wire).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        let err = fixed.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
