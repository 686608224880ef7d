//! The command-line lexer both binaries share, lexopt's way: the caller
//! asks for the next flag or word, and for a flag's value when the flag
//! takes one, so `--flag=value` and `--flag value` are one case, and an
//! `=value` left on a flag that takes none is an error, never dropped.

use std::fmt;

/// One argument: a flag (`--name` without its `=value`, or `-x`) or a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A flag, as written up to any `=`.
    Flag(String),
    /// Anything else (`-` alone too).
    Word(String),
}

/// What the lexer cannot accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    /// A flag that needs a value was last, with no `=value`.
    MissingValue {
        /// The flag.
        flag: String,
    },
    /// A flag that takes no value had one (`--help=x`).
    UnwantedValue {
        /// The flag.
        flag: String,
        /// The value given.
        value: String,
    },
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::MissingValue { flag } => write!(f, "argument {flag} expects a value"),
            LexError::UnwantedValue { flag, value } => {
                write!(f, "argument {flag} takes no value, got {value:?}")
            }
        }
    }
}

impl std::error::Error for LexError {}

/// The command line, an argument at a time.
#[derive(Debug)]
pub struct Lexer<I> {
    args: I,
    /// The last flag, and its `=value` while nobody has taken it.
    last: Option<(String, Option<String>)>,
}

impl<I: Iterator<Item = String>> Lexer<I> {
    /// Lexes `args` (without the program name).
    pub fn new(args: impl IntoIterator<Item = String, IntoIter = I>) -> Self {
        Lexer {
            args: args.into_iter(),
            last: None,
        }
    }

    /// The next flag or word; `None` at the end.
    ///
    /// # Errors
    ///
    /// [`LexError::UnwantedValue`] when the last flag's `=value` was not
    /// taken: that flag takes none.
    // Not `Iterator::next`: it can fail, and `value` needs the lexer
    // between two calls (lexopt's shape).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Arg>, LexError> {
        self.no_value()?;
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if arg.starts_with("--") {
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            self.last = Some((flag.clone(), value));
            return Ok(Some(Arg::Flag(flag)));
        }
        if arg.starts_with('-') && arg.len() > 1 {
            self.last = Some((arg.clone(), None));
            return Ok(Some(Arg::Flag(arg)));
        }
        self.last = None;
        Ok(Some(Arg::Word(arg)))
    }

    /// The last flag's value: its `=value`, else the next argument.
    ///
    /// # Errors
    ///
    /// [`LexError::MissingValue`] when there is neither.
    pub fn value(&mut self) -> Result<String, LexError> {
        if let Some(value) = self.optional_value() {
            return Ok(value);
        }
        let flag = self.last.take().map(|(flag, _)| flag).unwrap_or_default();
        self.args.next().ok_or(LexError::MissingValue { flag })
    }

    /// The last flag's `=value`, if it had one (taken: it is no error).
    pub fn optional_value(&mut self) -> Option<String> {
        self.last.as_mut().and_then(|(_, value)| value.take())
    }

    /// Checks that the last flag, which takes no value, had none.
    ///
    /// # Errors
    ///
    /// [`LexError::UnwantedValue`] for `--flag=value`.
    pub fn no_value(&mut self) -> Result<(), LexError> {
        match self.last.take() {
            Some((flag, Some(value))) => Err(LexError::UnwantedValue { flag, value }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Arg, LexError, Lexer};

    fn lexer(args: &[&str]) -> Lexer<std::vec::IntoIter<String>> {
        Lexer::new(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn both_spellings_of_a_value_and_leftovers() {
        let mut l = lexer(&["--a=1", "--b", "2", "-c", "w", "-", "--d=x"]);
        assert_eq!(l.next(), Ok(Some(Arg::Flag("--a".into()))));
        assert_eq!(l.value(), Ok("1".into()));
        assert_eq!(l.next(), Ok(Some(Arg::Flag("--b".into()))));
        assert_eq!(l.value(), Ok("2".into()));
        assert_eq!(l.next(), Ok(Some(Arg::Flag("-c".into()))));
        assert_eq!(l.next(), Ok(Some(Arg::Word("w".into()))));
        assert_eq!(l.next(), Ok(Some(Arg::Word("-".into()))));
        assert_eq!(l.next(), Ok(Some(Arg::Flag("--d".into()))));
        let unwanted = LexError::UnwantedValue {
            flag: "--d".into(),
            value: "x".into(),
        };
        assert_eq!(l.next(), Err(unwanted));
        assert_eq!(l.next(), Ok(None));

        let mut l = lexer(&["--e"]);
        assert_eq!(l.next(), Ok(Some(Arg::Flag("--e".into()))));
        let missing = LexError::MissingValue { flag: "--e".into() };
        assert_eq!(l.value(), Err(missing));
        // `--f=` is an empty value, not a missing one.
        let mut l = lexer(&["--f=", "--g=y=z"]);
        assert_eq!(l.next(), Ok(Some(Arg::Flag("--f".into()))));
        assert_eq!(l.value(), Ok(String::new()));
        assert_eq!(l.next(), Ok(Some(Arg::Flag("--g".into()))));
        assert_eq!(
            l.no_value().unwrap_err().to_string(),
            "argument --g takes no value, got \"y=z\""
        );
    }
}
