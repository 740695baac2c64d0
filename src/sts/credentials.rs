//! The two success bodies.
//!
//! `PUT token`'s 201, byte for byte as the token service this filter replaces (the HPE Cray
//! System Management "simple token service") answers it; its clients read these five keys:
//!
//! `{"Credentials": {"AccessKeyId": "..", "EndpointURL": "..", "Expiration": "..",
//! "SecretAccessKey": "..", "SessionToken": ".."}}`
//!
//! Written by hand to match Python's `json.dumps` byte for byte: `", "` and `": "` separators,
//! keys in this order, non-ASCII escaped as `\uXXXX`. `Expiration` is RGW's RFC 3339 UTC time
//! turned into Python's `isoformat()` shape: 6 fractional digits (truncated) and `+00:00`.
//!
//! `GET credentials`'s 200, the AWS container-credentials format every AWS SDK refreshes from
//! (what their container credentials provider reads):
//!
//! `{"AccessKeyId": "..", "SecretAccessKey": "..", "Token": "..", "Expiration": "2026-11-30T22:45:49Z"}`
//!
//! `Expiration` there is RGW's time in whole seconds, truncated (never later than RGW's).

use core::fmt;

use crate::sts::response::AssumedCredentials;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirationError {
    /// Not `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by `Z` or `+00:00`.
    Format,
    /// A field out of range (month 13, February 30, hour 24, ...).
    Range,
    /// More than 9 fractional digits.
    TooPrecise,
    /// A valid RFC 3339 time with an offset other than UTC.
    NotUtc,
}

impl fmt::Display for ExpirationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpirationError::Format => "Expiration is not an RFC 3339 timestamp",
            ExpirationError::Range => "Expiration has a field out of range",
            ExpirationError::TooPrecise => "Expiration has more than 9 fractional digits",
            ExpirationError::NotUtc => "Expiration is not in UTC",
        })
    }
}

impl std::error::Error for ExpirationError {}

/// Reads fixed-width fields of an ASCII timestamp without indexing.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, accepted: &[u8]) -> Result<(), ExpirationError> {
        match self.peek() {
            Some(b) if accepted.contains(&b) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(ExpirationError::Format),
        }
    }

    fn number(&mut self, width: usize) -> Result<u32, ExpirationError> {
        let mut n = 0u32;
        for _ in 0..width {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    n = n * 10 + u32::from(b - b'0');
                    self.pos += 1;
                }
                _ => return Err(ExpirationError::Format),
            }
        }
        Ok(n)
    }

    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An RFC 3339 UTC time, validated, with its fraction kept as 6 digits (truncated).
struct UtcTime {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: String,
}

/// Accepts RFC 3339 UTC times: 0–9 fractional digits (padded or truncated to 6), `Z`, `z` or
/// `+00:00`, `T` or `t`; seconds up to 60 (RFC 3339 allows a leap second).
fn parse_utc(rfc3339: &str) -> Result<UtcTime, ExpirationError> {
    let mut c = Cursor {
        bytes: rfc3339.as_bytes(),
        pos: 0,
    };
    let year = c.number(4)?;
    c.eat(b"-")?;
    let month = c.number(2)?;
    c.eat(b"-")?;
    let day = c.number(2)?;
    c.eat(b"Tt")?;
    let hour = c.number(2)?;
    c.eat(b":")?;
    let minute = c.number(2)?;
    c.eat(b":")?;
    let second = c.number(2)?;

    let mut micros = String::with_capacity(6);
    if c.peek() == Some(b'.') {
        c.pos += 1;
        let mut digits = 0usize;
        while let Some(b @ b'0'..=b'9') = c.peek() {
            digits += 1;
            if micros.len() < 6 {
                micros.push(char::from(b));
            }
            c.pos += 1;
        }
        match digits {
            0 => return Err(ExpirationError::Format),
            10.. => return Err(ExpirationError::TooPrecise),
            _ => {}
        }
    }
    while micros.len() < 6 {
        micros.push('0');
    }

    match c.rest() {
        b"Z" | b"z" | b"+00:00" => {}
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            return Err(ExpirationError::NotUtc)
        }
        _ => return Err(ExpirationError::Format),
    }

    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(ExpirationError::Range);
    }
    Ok(UtcTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    })
}

