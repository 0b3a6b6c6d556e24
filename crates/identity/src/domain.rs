//! Account values that cannot be invalid once constructed.

use sneakerstop_problem::FieldError;

/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in characters (bounds the hashing work per request).
pub const MAX_PASSWORD_LEN: usize = 128;

/// A syntactically valid email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Normalizes and validates `raw`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = Self::normalize(raw);
        if email.is_empty() {
            return Err(FieldError::new("email", "is required"));
        }
        if email.chars().count() > MAX_EMAIL_LEN {
            return Err(FieldError::new("email", format!("must be at most {MAX_EMAIL_LEN} characters")));
        }
        sneakerstop_problem::storable_text("email", &email)?;
        // email_address implements RFC 5322's addr-spec; we also insist on a dotted domain,
        // which every address a marketplace can mail to has.
        let valid = email_address::EmailAddress::is_valid(&email)
            && email.rsplit_once('@').is_some_and(|(_, domain)| domain.contains('.') && !domain.ends_with('.'));
        if !valid {
            return Err(FieldError::new("email", "is not a valid email address"));
        }
        Ok(Self(email))
    }

    /// Trims and lower-cases without validating, for looking an account up at sign-in.
    pub fn normalize(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of acceptable length. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(**redacted**)")
    }
}

impl Password {
    /// Checks the length of `raw` (in characters, not bytes).
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        let len = raw.chars().count();
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
            return Err(FieldError::new(
                "password",
                format!("must be between {MIN_PASSWORD_LEN} and {MAX_PASSWORD_LEN} characters"),
            ));
        }
        Ok(Self(raw))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A valid signup: both fields checked, every problem reported at once.
#[derive(Debug)]
pub struct NewAccount {
    /// The normalized email.
    pub email: Email,
    /// The password.
    pub password: Password,
}

impl NewAccount {
    /// Validates both fields, collecting every error.
    pub fn parse(email: &str, password: String) -> Result<Self, Vec<FieldError>> {
        match (Email::parse(email), Password::parse(password)) {
            (Ok(email), Ok(password)) => Ok(Self { email, password }),
            (email, password) => Err([email.err(), password.err()].into_iter().flatten().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Ann.Lee@Example.COM ").unwrap().as_str(), "ann.lee@example.com");
    }

    #[test]
    fn invalid_emails_are_refused_with_a_reason() {
        for bad in ["", "   ", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com", "ann lee@example.com"]
        {
            let err = Email::parse(bad).unwrap_err();
            assert_eq!(err.field, "email", "{bad:?}");
        }
        assert_eq!(Email::parse("").unwrap_err().reason, "is required");
    }

    #[test]
    fn email_length_is_bounded_at_254() {
        let domain = format!("{}.com", vec!["d".repeat(40); 5].join("."));
        let at_limit = format!("{}@{domain}", "a".repeat(MAX_EMAIL_LEN - 1 - domain.len()));
        assert_eq!(at_limit.len(), MAX_EMAIL_LEN);
        assert!(Email::parse(&at_limit).is_ok(), "{at_limit}");
        let over = format!("a{at_limit}");
        assert!(Email::parse(&over).unwrap_err().reason.contains("254"));
    }

    #[test]
    fn password_length_counts_characters() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("é".repeat(MAX_PASSWORD_LEN)).is_ok(), "multi-byte characters count once");
        let err = Password::parse("x".repeat(MAX_PASSWORD_LEN + 1)).unwrap_err();
        assert_eq!(err.field, "password");
        assert!(!format!("{:?}", Password::parse("supersecret".into()).unwrap()).contains("supersecret"));
    }

    #[test]
    fn signup_reports_every_invalid_field() {
        let errors = NewAccount::parse("nope", "short".into()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password"]);
    }
}
