//! The pages previewd shows a visitor instead of a preview: no access (403), a sign-in that
//! cannot go on (400), a password prompt's fallback (401). Each says what happened and what to
//! do; none is a blank error. Every value is HTML-escaped here; nothing here decides access.

/// The five characters that change meaning in HTML text and attribute values. Written out
/// rather than a template engine: a few small pages, and a crate's macros would cost more.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title`, then `body` (already HTML).
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\"><title>{t}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;\
         padding:0 1rem;color:#1f2328}}h1{{font-size:1.4rem}}code{{background:#f0f0f0;\
         padding:0 .2em}}a{{color:#0969da}}</style></head><body><h1>{t}</h1>{body}\
         <p><small>previewd</small></p></body></html>",
        t = esc(title)
    )
}

/// What a signed-in visitor without read access sees.
pub struct Denied<'a> {
    pub login: &'a str,
    pub forge: &'a str,
    pub repo: &'a str,
    /// Where the visitor signs out of the forge.
    pub sign_out: &'a str,
    /// Where signing in again starts.
    pub sign_in: &'a str,
}

pub fn denied(d: &Denied<'_>) -> String {
    page(
        "No access to this preview",
        &format!(
            "<p>You are signed in to {forge} as <strong id=\"login\">{login}</strong>, who \
             lacks read access to <code id=\"repo\">{repo}</code>. This preview is shown to the \
             people who can read that repository.</p>\
             <p>Ask the repository's owners for access, or sign in as someone else: \
             <a href=\"{out}\">sign out of {forge}</a>, then \
             <a id=\"again\" href=\"{again}\">sign in again</a>.</p>",
            forge = esc(d.forge),
            login = esc(d.login),
            repo = esc(d.repo),
            out = esc(d.sign_out),
            again = esc(d.sign_in),
        ),
    )
}

/// A sign-in that cannot go on (expired or tampered, a return address that is not a
/// preview, a forge that refused): `why` says which, `again` where to start over, if known.
pub fn refused(why: &str, again: Option<&str>) -> String {
    let again = again
        .map(|a| format!("<p><a href=\"{}\">Start again</a>.</p>", esc(a)))
        .unwrap_or_default();
    page("Cannot sign you in", &format!("<p>{}</p>{again}", esc(why)))
}

/// The body of a 401 for a `password` preview (browsers show their own prompt first).
pub fn password_needed(id: &str) -> String {
    page(
        "This preview needs a password",
        &format!(
            "<p>Preview <code>{}</code> is protected by a password. The user is \
             <code>{}</code>; the password is in the pull request's previewd comment.</p>",
            esc(id),
            super::PASSWORD_USER
        ),
    )
}

/// A preview in `forge` mode that no forge repository owns (made with `previewd up`).
pub fn no_repository(id: &str) -> String {
    page(
        "No access to this preview",
        &format!(
            "<p>Preview <code>{}</code> belongs to no forge repository, so no forge sign-in \
             can open it. Its operator can set <code>access.mode</code> to password or \
             public.</p>",
            esc(id)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_denied_page_names_the_user_and_repository_escaped() {
        let p = denied(&Denied {
            login: "<script>x</script>",
            forge: "GitHub",
            repo: "octo/private",
            sign_out: "https://github.com/logout",
            sign_in: "http://auth.localhost/_previewd/login?rd=a&b",
        });
        assert!(p.contains("&lt;script&gt;x&lt;/script&gt;") && !p.contains("<script>x"));
        assert!(p.contains("octo/private") && p.contains("rd=a&amp;b"));
    }
}