/// `2026-11-30T00:57:59.260716106Z` → `2026-11-30T00:57:59.260716+00:00`.
///
/// Accepts what [`parse_utc`] accepts.
fn convert_expiration(rfc3339: &str) -> Result<String, ExpirationError> {
    let UtcTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    } = parse_utc(rfc3339)?;
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros}+00:00"
    ))
}

/// `2026-11-30T00:57:59.260716106Z` → `2026-11-30T00:57:59Z`: whole seconds, truncated, so
/// never later than RGW's time. A leap second (`:60`) becomes `:59`: SDKs' date parsers
/// (Python's `datetime`) refuse second 60.
fn container_expiration(rfc3339: &str) -> Result<String, ExpirationError> {
    let UtcTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        ..
    } = parse_utc(rfc3339)?;
    let second = second.min(59);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
    ))
}

/// Append `s` as a JSON string the way Python's `json.dumps` (with `ensure_ascii`) writes it.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs of printable ASCII go in whole (a session token is hundreds of them).
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        if matches!(ch, ' '..='~') && ch != '"' && ch != '\\' {
            continue;
        }
        out.push_str(s.get(start..i).unwrap_or_default());
        start = i + ch.len_utf8();
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// The 201 body. Fails only when RGW's `Expiration` is not an RFC 3339 UTC time.
pub fn response_body(
    creds: &AssumedCredentials,
    endpoint_url: &str,
) -> Result<String, ExpirationError> {
    let expiration = convert_expiration(&creds.expiration)?;
    let fields: [(&str, &str); 5] = [
        ("AccessKeyId", &creds.access_key_id),
        ("EndpointURL", endpoint_url),
        ("Expiration", &expiration),
        ("SecretAccessKey", &creds.secret_access_key),
        ("SessionToken", &creds.session_token),
    ];
    let mut out = String::with_capacity(120 + fields.iter().map(|(_, v)| v.len()).sum::<usize>());
    out.push_str("{\"Credentials\": ");
    push_json_object(&mut out, &fields);
    out.push('}');
    Ok(out)
}

/// The container-credentials 200 body. Fails only when RGW's `Expiration` is not an RFC 3339
/// UTC time.
pub fn container_body(creds: &AssumedCredentials) -> Result<String, ExpirationError> {
    let expiration = container_expiration(&creds.expiration)?;
    let fields: [(&str, &str); 4] = [
        ("AccessKeyId", &creds.access_key_id),
        ("SecretAccessKey", &creds.secret_access_key),
        ("Token", &creds.session_token),
        ("Expiration", &expiration),
    ];
    let mut out = String::with_capacity(80 + fields.iter().map(|(_, v)| v.len()).sum::<usize>());
    push_json_object(&mut out, &fields);
    Ok(out)
}

