//! RGW's answer to `AssumeRole`, parsed with roxmltree.
//!
//! Success: 200 with `AssumeRoleResponse/AssumeRoleResult/Credentials/{AccessKeyId,
//! SecretAccessKey,SessionToken,Expiration}` (RGW sends no namespace; AWS sends
//! `https://sts.amazonaws.com/doc/2011-06-15/`; elements are matched on local names only).
//! Failure: any other status, with `<Error><Code>..</Code>..</Error>` (or AWS's
//! `<ErrorResponse><Error>..`) in the body.
//!
//! DTDs are refused (roxmltree's default, plus an explicit check, since roxmltree lets an empty
//! `<!DOCTYPE x>` through), bodies are capped at [`MAX_BODY_BYTES`] and the node count is bounded.

use core::fmt;

use roxmltree::{Document, Node, ParsingOptions};

/// Larger answers are refused without parsing; RGW's success body is about 1 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// RGW's answer has about 30 nodes; this bounds the work on a hostile body.
const NODES_LIMIT: u32 = 2048;

/// Longest error code kept; it ends up in an error body.
const MAX_CODE_LEN: usize = 64;

/// Used when a failed answer carries no usable `<Code>`.
pub const UNKNOWN_CODE: &str = "Unknown";

/// The temporary credentials from a successful AssumeRole. Debug redacts the secret and token.
#[derive(Clone, PartialEq, Eq)]
pub struct AssumedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// As RGW sent it, e.g. `2026-11-30T00:57:59.260716106Z`; see `credentials` for the conversion.
    pub expiration: String,
}

impl fmt::Debug for AssumedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The access key id is an identifier (it appears in RGW's own logs), not a secret.
        f.debug_struct("AssumedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsError {
    /// RGW refused: its HTTP status and error code (only `[A-Za-z0-9]`, at most 64 characters;
    /// [`UNKNOWN_CODE`] when the body had none).
    Rgw { status: u16, code: String },
    /// A 200 whose body is not the expected document.
    Malformed(&'static str),
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StsError::Rgw { status, code } => write!(f, "RGW answered {status} {code}"),
            StsError::Malformed(reason) => write!(f, "malformed STS answer: {reason}"),
        }
    }
}

impl std::error::Error for StsError {}

pub fn parse(status: u16, body: &[u8]) -> Result<AssumedCredentials, StsError> {
    if status != 200 {
        return Err(StsError::Rgw {
            status,
            code: error_code(body),
        });
    }
    let doc = parse_document(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "AssumeRoleResponse" {
        return Err(StsError::Malformed("root is not AssumeRoleResponse"));
    }
    let creds = child(root, "AssumeRoleResult")
        .and_then(|r| child(r, "Credentials"))
        .ok_or(StsError::Malformed("missing AssumeRoleResult/Credentials"))?;
    Ok(AssumedCredentials {
        access_key_id: field(creds, "AccessKeyId", "missing or empty AccessKeyId")?,
        secret_access_key: field(creds, "SecretAccessKey", "missing or empty SecretAccessKey")?,
        session_token: field(creds, "SessionToken", "missing or empty SessionToken")?,
        expiration: field(creds, "Expiration", "missing or empty Expiration")?,
    })
}

fn parse_document(body: &[u8]) -> Result<Document<'_>, StsError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(StsError::Malformed("body too large"));
    }
    let text = core::str::from_utf8(body).map_err(|_| StsError::Malformed("body is not UTF-8"))?;
    if text.contains("<!DOCTYPE") {
        return Err(StsError::Malformed("DTD not allowed"));
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, opts)
        .map_err(|_| StsError::Malformed("body is not well-formed XML"))
}

/// First child element with this local name (any namespace).
fn child<'a, 'i>(node: Node<'a, 'i>, local_name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == local_name)
}

/// Text of a required field: non-empty after trimming, printable ASCII only (these values are
/// base64 or alphanumeric; anything else means the body is not what RGW sends).
fn field(
    parent: Node<'_, '_>,
    local_name: &str,
    missing: &'static str,
) -> Result<String, StsError> {
    let node = child(parent, local_name).ok_or(StsError::Malformed(missing))?;
    if node.children().any(|n| n.is_element()) {
        return Err(StsError::Malformed("credential field has child elements"));
    }
    let text = node.text().unwrap_or_default().trim();
    if text.is_empty() {
        return Err(StsError::Malformed(missing));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StsError::Malformed(
            "credential field has invalid characters",
        ));
    }
    Ok(text.to_owned())
}

