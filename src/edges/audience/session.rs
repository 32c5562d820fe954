//! Signed session tokens: the audience page keeps one (in its storage) and sends it in
//! `hello`, so a member who reconnects — a dropped connection, a reloaded page — keeps their
//! id, and with it their bans, time-outs and cooldowns. The token is the member id and an
//! HMAC-SHA256 of it under a key made at start-up: the edge stores nothing per member, a token
//! cannot be forged or moved to another id, and a restarted venue (a new key) issues new ones.

use ring::hmac;

use crate::model::audience::event::UserId;

/// Token format version, so that a later format can tell old tokens apart.
const VERSION: &str = "s1";

/// The key session tokens are signed with, made fresh at each start.
pub struct SessionKeys {
    key: hmac::Key,
}

impl SessionKeys {
    /// A random key.
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random numbers");
        Self { key }
    }

    /// The token for `user`.
    pub fn sign(&self, user: &str) -> String {
        let tag = hmac::sign(&self.key, user.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{VERSION}.{user}.{hex}")
    }

    /// The member id a token was issued for, if it was signed with this key.
    pub fn verify(&self, token: &str) -> Option<UserId> {
        let mut parts = token.splitn(3, '.');
        let (version, user, hex) = (parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION || user.is_empty() || user.len() > 64 || !user.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return None;
        }
        let tag = decode_hex(hex)?;
        hmac::verify(&self.key, user.as_bytes(), &tag).ok()?;
        Some(user.into())
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_member_and_nothing_else_passes() {
        let keys = SessionKeys::generate();
        let token = keys.sign("a1b2c3");
        assert_eq!(keys.verify(&token).as_deref(), Some("a1b2c3"));
        // Another id with the same tag, a changed tag, another key, other formats: refused.
        let tag = token.rsplit('.').next().unwrap();
        assert_eq!(keys.verify(&format!("s1.a1b2c4.{tag}")), None);
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(keys.verify(std::str::from_utf8(&flipped).unwrap()), None);
        assert_eq!(SessionKeys::generate().verify(&token), None);
        for junk in ["", "s1", "s1..", "s2.a1b2c3.00", "s1.a1b2c3.zz", "s1.a.b.c", &"s1.x.".repeat(100)] {
            assert_eq!(keys.verify(junk), None, "{junk:?}");
        }
    }
}
