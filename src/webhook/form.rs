//! GitHub's other content type: a webhook may be configured as
//! `application/x-www-form-urlencoded`, with the JSON in a `payload` field. The signature is
//! over the raw form body, so this runs only after `verify` has checked it, and hands on the
//! JSON exactly as a JSON delivery would be. Nothing here parses the JSON itself.

use bytes::Bytes;

/// Why a form body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("{}", self.reason())]
    NotAForm,
    #[error("{}", self.reason())]
    NoPayload,
}

impl FormError {
    /// The reason recorded on `/deliveries` and given in the 400 answer.
    pub fn reason(self) -> &'static str {
        match self {
            FormError::NotAForm => "form body is not application/x-www-form-urlencoded",
            FormError::NoPayload => "form body has no `payload` field",
        }
    }
}

/// Whether `content_type` is a form (parameters such as `charset` allowed).
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The `payload` field of a form body, as bytes: invalid UTF-8 is left for the JSON parser
/// to refuse, not replaced.
pub fn payload(raw: &[u8]) -> Result<Bytes, FormError> {
    for field in raw.split(|b| *b == b'&') {
        let mut kv = field.splitn(2, |b| *b == b'=');
        let key = decode(kv.next().unwrap_or_default())?;
        if key == b"payload" {
            return Ok(Bytes::from(decode(kv.next().unwrap_or_default())?));
        }
    }
    Err(FormError::NoPayload)
}

/// Percent-decoding with `+` for space (`application/x-www-form-urlencoded`).
fn decode(s: &[u8]) -> Result<Vec<u8>, FormError> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(hex);
                let lo = s.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(FormError::NotAForm);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_content_types() {
        assert!(is_form(Some("application/x-www-form-urlencoded")));
        assert!(is_form(Some(
            "Application/X-WWW-Form-Urlencoded; charset=utf-8"
        )));
        assert!(!is_form(Some("application/json")));
        assert!(!is_form(None));
    }

    #[test]
    fn payload_is_decoded() {
        let raw = b"payload=%7B%22zen%22%3A%22a+b%22%7D";
        assert_eq!(payload(raw), Ok(Bytes::from_static(b"{\"zen\":\"a b\"}")));
        assert_eq!(payload(b"other=1"), Err(FormError::NoPayload));
        assert_eq!(payload(b"a=1&payload=%FF"), Ok(Bytes::from_static(b"\xff")));
        assert_eq!(payload(b"payload=%7"), Err(FormError::NotAForm));
        assert_eq!(payload(b"payload=%zz"), Err(FormError::NotAForm));
    }
}