/// The `<Code>` of an error answer, sanitized; [`UNKNOWN_CODE`] when there is none.
fn error_code(body: &[u8]) -> String {
    let Ok(doc) = parse_document(body) else {
        return UNKNOWN_CODE.to_owned();
    };
    let root = doc.root_element();
    let error = match root.tag_name().name() {
        "Error" => Some(root),
        "ErrorResponse" => child(root, "Error"),
        _ => None,
    };
    let code = error
        .and_then(|e| child(e, "Code"))
        .and_then(|c| c.text())
        .map(sanitize_code)
        .unwrap_or_default();
    if code.is_empty() {
        UNKNOWN_CODE.to_owned()
    } else {
        code
    }
}

/// Keep `[A-Za-z0-9]`, at most [`MAX_CODE_LEN`] characters: the code is echoed in our error body.
fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_CODE_LEN)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const AKID: &str = "nEffVHB6D9aV8oNWipJ"; // 19 characters, as RGW makes them
    const SECRET: &str = "EJBVfpm2zYxGq0s5kLr8TnWc3HdA7uQoXeI1bNv"; // 39 characters
    const EXPIRATION: &str = "2026-11-30T00:57:59.260716106Z";

    /// A 384-character base64 session token, the length RGW 16.2 produces.
    fn token() -> String {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut t = String::from("7MSX");
        let mut i = 7usize;
        while t.len() < 384 {
            i = (i * 31 + 11) % 64;
            t.push(alphabet.as_bytes()[i] as char);
        }
        t
    }

    /// RGW 16.2.15's success body: no XML declaration, no namespace, no whitespace.
    fn rgw_success() -> String {
        format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>{AKID}</AccessKeyId>\
             <Expiration>{EXPIRATION}</Expiration><SecretAccessKey>{SECRET}</SecretAccessKey>\
             <SessionToken>{}</SessionToken></Credentials><AssumedRoleUser><Arn>\
             arn:aws:sts:::assumed-role/ARS/alice-0000002a</Arn><AssumeRoleId>\
             ARS:alice-0000002a</AssumeRoleId></AssumedRoleUser>\
             <PackedPolicySize>0</PackedPolicySize></AssumeRoleResult></AssumeRoleResponse>",
            token()
        )
    }

    fn rgw_error(code: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message></Message>\
             <RequestId>tx000000a1b2c3d4e5f6a7b-0069ab12cd-1014-default</RequestId>\
             <HostId>1014-default-default</HostId></Error>"
        )
    }

    #[test]
    fn rgw_success_sample() {
        let c = parse(200, rgw_success().as_bytes()).unwrap();
        assert_eq!(c.access_key_id, AKID);
        assert_eq!(c.access_key_id.len(), 19);
        assert_eq!(c.secret_access_key, SECRET);
        assert_eq!(c.secret_access_key.len(), 39);
        assert_eq!(c.session_token, token());
        assert_eq!(c.session_token.len(), 384);
        assert_eq!(c.expiration, EXPIRATION);
    }

    #[test]
    fn aws_namespaced_and_indented_success() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
               <AssumeRoleResult>\n    <Credentials>\n\
                   <AccessKeyId>ASIAEXAMPLE</AccessKeyId>\n\
                   <SecretAccessKey>sec/ret+key=</SecretAccessKey>\n\
                   <SessionToken>\n  tok==\n  </SessionToken>\n\
                   <Expiration>2019-10-14T15:15:43Z</Expiration>\n\
                 </Credentials>\n  </AssumeRoleResult>\n\
               <ResponseMetadata><RequestId>c6104cbe</RequestId></ResponseMetadata>\n\
             </AssumeRoleResponse>\n";
        let c = parse(200, body.as_bytes()).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key, "sec/ret+key=");
        assert_eq!(c.session_token, "tok==");
        assert_eq!(c.expiration, "2019-10-14T15:15:43Z");

        let prefixed =
            "<sts:AssumeRoleResponse xmlns:sts=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
            <sts:AssumeRoleResult><sts:Credentials><sts:AccessKeyId>A</sts:AccessKeyId>\
            <sts:SecretAccessKey>S</sts:SecretAccessKey><sts:SessionToken>T</sts:SessionToken>\
            <sts:Expiration>2019-10-14T15:15:43Z</sts:Expiration></sts:Credentials>\
            </sts:AssumeRoleResult></sts:AssumeRoleResponse>";
        assert_eq!(parse(200, prefixed.as_bytes()).unwrap().session_token, "T");
    }

    #[test]
    fn rgw_error_samples() {
        for (status, code) in [
            (403, "AccessDenied"),
            (404, "NoSuchEntity"),
            (400, "InvalidArgument"),
        ] {
            assert_eq!(
                parse(status, rgw_error(code).as_bytes()),
                Err(StsError::Rgw {
                    status,
                    code: code.to_owned()
                })
            );
        }
        assert_eq!(
            parse(500, rgw_error("InternalError").as_bytes()),
            Err(StsError::Rgw {
                status: 500,
                code: "InternalError".to_owned()
            })
        );
    }

    #[test]
    fn aws_error_response_shape() {
        let body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
            <Type>Sender</Type><Code>AccessDenied</Code><Message>no</Message></Error>\
            <RequestId>x</RequestId></ErrorResponse>";
        assert_eq!(
            parse(403, body.as_bytes()),
            Err(StsError::Rgw {
                status: 403,
                code: "AccessDenied".to_owned()
            })
        );
    }

    #[test]
    fn error_without_usable_code_is_unknown() {
        let unknown = |status| {
            Err(StsError::Rgw {
                status,
                code: UNKNOWN_CODE.to_owned(),
            })
        };
        assert_eq!(
            parse(
                503,
                b"upstream connect error or disconnect/reset before headers"
            ),
            unknown(503)
        );
        assert_eq!(parse(504, b""), unknown(504));
        assert_eq!(
            parse(403, b"<Error><Message>x</Message></Error>"),
            unknown(403)
        );
        assert_eq!(parse(403, b"<Error><Code></Code></Error>"), unknown(403));
        assert_eq!(
            parse(403, b"<Error><Code>&lt;&gt;!!</Code></Error>"),
            unknown(403)
        );
        assert_eq!(parse(500, &vec![b'a'; 10 * 1024 * 1024]), unknown(500));
    }

    #[test]
    fn error_code_is_sanitized_and_capped() {
        let body = rgw_error("Access\"Denied&lt;script&gt;&amp;\u{e9}");
        assert_eq!(
            parse(403, body.as_bytes()),
            Err(StsError::Rgw {
                status: 403,
                code: "AccessDeniedscript".to_owned()
            })
        );
        let long = "A".repeat(500);
        match parse(400, rgw_error(&long).as_bytes()) {
            Err(StsError::Rgw { code, .. }) => assert_eq!(code, "A".repeat(64)),
            other => panic!("{other:?}"),
        }
        assert_eq!(sanitize_code("No Such-Entity_1"), "NoSuchEntity1");
    }

    #[test]
    fn error_body_with_status_200_is_malformed() {
        assert!(matches!(
            parse(200, rgw_error("AccessDenied").as_bytes()),
            Err(StsError::Malformed(_))
        ));
    }

    #[test]
    fn missing_fields_are_malformed() {
        let full = rgw_success();
        for tag in [
            "AccessKeyId",
            "SecretAccessKey",
            "SessionToken",
            "Expiration",
        ] {
            let start = full.find(&format!("<{tag}>")).unwrap();
            let end_tag = format!("</{tag}>");
            let end = full.find(&end_tag).unwrap() + end_tag.len();
            let body = format!("{}{}", &full[..start], &full[end..]);
            match parse(200, body.as_bytes()) {
                Err(StsError::Malformed(reason)) => assert!(reason.contains(tag), "{reason}"),
                other => panic!("{tag}: {other:?}"),
            }
        }
        let no_creds =
            "<AssumeRoleResponse><AssumeRoleResult></AssumeRoleResult></AssumeRoleResponse>";
        assert!(matches!(
            parse(200, no_creds.as_bytes()),
            Err(StsError::Malformed(_))
        ));
        assert!(matches!(
            parse(200, b"<Other/>"),
            Err(StsError::Malformed(_))
        ));
    }

    #[test]
    fn empty_fields_are_malformed() {
        let full = rgw_success();
        for (tag, value) in [
            ("AccessKeyId", AKID.to_owned()),
            ("SecretAccessKey", SECRET.to_owned()),
            ("SessionToken", token()),
            ("Expiration", EXPIRATION.to_owned()),
        ] {
            for empty in [
                format!("<{tag}></{tag}>"),
                format!("<{tag}/>"),
                format!("<{tag}>  \n </{tag}>"),
            ] {
                let body = full.replace(&format!("<{tag}>{value}</{tag}>"), &empty);
                assert_ne!(body, full);
                match parse(200, body.as_bytes()) {
                    Err(StsError::Malformed(reason)) => assert!(reason.contains(tag), "{reason}"),
                    other => panic!("{tag}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn odd_field_content_is_malformed() {
        let full = rgw_success();
        let nested = full.replace(
            &format!("<AccessKeyId>{AKID}"),
            &format!("<AccessKeyId><b/>{AKID}"),
        );
        assert!(matches!(
            parse(200, nested.as_bytes()),
            Err(StsError::Malformed(_))
        ));
        let spaced = full.replace(&format!("<AccessKeyId>{AKID}"), "<AccessKeyId>a b");
        assert!(matches!(
            parse(200, spaced.as_bytes()),
            Err(StsError::Malformed(_))
        ));
    }

    #[test]
    fn non_utf8_is_malformed() {
        let mut body = rgw_success().into_bytes();
        body.insert(30, 0xff);
        assert_eq!(
            parse(200, &body),
            Err(StsError::Malformed("body is not UTF-8"))
        );
    }

    #[test]
    fn truncated_xml_is_malformed() {
        let full = rgw_success();
        for cut in [0, 1, 20, full.len() / 2, full.len() - 1] {
            assert!(
                matches!(
                    parse(200, &full.as_bytes()[..cut]),
                    Err(StsError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            parse(200, b"not xml at all"),
            Err(StsError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let huge = vec![b' '; 10 * 1024 * 1024];
        assert_eq!(
            parse(200, &huge),
            Err(StsError::Malformed("body too large"))
        );
        // Just over the cap, even if the document itself would be fine.
        let mut padded = rgw_success();
        padded.push_str(&" ".repeat(MAX_BODY_BYTES + 1 - padded.len()));
        assert_eq!(
            parse(200, padded.as_bytes()),
            Err(StsError::Malformed("body too large"))
        );
        let mut at_cap = rgw_success();
        at_cap.push_str(&" ".repeat(MAX_BODY_BYTES - at_cap.len()));
        assert!(parse(200, at_cap.as_bytes()).is_ok());
    }

    #[test]
    fn dtd_and_entity_expansion_are_refused() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
            <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
            <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\
            <AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>&lol3;</AccessKeyId>\
            <SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>\
            <Expiration>2026-11-30T00:57:59Z</Expiration></Credentials></AssumeRoleResult>\
            </AssumeRoleResponse>";
        assert!(matches!(
            parse(200, laughs.as_bytes()),
            Err(StsError::Malformed(_))
        ));
        let external = "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Error><Code>&x;</Code></Error>";
        assert_eq!(
            parse(403, external.as_bytes()),
            Err(StsError::Rgw {
                status: 403,
                code: UNKNOWN_CODE.to_owned()
            })
        );
        // roxmltree alone accepts an empty DOCTYPE; refuse it too.
        let empty_dtd = format!("<!DOCTYPE AssumeRoleResponse>{}", rgw_success());
        assert_eq!(
            parse(200, empty_dtd.as_bytes()),
            Err(StsError::Malformed("DTD not allowed"))
        );
        // Without our check, roxmltree's own default still refuses a DTD with declarations.
        assert!(Document::parse(laughs).is_err());
    }

    #[test]
    fn too_many_nodes_are_refused() {
        // A valid success answer padded with empty elements: with a few it parses (the control),
        // with NODES_LIMIT of them the parser stops at its node limit, although the
        // credentials are all there and the body is under MAX_BODY_BYTES.
        let padded = |n: usize| {
            rgw_success().replace(
                "</AssumeRoleResponse>",
                &format!("{}</AssumeRoleResponse>", "<a/>".repeat(n)),
            )
        };
        assert!(parse(200, padded(100).as_bytes()).is_ok());
        let body = padded(NODES_LIMIT as usize);
        assert!(body.len() < MAX_BODY_BYTES);
        assert_eq!(
            parse(200, body.as_bytes()).err(),
            Some(StsError::Malformed("body is not well-formed XML"))
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = parse(200, rgw_success().as_bytes()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(SECRET));
        assert!(!shown.contains(&token()[..16]));
        assert!(shown.contains(AKID) && shown.contains("redacted"));
    }

    #[test]
    fn display_of_errors() {
        let e = StsError::Rgw {
            status: 403,
            code: "AccessDenied".into(),
        };
        assert_eq!(e.to_string(), "RGW answered 403 AccessDenied");
        assert_eq!(
            StsError::Malformed("x").to_string(),
            "malformed STS answer: x"
        );
    }
}
