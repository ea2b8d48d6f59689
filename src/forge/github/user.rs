//! Who previewd's GitHub token is: `GET /user` for its login, and that login's permission on
//! a repository, for `previewd doctor`. `serve` does not ask: a GitHub token's comments are
//! told apart by their marker. Only reads; nothing here sees or prints the token itself (the
//! header comes from `auth`).

use axum::http::{Method, header};
use serde::Deserialize;

use super::GitHub;
use crate::forge::http::{decode, send};
use crate::forge::{Forge, ForgeResult, Permission, Repo};

impl GitHub {
    /// The login the configured token acts as: `None` for an App (its installation tokens
    /// have no user) and without a token.
    pub(super) async fn token_login(&self) -> ForgeResult<Option<String>> {
        let Some(auth) = self.credentials.token_authorization()? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        let call = "users/get-authenticated";
        let body = send(
            &self.http,
            &self.policy,
            call,
            Method::GET,
            "/user",
            None,
            Some((&header::AUTHORIZATION, &auth)),
        )
        .await?;
        let user: User = decode(call, &body)?;
        Ok(Some(user.login))
    }

    /// The token's user's permission on `repo`: `None` for an App (installed on the
    /// repository or not) and without a token.
    pub(super) async fn token_permission(&self, repo: &Repo) -> ForgeResult<Option<Permission>> {
        let Some(login) = self.token_login().await? else {
            return Ok(None);
        };
        self.permission(repo, &login, None).await.map(Some)
    }
}
