//! Sizes as people write them in `previewd.toml` and in compose files (`512m`, `1.5gb`), one
//! parser for both so that a size means the same everywhere. Pure; nothing here names a key
//! or builds an error: the caller knows which key it read.

/// Parses sizes as Docker and compose do (go-units' `RAMInBytes`): a number with an optional
/// decimal fraction, an optional space, then an optional binary unit `k`, `m`, `g`, `t` or `p`
/// (case-insensitive, optionally followed by `i` and/or `b`, or a bare `b`): `512m`, `1.5G`,
/// `1.5gb`, `512.5 MiB`, `1048576`. A fraction is rounded down to whole bytes, as compose does.
/// `None` for anything else (signs, exponents, several dots, unknown units) or on overflow.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let shift = match unit.strip_prefix(' ').unwrap_or(unit) {
        "" | "b" => 0,
        u => {
            let mut chars = u.chars();
            let shift = match chars.next()? {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                'p' => 50,
                _ => return None,
            };
            match chars.as_str() {
                "" | "b" | "i" | "ib" => shift,
                _ => return None,
            }
        }
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    // At most 18 fraction digits: more cannot change a whole byte count below 2^63.
    if whole.is_empty() || !digits(whole) || !digits(frac) || num.ends_with('.') || frac.len() > 18
    {
        return None;
    }
    let mult = 1i128 << shift;
    let whole = whole.parse::<i128>().ok()?.checked_mul(mult)?;
    let frac = match frac {
        "" => 0,
        f => f.parse::<i128>().ok()? * mult / 10i128.pow(u32::try_from(f.len()).ok()?),
    };
    i64::try_from(whole.checked_add(frac)?).ok()
}