/// Append a flat object of string members, with `json.dumps`'s separators.
fn push_json_object(out: &mut String, fields: &[(&str, &str)]) {
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_json_string(out, key);
        out.push_str(": ");
        push_json_string(out, value);
    }
    out.push('}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn creds(expiration: &str) -> AssumedCredentials {
        AssumedCredentials {
            access_key_id: "KtSRFzmAkoDfgCnBLYt".into(),
            secret_access_key: "6CD15abc/def+ghi=".into(),
            session_token: "qbwVtoken==".into(),
            expiration: expiration.into(),
        }
    }

    #[test]
    fn body_matches_contract_byte_for_byte() {
        let body = response_body(
            &creds("2019-10-14T15:15:43.480741Z"),
            "http://rgw.local:8080",
        )
        .unwrap();
        assert_eq!(
            body,
            "{\"Credentials\": {\"AccessKeyId\": \"KtSRFzmAkoDfgCnBLYt\", \
             \"EndpointURL\": \"http://rgw.local:8080\", \
             \"Expiration\": \"2019-10-14T15:15:43.480741+00:00\", \
             \"SecretAccessKey\": \"6CD15abc/def+ghi=\", \"SessionToken\": \"qbwVtoken==\"}}"
        );
    }

    #[test]
    fn key_order_and_valid_json() {
        let body = response_body(
            &creds("2026-11-30T00:57:59.260716106Z"),
            "http://rgw.local:8080",
        )
        .unwrap();
        let keys = [
            "\"Credentials\"",
            "\"AccessKeyId\"",
            "\"EndpointURL\"",
            "\"Expiration\"",
            "\"SecretAccessKey\"",
            "\"SessionToken\"",
        ];
        let positions: Vec<usize> = keys.iter().map(|k| body.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let c = &v["Credentials"];
        assert_eq!(c.as_object().unwrap().len(), 5);
        assert_eq!(c["AccessKeyId"], "KtSRFzmAkoDfgCnBLYt");
        assert_eq!(c["EndpointURL"], "http://rgw.local:8080");
        assert_eq!(c["Expiration"], "2026-11-30T00:57:59.260716+00:00");
        assert_eq!(c["SecretAccessKey"], "6CD15abc/def+ghi=");
        assert_eq!(c["SessionToken"], "qbwVtoken==");
    }

    #[test]
    fn escaping_matches_python_json_dumps() {
        // Expected output from Python 3: json.dumps("q\"b\\s/\n\r\t\b\f\x01\x1f\x7f é€😀")
        let mut out = String::new();
        push_json_string(&mut out, "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é€😀");
        assert_eq!(
            out,
            r#""q\"b\\s/\n\r\t\b\f\u0001\u001f\u007f \u00e9\u20ac\ud83d\ude00""#
        );
        let mut c = creds("2026-11-30T00:57:59Z");
        c.session_token = "a\"b\\c\u{0}".into();
        let body = response_body(&c, "http://h/\u{e9}").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Credentials"]["SessionToken"], "a\"b\\c\u{0}");
        assert_eq!(v["Credentials"]["EndpointURL"], "http://h/\u{e9}");
        assert!(body.is_ascii());
    }

    #[test]
    fn expiration_conversions() {
        let ok = [
            (
                "2026-11-30T00:57:59.260716106Z",
                "2026-11-30T00:57:59.260716+00:00",
            ), // RGW
            (
                "2026-11-30T00:57:59.260716999Z",
                "2026-11-30T00:57:59.260716+00:00",
            ), // truncated
            (
                "2026-11-30T00:57:59.260716Z",
                "2026-11-30T00:57:59.260716+00:00",
            ),
            (
                "2026-11-30T00:57:59.2607Z",
                "2026-11-30T00:57:59.260700+00:00",
            ),
            ("2026-11-30T00:57:59.2Z", "2026-11-30T00:57:59.200000+00:00"),
            ("2026-11-30T00:57:59Z", "2026-11-30T00:57:59.000000+00:00"),
            (
                "2019-10-14T15:15:43.480741+00:00",
                "2019-10-14T15:15:43.480741+00:00",
            ),
            (
                "2019-10-14T15:15:43+00:00",
                "2019-10-14T15:15:43.000000+00:00",
            ),
            ("2019-10-14t15:15:43.1z", "2019-10-14T15:15:43.100000+00:00"),
            (
                "2024-02-29T23:59:59.999999999Z",
                "2024-02-29T23:59:59.999999+00:00",
            ),
            ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00.000000+00:00"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60.000000+00:00"), // leap second
        ];
        for (input, want) in ok {
            assert_eq!(convert_expiration(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn expiration_rejections() {
        use ExpirationError::*;
        let bad = [
            ("", Format),
            ("garbage", Format),
            ("2026-11-30", Format),
            ("2026-11-30T00:57:59", Format), // no offset
            ("2026-11-30 00:57:59Z", Format),
            ("2026-11-30T00:57Z", Format),
            ("26-11-30T00:57:59Z", Format),
            ("2026-1-30T00:57:59Z", Format),
            ("2026-11-30T00:57:59.Z", Format),
            ("2026-11-30T00:57:59,5Z", Format),
            ("2026-11-30T00:57:59.5ZZ", Format),
            ("2026-11-30T00:57:59.5Z ", Format),
            (" 2026-11-30T00:57:59Z", Format),
            ("2026-11-30T00:57:59+0000", Format),
            ("2026-11-30T00:57:59UTC", Format),
            ("２０２６-11-30T00:57:59Z", Format),
            ("2026-11-30T00:57:59.1234567890Z", TooPrecise),
            ("2026-11-30T00:57:59+01:00", NotUtc),
            ("2026-11-30T00:57:59-05:30", NotUtc),
            ("2026-11-30T00:57:59-00:00", NotUtc), // RFC 3339: "unknown local offset"
            ("2026-13-30T00:57:59Z", Range),
            ("2026-00-30T00:57:59Z", Range),
            ("2026-11-31T00:57:59Z", Range),
            ("2026-11-00T00:57:59Z", Range),
            ("2023-02-29T00:57:59Z", Range),
            ("2100-02-29T00:57:59Z", Range),
            ("2026-11-30T24:00:00Z", Range),
            ("2026-11-30T23:60:00Z", Range),
            ("2026-11-30T23:59:61Z", Range),
        ];
        for (input, want) in bad {
            assert_eq!(convert_expiration(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn container_body_format() {
        let body = container_body(&creds("2026-11-30T22:45:49.260716106Z")).unwrap();
        assert_eq!(
            body,
            "{\"AccessKeyId\": \"KtSRFzmAkoDfgCnBLYt\", \"SecretAccessKey\": \"6CD15abc/def+ghi=\", \
             \"Token\": \"qbwVtoken==\", \"Expiration\": \"2026-11-30T22:45:49Z\"}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 4);
        assert!(!o.contains_key("SessionToken"), "the SDKs read Token");
        assert_eq!(v["Token"], "qbwVtoken==");
        let mut c = creds("2026-11-30T00:57:59Z");
        c.session_token = "a\"b\\c\u{0}\u{e9}".into();
        let body = container_body(&c).unwrap();
        assert!(body.is_ascii());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Token"], "a\"b\\c\u{0}\u{e9}");
        assert_eq!(
            container_body(&creds("tomorrow")),
            Err(ExpirationError::Format)
        );
    }

    #[test]
    fn container_expiration_conversions() {
        let ok = [
            ("2026-11-30T22:45:49.260716106Z", "2026-11-30T22:45:49Z"), // RGW
            ("2026-11-30T22:45:49.999999999Z", "2026-11-30T22:45:49Z"), // truncated, not rounded
            ("2026-11-30T22:45:49Z", "2026-11-30T22:45:49Z"),
            ("2026-11-30t22:45:49.5z", "2026-11-30T22:45:49Z"),
            ("2026-11-30T22:45:49+00:00", "2026-11-30T22:45:49Z"),
            ("2024-02-29T23:59:59.9Z", "2024-02-29T23:59:59Z"),
            ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59Z"), // leap second
        ];
        for (input, want) in ok {
            assert_eq!(container_expiration(input).as_deref(), Ok(want), "{input}");
        }
        // Exactly what the token route refuses.
        for bad in [
            "",
            "2026-11-30T22:45:49",
            "2026-11-30T22:45:49+01:00",
            "2026-11-31T22:45:49Z",
            "2026-11-30T22:45:49.1234567890Z",
        ] {
            assert_eq!(
                container_expiration(bad),
                convert_expiration(bad).map(|_| String::new()),
                "{bad}"
            );
            assert!(container_expiration(bad).is_err());
        }
    }

    #[test]
    fn bad_expiration_fails_the_body() {
        assert_eq!(
            response_body(&creds("tomorrow"), "http://x"),
            Err(ExpirationError::Format)
        );
    }
}
