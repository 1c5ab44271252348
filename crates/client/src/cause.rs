//! The cause of a transport failure in words: "transport error" alone hides whether the
//! connection was refused, timed out, or failed its TLS handshake or name lookup, which
//! the errors under it say.

use std::error::Error;

/// `e` and every error under it, each said once: "transport error: tcp connect error:
/// Connection refused (os error 111)".
pub(crate) fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let said = s.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("transport error")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_names_the_cause_under_a_vague_error() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = chain(&Outer(io));
        assert!(text.starts_with("transport error: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
