//! `RoleSessionName` for AssumeRole, derived from the caller so RGW's logs say who holds which
//! credentials.
//!
//! RGW accepts 2–64 characters of `[A-Za-z0-9_=,.@-]`. The name is `<who>-<suffix>`:
//! - `<who>` is `preferred_username`, else `sub`, else `anonymous`; a claim is skipped when it
//!   has no ASCII letter or digit at all (a name like `日本語` would only become dashes, and `sub`
//!   says more). Surrounding whitespace is trimmed; every other character outside RGW's set
//!   becomes `-`, a run of such characters one `-` (`José Müller` → `Jos-M-ller`); then it is cut
//!   to 55 characters.
//! - with a tenant, `<who>` is `<user>@<tenant>` (the user cut first, to at least 8 characters,
//!   so both stay visible in RGW's log), then cut to 55 characters.
//! - `<suffix>` is 8 lowercase hex digits from `unique` (both 32-bit halves folded together), so
//!   two sessions of one user differ.
//!
//! The result always matches `^[A-Za-z0-9_=,.@-]{10,64}$`.

/// RGW's limit on `RoleSessionName`.
const MAX_LEN: usize = 64;
const SUFFIX_LEN: usize = 8;
/// Room for `<who>` after `-` and the suffix.
const MAX_WHO_LEN: usize = MAX_LEN - 1 - SUFFIX_LEN;
const FALLBACK: &str = "anonymous";

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '=' | ',' | '.' | '@' | '-')
}

