//! The proxy-wasm header-map format, both ways, as bytes: what the host hands over is read
//! with every length checked, so no input can trap the VM.
//!
//! Format (proxy-wasm ABI 0.2.1, proxy-wasm-cpp-host `exports.cc`): a little-endian u32 count
//! `n`, then `n` pairs of u32 (name length, value length), then each name and each value in
//! that order, every one followed by a NUL byte.

/// A header as the host sent it: name and value are bytes, and need not be UTF-8.
pub type RawHeader = (Vec<u8>, Vec<u8>);

/// Decodes a serialized map; `None` if it is malformed (truncated, or lengths that do not
/// add up). Never allocates more than `bytes.len()` in total.
pub fn decode_map(bytes: &[u8]) -> Option<Vec<RawHeader>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let (count, mut rest) = take_u32(bytes)?;
    // Each entry needs 8 bytes of lengths and 2 NULs: a count that cannot fit is malformed.
    let count = usize::try_from(count).ok()?;
    if count > rest.len() / 10 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for _ in 0..count {
        let (name_len, r) = take_u32(rest)?;
        let (value_len, r) = take_u32(r)?;
        sizes.push((
            usize::try_from(name_len).ok()?,
            usize::try_from(value_len).ok()?,
        ));
        rest = r;
    }
    let mut out = Vec::with_capacity(count);
    for (name_len, value_len) in sizes {
        let (name, r) = take_with_nul(rest, name_len)?;
        let (value, r) = take_with_nul(r, value_len)?;
        out.push((name.to_vec(), value.to_vec()));
        rest = r;
    }
    Some(out)
}

/// Encodes `pairs` for the host (local-reply and callout headers).
pub fn encode_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| 10 + n.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len32(pairs.len()).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&len32(n.len()).to_le_bytes());
        out.extend_from_slice(&len32(v.len()).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Our own strings are far below 4 GiB; saturate rather than wrap if one were not.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

fn take_with_nul(bytes: &[u8], len: usize) -> Option<(&[u8], &[u8])> {
    let (item, rest) = bytes.split_at_checked(len)?;
    let (nul, rest) = rest.split_first()?;
    (*nul == 0).then_some((item, rest))
}

/// The value of a header as text for the gateway. Names and values the gateway reads are
/// ASCII in every valid request (tokens, tenant names, paths, methods, request ids), so
/// bytes that are not UTF-8 become U+FFFD, which every one of those readers refuses: a bad
/// `Authorization` is a 401, a bad `Cray-Tenant-Name` a 403, an unused header is ignored.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The headers as the gateway reads them (see [`text`]).
pub fn texts(headers: &[RawHeader]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (text(n), text(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_of_our_own_maps() {
        let pairs = [(":status", "200"), ("content-type", "application/json")];
        let decoded = decode_map(&encode_map(&pairs)).unwrap();
        let expected: Vec<RawHeader> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_as_bytes() {
        // A map as Envoy serializes `user-agent: Mozilla/5.0 \xa1\xb1`.
        let mut map = vec![1, 0, 0, 0, 10, 0, 0, 0, 14, 0, 0, 0];
        map.extend_from_slice(b"user-agent\0Mozilla/5.0 \xa1\xb1\0");
        let decoded = decode_map(&map).unwrap();
        assert_eq!(decoded[0].1, b"Mozilla/5.0 \xa1\xb1");
        assert_eq!(text(&decoded[0].1), "Mozilla/5.0 \u{fffd}\u{fffd}");
    }

    #[test]
    fn malformed_maps_are_refused() {
        let good = encode_map(&[("a", "b")]);
        for cut in 1..good.len() {
            assert_eq!(decode_map(&good[..cut]), None, "cut at {cut}");
        }
        let mut no_nul = good.clone();
        *no_nul.last_mut().unwrap() = b'x';
        assert_eq!(decode_map(&no_nul), None);
        // A count of 2^32-1 with no room for it: refused before any allocation.
        assert_eq!(decode_map(&[0xff, 0xff, 0xff, 0xff, 0, 0]), None);
        assert_eq!(decode_map(&[]), Some(vec![]));
    }

    proptest! {
        /// Whatever the host hands over: no panic, and what decodes re-encodes to itself.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(pairs) = decode_map(&bytes) {
                for (n, v) in &pairs {
                    prop_assert!(n.len() + v.len() <= bytes.len());
                }
            }
        }

        #[test]
        fn encoded_maps_decode_to_themselves(
            pairs in proptest::collection::vec(("[a-z:-]{0,12}", "[ -~]{0,20}"), 0..8)
        ) {
            let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let decoded = decode_map(&encode_map(&refs)).unwrap();
            let texts: Vec<(String, String)> = texts(&decoded);
            prop_assert_eq!(texts, pairs);
        }
    }
}
