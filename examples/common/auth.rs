//! Who a connection is: a signed sign-in token, never the client's claim.
//!
//! `POST /api/login {"user":"ada"}` answers a token `ada.<signature>` and sets it as the cookie
//! `presence_token`. A connection proves its user with that cookie (a browser sends it with the
//! WebSocket or Socket.IO handshake) or with the token in its hello; one with neither watches.
//! The signature is an HMAC-SHA256 of the name under the server's `--secret`.
//!
//! The demo signs any name it is asked for: a real application signs in for real here, and
//! keeps the rest.

use hmac::{Hmac, Mac};
use presence_tracker_server::wire::Refusal;
use presence_tracker_server::{Authenticate, Handshake, Identity};
use sha2::Sha256;

/// The cookie that carries the token.
pub(crate) const COOKIE: &str = "presence_token";

/// Signs and checks tokens under one key.
#[derive(Clone)]
pub(crate) struct Signer {
    /// The keyed state, cloned for each token.
    keyed: Hmac<Sha256>,
}

impl Signer {
    /// A signer with `secret` as its key.
    ///
    /// # Errors
    ///
    /// A key HMAC refuses (HMAC takes keys of any length, so none in practice).
    pub(crate) fn new(secret: &str) -> Result<Self, String> {
        let keyed = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|e| format!("--secret: {e}"))?;
        Ok(Signer { keyed })
    }

    fn mac(&self, user: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(user.as_bytes());
        mac
    }

    /// A token for `user`: `user.hex(hmac)`.
    pub(crate) fn token(&self, user: &str) -> String {
        let tag = self.mac(user).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{user}.{hex}")
    }

    /// The user a token names, if its signature is right (compared in constant time).
    pub(crate) fn verify<'t>(&self, token: &'t str) -> Option<&'t str> {
        let (user, hex) = token.rsplit_once('.')?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tag: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .ok()?;
        self.mac(user).verify_slice(&tag).ok()?;
        Some(user)
    }

    /// Who a handshake is: the hello's token (a page keeps one per tab, so two users can
    /// share a browser), else a bearer header, else the cookie; none at all watches; a bad one
    /// is refused.
    fn identify(&self, h: &Handshake<'_>) -> Result<Identity<String>, Refusal> {
        let Some(token) = h.token.or_else(|| h.bearer()).or_else(|| h.cookie(COOKIE)) else {
            return Ok(Identity::Watcher);
        };
        match self.verify(token) {
            Some(user) => Ok(Identity::User(user.to_string())),
            None => Err(Refusal::new(
                "unauthorized",
                "the sign-in token is not valid: sign in again",
            )),
        }
    }
}

/// The demo's hook, for the sockets of both integrations and the JSON routes alike: who a
/// connection is by its token; everyone may see every document and every user (a real
/// application decides in `authorize_room` and `authorize_user`, and the routes follow).
impl Authenticate<String> for Signer {
    fn authenticate(&self, h: &Handshake<'_>) -> Result<Identity<String>, Refusal> {
        self.identify(h)
    }
}

/// A user name the demo accepts: 1 to 64 characters, no control characters, no `.` or `;`
/// (which a token and a cookie use).
pub(crate) fn valid_name(user: &str) -> bool {
    (1..=64).contains(&user.chars().count())
        && !user
            .chars()
            .any(|c| c.is_control() || c == '.' || c == ';' || c == '=' || c == ',')
        && user.trim() == user
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_and_a_forged_one_does_not() {
        let signer = Signer::new("k").expect("a key");
        let token = signer.token("ada");
        assert_eq!(signer.verify(&token), Some("ada"));
        assert_eq!(Signer::new("other").expect("a key").verify(&token), None);
        let forged = token.replacen("ada", "eve", 1);
        assert_eq!(signer.verify(&forged), None);
        assert_eq!(signer.verify("ada"), None);
        assert_eq!(signer.verify("ada.zz"), None);
    }
}
