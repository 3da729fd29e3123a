//! Error chains as one line of text, for log fields and the program's last
//! words.

/// `err` and its causes in one line, `: `-separated, each cause once:
/// error types often repeat their source's text in their own.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_is_one_line_with_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Repeats(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Hides(#[source] std::io::Error);
        let io = || std::io::Error::other("the cause");
        assert_eq!(one_line(&Repeats(io())), "outer: the cause");
        assert_eq!(one_line(&Hides(io())), "outer: the cause");
    }
}
