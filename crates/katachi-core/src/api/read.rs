//! `GET /v1/workspaces/{id}/file?path=…`: a file's bytes, binary-safe, one optional `Range`.
//!
//! Small whole-file reads are answered from memory with their SHA-256 (`x-katachi-sha256`, also the
//! `ETag`), which is the `expected` value of a later write. Everything else streams from the opened
//! descriptor in chunks of at most [`READ_CHUNK_BYTES`], so a large file is never held in memory.
//! Reads larger than [`ApiLimits::max_read_bytes`](super::ApiLimits) are refused with
//! `file.too_large`; a client reads such a file in ranges.

use std::io::{Read, Seek, SeekFrom};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult, ErrorCode};
use super::paths::QueryPath;
use super::{ApiState, WorkspaceId};

/// Largest chunk of a streamed read (the memory one streamed read holds at a time). Each chunk is
/// one blocking-pool read, and through the tunnel one HTTP/2 DATA frame: 256 KiB moves a large file
/// with 15–35 % less CPU per byte than 64 KiB (docs/PERFORMANCE.md, "Tunnel").
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Response header with the SHA-256 (hex) of a whole file.
pub(crate) const SHA256_HEADER: &str = "x-katachi-sha256";

/// Response header with the whole file's size (also on ranged reads).
pub(crate) const SIZE_HEADER: &str = "x-katachi-file-size";

/// What the blocking part of a read produced.
enum ReadBody {
    /// A whole small file, with its hash.
    Inline { bytes: Vec<u8>, sha256: String },
    /// An opened file positioned at the range start, to stream `len` bytes.
    Stream {
        file: std::fs::File,
        start: u64,
        len: u64,
        partial: bool,
    },
}

