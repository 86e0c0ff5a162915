//! Content-defined chunking (FastCDC 2020): cut points depend on the bytes, not on offsets, so
//! an edit moves only the chunks around it and an edited file shares most chunks with its
//! previous version.

use std::io::Read;

use fastcdc::v2020::{FastCDC, StreamCDC};

/// Smallest chunk FastCDC cuts (except a file's last).
pub const MIN_CHUNK: usize = 64 * 1024;
/// Average chunk size aimed at.
pub const AVG_CHUNK: usize = 256 * 1024;
/// Largest chunk: no chunk (nor manifest) is ever bigger.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// Chunks of a stream, read incrementally: memory stays at about one `MAX_CHUNK` buffer
/// whatever the stream's length.
pub fn chunks<R: Read>(source: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    StreamCDC::new(source, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

/// Cut points of an in-memory buffer, as (offset, length).
pub fn cuts(bytes: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    FastCDC::new(bytes, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| (c.offset, c.length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    }

    #[test]
    fn stream_and_buffer_cut_alike_within_bounds() {
        let data = random(5 * 1024 * 1024 + 17, 1);
        let streamed: Vec<Vec<u8>> = chunks(&data[..]).map(|c| c.unwrap()).collect();
        let cut: Vec<&[u8]> = cuts(&data).map(|(o, l)| &data[o..o + l]).collect();
        assert_eq!(streamed.len(), cut.len());
        assert_eq!(streamed.concat(), data);
        for (i, c) in streamed.iter().enumerate() {
            assert!(c.len() <= MAX_CHUNK);
            if i + 1 < streamed.len() {
                assert!(c.len() >= MIN_CHUNK);
            }
            assert_eq!(&c[..], cut[i]);
        }
    }

    #[test]
    fn an_insertion_moves_few_chunks() {
        let data = random(4 * 1024 * 1024, 2);
        let mut edited = data.clone();
        edited.splice(
            1_000_000..1_000_000,
            b"an insertion in the middle".iter().copied(),
        );
        let ids = |d: &[u8]| -> std::collections::HashSet<blake3::Hash> {
            cuts(d).map(|(o, l)| blake3::hash(&d[o..o + l])).collect()
        };
        let (a, b) = (ids(&data), ids(&edited));
        let shared = a.intersection(&b).count();
        assert!(
            shared + 2 >= a.len(),
            "only {shared} of {} chunks shared",
            a.len()
        );
    }
}
