//! Content-Encoding decoding for the capture path only: the wire bytes are
//! forwarded untouched, and capture decodes its own copy. Output is bounded by
//! a limit so a compression bomb costs at most the capture cap.

use std::io::Read;

/// The decoded body and whether decoding stopped at the limit.
pub struct Decoded {
    pub data: Vec<u8>,
    pub limit_hit: bool,
}

/// Decodes `data` according to a `Content-Encoding` header value (a list of
/// codings, applied in order, so undone in reverse).
pub fn decode(content_encoding: &str, data: &[u8], limit: usize) -> Result<Decoded, String> {
    let codings: Vec<String> = content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut current = data.to_vec();
    let mut limit_hit = false;
    for coding in codings.iter().rev() {
        let (out, hit) = decode_one(coding, &current, limit)?;
        current = out;
        limit_hit |= hit;
    }
    Ok(Decoded {
        data: current,
        limit_hit,
    })
}

/// True when capture must decode before parsing.
pub fn is_encoded(content_encoding: &str) -> bool {
    content_encoding
        .split(',')
        .any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
}

fn decode_one(coding: &str, data: &[u8], limit: usize) -> Result<(Vec<u8>, bool), String> {
    match coding {
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(data), limit)
            .map_err(|e| format!("gzip: {e}")),
        // HTTP "deflate" is zlib-wrapped, but some servers send raw deflate.
        "deflate" => read_limited(flate2::read::ZlibDecoder::new(data), limit).or_else(|_| {
            read_limited(flate2::read::DeflateDecoder::new(data), limit)
                .map_err(|e| format!("deflate: {e}"))
        }),
        "br" => read_limited(brotli_decompressor::Decompressor::new(data, 8192), limit)
            .map_err(|e| format!("br: {e}")),
        "zstd" => {
            let decoder =
                ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| format!("zstd: {e}"))?;
            read_limited(decoder, limit).map_err(|e| format!("zstd: {e}"))
        }
        other => Err(format!("unsupported content-encoding {other:?}")),
    }
}

fn read_limited(reader: impl Read, limit: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    let hit = out.len() > limit;
    out.truncate(limit);
    Ok((out, hit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] =
        b"{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

    #[test]
    fn gzip_and_deflate_and_zstd_and_br() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(TEXT).unwrap();
        assert_eq!(
            decode("gzip", &gz.finish().unwrap(), 1 << 20).unwrap().data,
            TEXT
        );

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(TEXT).unwrap();
        assert_eq!(
            decode("deflate", &z.finish().unwrap(), 1 << 20)
                .unwrap()
                .data,
            TEXT
        );

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(TEXT).unwrap();
        assert_eq!(
            decode("deflate", &raw.finish().unwrap(), 1 << 20)
                .unwrap()
                .data,
            TEXT
        );

        let zs =
            ruzstd::encoding::compress_to_vec(TEXT, ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decode("zstd", &zs, 1 << 20).unwrap().data, TEXT);

        let mut br = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        br.write_all(TEXT).unwrap();
        assert_eq!(decode("br", &br.into_inner(), 1 << 20).unwrap().data, TEXT);
    }

    #[test]
    fn limit_bounds_output() {
        let big = vec![b'a'; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&big).unwrap();
        let d = decode("gzip", &gz.finish().unwrap(), 1000).unwrap();
        assert_eq!(d.data.len(), 1000);
        assert!(d.limit_hit);
    }

    #[test]
    fn unknown_and_corrupt_are_errors() {
        assert!(decode("compress", b"x", 10).is_err());
        assert!(decode("gzip", b"not gzip", 10).is_err());
        assert_eq!(decode("identity", b"x", 10).unwrap().data, b"x");
        assert!(!is_encoded("identity"));
        assert!(is_encoded("gzip"));
    }
}