/// Reads a file (or one byte range of it).
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/file",
    tag = "files",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = String, Query, description = "File path relative to the workspace root"),
        ("Range" = Option<String>, Header, description = "One range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    responses(
        (status = 200, description = "The whole file (binary); `x-katachi-sha256` when it is small enough to hash inline",
         content(("application/octet-stream")),
         headers(
             ("x-katachi-sha256" = String, description = "SHA-256 (hex) of the file: the `expected` of a later write"),
             ("x-katachi-file-size" = u64, description = "Size of the whole file"),
         )),
        (status = 206, description = "The requested range (binary)", content(("application/octet-stream")),
         headers(
             ("Content-Range" = String, description = "`bytes a-b/size`"),
             ("x-katachi-file-size" = u64, description = "Size of the whole file"),
         )),
        (status = 400, description = "`path.*` lexical refusals, `path.not_a_file`, `range.invalid`", body = super::ErrorBody),
        (status = 403, description = "`path.outside_workspace`, `path.hard_link`, `path.special_file`, `path.protected` (the rule in the message)", body = super::ErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found`", body = super::ErrorBody),
        (status = 409, description = "`path.changed`, `workspace.unavailable`", body = super::ErrorBody),
        (status = 413, description = "`file.too_large`: read it in ranges", body = super::ErrorBody),
        (status = 416, description = "`range.not_satisfiable`", body = super::ErrorBody),
    )
)]
pub(crate) async fn read_file(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rel = path.required()?;
    let range = headers.get(header::RANGE).cloned();
    let (size, body) = state
        .blocking(move |s| {
            let ws = s.workspace(id)?;
            let resolved = ws.resolve(&rel)?;
            let mut file = ws.open_file(&resolved)?;
            let size = file
                .metadata()
                .map_err(|e| ApiError::io("examining the file", &e))?
                .len();
            let wanted = parse_range(range.as_ref(), size)?;
            let (start, end) = wanted.unwrap_or((0, size));
            let len = end - start;
            let cap = s.limits().max_read_bytes;
            if len > cap {
                return Err(ApiError::new(
                    ErrorCode::FileTooLarge,
                    format!("{:?} asks for {len} bytes; one read returns at most {cap}: read it in ranges", rel.as_str()),
                ));
            }
            if wanted.is_none() && size <= s.limits().hash_inline_max_bytes {
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                (&mut file)
                    .take(size)
                    .read_to_end(&mut bytes)
                    .map_err(|e| ApiError::io("reading the file", &e))?;
                let sha256 = hex::encode(Sha256::digest(&bytes));
                return Ok((size, ReadBody::Inline { bytes, sha256 }));
            }
            file.seek(SeekFrom::Start(start))
                .map_err(|e| ApiError::io("seeking in the file", &e))?;
            Ok((
                size,
                ReadBody::Stream {
                    file,
                    start,
                    len,
                    partial: wanted.is_some(),
                },
            ))
        })
        .await?;
    Ok(respond(size, body))
}

fn respond(size: u64, body: ReadBody) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // never sniffed into HTML or script by a browser; never cached on the way
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(SIZE_HEADER, HeaderValue::from(size));
    match body {
        ReadBody::Inline { bytes, sha256 } => {
            if let Ok(v) = HeaderValue::from_str(&sha256) {
                headers.insert(SHA256_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("\"sha256:{sha256}\"")) {
                headers.insert(header::ETAG, v);
            }
            (StatusCode::OK, headers, bytes).into_response()
        }
        ReadBody::Stream {
            file,
            start,
            len,
            partial,
        } => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let status = if partial {
                let last = (start + len).saturating_sub(1);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{last}/{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            (status, headers, stream_body(file, len)).into_response()
        }
    }
}

/// `len` bytes from the file's current position, in chunks of at most [`READ_CHUNK_BYTES`].
fn stream_body(file: std::fs::File, len: u64) -> Body {
    use tokio::io::AsyncReadExt;
    let reader = tokio::fs::File::from_std(file).take(len);
    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        READ_CHUNK_BYTES,
    ))
}

/// Parses one `Range: bytes=…` into a half-open `[start, end)` within a file of `size` bytes.
fn parse_range(value: Option<&HeaderValue>, size: u64) -> ApiResult<Option<(u64, u64)>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::new(
            ErrorCode::RangeInvalid,
            "the Range header must be one `bytes=a-b`, `bytes=a-` or `bytes=-n`",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let spec = text.strip_prefix("bytes=").ok_or_else(invalid)?;
    if spec.contains(',') {
        return Err(invalid());
    }
    let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return Err(invalid()),
        // suffix: the last n bytes
        (true, false) => {
            let n = number(last)?;
            if n == 0 || size == 0 {
                return Err(ApiError::range_not_satisfiable(size));
            }
            (size.saturating_sub(n), size)
        }
        (false, true) => (number(first)?, size),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                return Err(invalid());
            }
            (a, b.saturating_add(1).min(size))
        }
    };
    if start >= size {
        return Err(ApiError::range_not_satisfiable(size));
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn range(s: &str, size: u64) -> ApiResult<Option<(u64, u64)>> {
        parse_range(Some(&HeaderValue::from_str(s).unwrap()), size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-9", 100).unwrap(), Some((0, 10)));
        assert_eq!(range("bytes=90-", 100).unwrap(), Some((90, 100)));
        assert_eq!(range("bytes=-10", 100).unwrap(), Some((90, 100)));
        assert_eq!(range("bytes=-500", 100).unwrap(), Some((0, 100)));
        assert_eq!(range("bytes=95-200", 100).unwrap(), Some((95, 100)));
        assert_eq!(parse_range(None, 100).unwrap(), None);
    }

    #[test]
    fn bad_ranges_have_their_codes() {
        let code = |s, size| range(s, size).unwrap_err().code();
        assert_eq!(code("bytes=100-", 100), ErrorCode::RangeNotSatisfiable);
        assert_eq!(code("bytes=-0", 100), ErrorCode::RangeNotSatisfiable);
        assert_eq!(code("bytes=0-", 0), ErrorCode::RangeNotSatisfiable);
        assert_eq!(code("bytes=0-1,4-5", 100), ErrorCode::RangeInvalid);
        assert_eq!(code("items=0-1", 100), ErrorCode::RangeInvalid);
        assert_eq!(code("bytes=5-1", 100), ErrorCode::RangeInvalid);
        assert_eq!(code("bytes=x-", 100), ErrorCode::RangeInvalid);
    }

    #[tokio::test]
    async fn streamed_body_comes_in_bounded_chunks() {
        let mut tmp = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(READ_CHUNK_BYTES * 5 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        std::io::Write::write_all(&mut tmp, &data).unwrap();
        tmp.seek(SeekFrom::Start(3)).unwrap();
        let mut body = stream_body(tmp, (data.len() - 3) as u64);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() <= READ_CHUNK_BYTES, "chunk of {}", chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data[3..]);
    }
}
