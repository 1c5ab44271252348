//! Password authentication of a Redis connection, as Redis's `requirepass` does it for the
//! `default` user.
//!
//! - Without a password configured every connection is authenticated from the start; `AUTH
//!   <password>` is refused with Redis's "without any password configured" error and `AUTH
//!   default <anything>` (or `HELLO ... AUTH default <anything>`) is accepted, as Redis's
//!   passwordless `default` user accepts it.
//! - With one, a connection may send only `AUTH`, `HELLO` with its `AUTH` option, and `QUIT`
//!   until it has given the password (`AUTH <password>` or `AUTH default <password>`);
//!   anything else is answered `-NOAUTH` (after the command's name and argument count are
//!   checked, before its arguments: `Session::gate`), a wrong password `-WRONGPASS`. A
//!   failed attempt leaves a connection that was authenticated authenticated, as in Redis.
//!   Until then the connection's requests are framed one at a time under
//!   [`crate::Limits::unauthenticated`] (`conn.rs`).
//! - The comparison takes a time that depends on the password's length only, and the
//!   password never appears in `Debug` output.

use crate::reply::Reply;
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// The one user name Redis clients authenticate as (there are no ACL users here).
pub const DEFAULT_USER: &[u8] = b"default";

/// A password, compared in constant time and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Bytes);

impl Password {
    /// `None` for an empty password (Redis takes `requirepass ""` as none).
    pub fn new(secret: impl Into<Bytes>) -> Option<Password> {
        let secret = secret.into();
        (!secret.is_empty()).then_some(Password(secret))
    }

    /// The password's bytes, for a client that must send it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether `given` is this password. The time taken depends on the password's length
    /// only: every byte of it is compared, whatever `given` is.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mut diff = usize::from(self.0.len() != given.len());
        for (i, a) in self.0.iter().enumerate() {
            let b = given.get(i).copied().unwrap_or(!a);
            diff |= usize::from(a ^ b);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The credentials of an `AUTH` command or of `HELLO`'s `AUTH` option.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `None`: the one-argument form, `AUTH <password>`.
    pub user: Option<Bytes>,
    pub password: Bytes,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One connection's authentication state.
#[derive(Clone, Debug)]
pub struct Access {
    required: Option<Arc<Password>>,
    passed: bool,
}

impl Access {
    /// A connection to a server that requires `required` (none: every connection may do
    /// everything).
    pub fn new(required: Option<Arc<Password>>) -> Access {
        Access {
            passed: required.is_none(),
            required,
        }
    }

    /// Whether the connection may send any command.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// Checks `c` and, when it is right, authenticates the connection. `Err` is the reply
    /// that refuses it.
    pub fn authenticate(&mut self, c: &Credentials) -> Result<(), Reply> {
        let right_user = c.user.as_deref().is_none_or(|u| u == DEFAULT_USER);
        match &self.required {
            None if c.user.is_none() => Err(Reply::err(
                "AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            )),
            None if right_user => Ok(()),
            Some(p) if right_user && p.matches(&c.password) => {
                self.passed = true;
                Ok(())
            }
            _ => Err(wrong_pass()),
        }
    }
}

/// Redis's answer to a command sent before the password.
pub fn no_auth() -> Reply {
    Reply::Error("NOAUTH Authentication required.".into())
}

/// Redis's answer to `HELLO` without `AUTH` before the password.
pub fn hello_no_auth() -> Reply {
    Reply::Error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
         HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
         select the RESP protocol version at the same time"
            .into(),
    )
}

/// Redis's answer to a wrong user or password.
fn wrong_pass() -> Reply {
    Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: Option<&'static str>, password: &'static str) -> Credentials {
        Credentials {
            user: user.map(Bytes::from),
            password: Bytes::from(password),
        }
    }

    fn required(p: &'static str) -> Access {
        Access::new(Some(Arc::new(Password::new(p).expect("not empty"))))
    }

    #[test]
    fn passwords_match_only_themselves_and_never_print() {
        let p = Password::new("s3cret").expect("not empty");
        assert!(p.matches(b"s3cret"));
        for wrong in ["", "s3cre", "s3crets", "S3cret", "x3cret"] {
            assert!(!p.matches(wrong.as_bytes()), "{wrong}");
        }
        assert!(!format!("{p:?}").contains("s3cret"));
        assert!(!format!("{:?}", creds(None, "s3cret")).contains("s3cret"));
        assert_eq!(Password::new(""), None);
    }

    #[test]
    fn a_required_password_is_passed_only_by_the_default_user_with_it() {
        let mut a = required("pw");
        assert!(!a.passed());
        let refused = |r: Result<(), Reply>| match r {
            Err(Reply::Error(e)) => e,
            other => panic!("not refused: {other:?}"),
        };
        assert!(refused(a.authenticate(&creds(None, "nope"))).starts_with("WRONGPASS"));
        assert!(refused(a.authenticate(&creds(Some("admin"), "pw"))).starts_with("WRONGPASS"));
        assert!(!a.passed());
        assert_eq!(a.authenticate(&creds(Some("default"), "pw")), Ok(()));
        assert!(a.passed());
        // A failed attempt afterwards keeps the connection authenticated.
        assert!(a.authenticate(&creds(None, "nope")).is_err());
        assert!(a.passed());
        let mut b = required("pw");
        assert_eq!(b.authenticate(&creds(None, "pw")), Ok(()));
        assert!(b.passed());
    }

    #[test]
    fn without_a_password_every_connection_passes_and_auth_answers_as_redis() {
        let mut a = Access::new(None);
        assert!(a.passed());
        match a.authenticate(&creds(None, "x")) {
            Err(Reply::Error(e)) => assert!(e.contains("without any password configured")),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.authenticate(&creds(Some("default"), "anything")), Ok(()));
        assert!(a.authenticate(&creds(Some("other"), "x")).is_err());
        assert!(a.passed());
    }
}