/// `claim` reduced to RGW's charset, or None when it has no ASCII letter or digit.
fn reduce(claim: &str) -> Option<String> {
    let claim = claim.trim();
    if !claim.chars().any(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut out = String::with_capacity(claim.len().min(MAX_WHO_LEN));
    let mut replaced = false;
    for c in claim.chars() {
        if out.len() >= MAX_WHO_LEN {
            break;
        }
        if allowed(c) {
            out.push(c);
            replaced = false;
        } else if !replaced {
            out.push('-');
            replaced = true;
        }
    }
    Some(out)
}

pub fn session_name(
    preferred_username: Option<&str>,
    sub: Option<&str>,
    tenant: Option<&str>,
    unique: u64,
) -> String {
    let mut who = preferred_username
        .and_then(reduce)
        .or_else(|| sub.and_then(reduce))
        .unwrap_or_else(|| FALLBACK.to_owned());
    if let Some(tenant) = tenant.and_then(reduce) {
        // `reduce` keeps ASCII only, so byte lengths are character counts here.
        let user_room = MAX_WHO_LEN.saturating_sub(1 + tenant.len()).max(8);
        who.truncate(user_room.min(who.len()));
        who.push('@');
        who.push_str(&tenant);
        who.truncate(MAX_WHO_LEN);
    }
    // Fold the high half in, so a timestamp or counter in either half changes the suffix.
    let folded = (unique ^ (unique >> 32)) as u32;
    format!("{who}-{folded:08x}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn valid(s: &str) -> bool {
        (2..=MAX_LEN).contains(&s.len()) && s.chars().all(allowed)
    }

    #[test]
    fn plain_names() {
        assert_eq!(
            session_name(Some("alice"), Some("uuid"), None, 42),
            "alice-0000002a"
        );
        assert_eq!(
            session_name(None, Some("f81d4fae-7dec-11d0-a765-00a0c91e6bf6"), None, 1),
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6-00000001"
        );
        assert_eq!(
            session_name(None, None, None, 0xdead_beef),
            "anonymous-deadbeef"
        );
        assert_eq!(session_name(Some(""), None, None, 0), "anonymous-00000000");
        assert_eq!(
            session_name(Some("   "), Some(""), None, 0),
            "anonymous-00000000"
        );
        assert_eq!(
            session_name(Some("first.last@example.com"), None, None, 0),
            "first.last@example.com-00000000"
        );
        assert_eq!(
            session_name(Some("a_b=c,d.e@f-g"), None, None, 0),
            "a_b=c,d.e@f-g-00000000"
        );
    }

    #[test]
    fn invalid_characters_become_one_dash_per_run() {
        assert_eq!(
            session_name(Some("José Müller"), None, None, 0),
            "Jos-M-ller-00000000"
        );
        assert_eq!(
            session_name(Some("  bob smith  "), None, None, 0),
            "bob-smith-00000000"
        );
        assert_eq!(
            session_name(Some("a/b\\c:d*e"), None, None, 0),
            "a-b-c-d-e-00000000"
        );
        assert_eq!(
            session_name(Some("tab\there\nnl"), None, None, 0),
            "tab-here-nl-00000000"
        );
        assert_eq!(session_name(Some("x日本語"), None, None, 0), "x--00000000");
        assert_eq!(
            session_name(Some("😀admin😀"), None, None, 0),
            "-admin--00000000"
        );
    }

    #[test]
    fn names_without_letters_or_digits_fall_through() {
        assert_eq!(
            session_name(Some("日本語"), Some("user-123"), None, 7),
            "user-123-00000007"
        );
        assert_eq!(
            session_name(Some("!!!"), Some("???"), None, 7),
            "anonymous-00000007"
        );
        assert_eq!(
            session_name(Some("---"), None, None, 7),
            "anonymous-00000007"
        );
        assert_eq!(
            session_name(Some("\u{0}\u{1}"), Some("😀"), None, 7),
            "anonymous-00000007"
        );
    }

    #[test]
    fn long_names_are_cut_to_64() {
        let long = "a".repeat(500);
        let s = session_name(Some(&long), None, None, 1);
        assert_eq!(s.len(), 64);
        assert_eq!(s, format!("{}-00000001", "a".repeat(55)));
        let unicode_long = "é".repeat(300) + "z";
        let s = session_name(Some(&unicode_long), None, None, 1);
        assert_eq!(s, "-z-00000001");
        let mixed = "ab日".repeat(100);
        let s = session_name(Some(&mixed), None, None, 1);
        assert_eq!(s.len(), 64);
        assert!(valid(&s));
    }

    #[test]
    fn suffix_folds_both_halves() {
        assert_eq!(
            session_name(Some("u"), None, None, 0x0000_0001_0000_0000),
            "u-00000001"
        );
        assert_eq!(session_name(Some("u"), None, None, u64::MAX), "u-00000000");
        assert_eq!(
            session_name(Some("u"), None, None, 0x1234_5678_0000_0000),
            "u-12345678"
        );
        assert_ne!(
            session_name(Some("u"), None, None, 1),
            session_name(Some("u"), None, None, 2)
        );
    }

    #[test]
    fn output_always_matches_rgw_charset_and_length() {
        let samples = [
            "",
            " ",
            "a",
            "ab",
            "日本語",
            "José",
            "\u{0}",
            "\u{7f}",
            "a b",
            "=,.@-_",
            "%41",
            "+plus+",
            "Ω≈ç√∫",
            "\u{200b}zero\u{200b}width",
            "ﬁ",
            "İstanbul",
            "🧑‍💻",
            "x".repeat(64).as_str(),
            "é".repeat(64).as_str(),
            "😀".repeat(100).as_str(),
        ]
        .map(str::to_owned);
        for (i, p) in samples.iter().enumerate() {
            for s in samples.iter().take(5) {
                for unique in [0, 1, i as u64, u64::MAX, 0x8000_0000_0000_0000] {
                    for (pu, sb) in [
                        (Some(p.as_str()), Some(s.as_str())),
                        (None, Some(p.as_str())),
                        (Some(p.as_str()), None),
                    ] {
                        let name = session_name(pu, sb, None, unique);
                        assert!(valid(&name), "{pu:?} {sb:?} -> {name:?}");
                        assert!(name.len() >= 10);
                    }
                }
            }
        }
    }

    #[test]
    fn tenant_is_in_the_name() {
        assert_eq!(
            session_name(Some("alice"), None, Some("blue"), 1),
            "alice@blue-00000001"
        );
        let long_tenant = "t".repeat(253);
        let s = session_name(Some("alice-with-a-long-name"), None, Some(&long_tenant), 1);
        assert!(valid(&s) && s.starts_with("alice-wi@ttt"), "{s}");
        let s = session_name(Some(&"u".repeat(100)), None, Some("blue"), 1);
        assert!(valid(&s) && s.contains("@blue-"), "{s}");
    }
}
