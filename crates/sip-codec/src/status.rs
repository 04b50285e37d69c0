//! Status codes and their reason phrases: the one table the edge writes from (every response it
//! generates, every refusal it explains). RFC 3261 §21 plus the codes of the extensions the edge
//! speaks (RFC 6665's 489). A code without an entry gets its class's name (RFC 3261 §7.2), never a
//! made-up word.

/// The reason phrase for `status`: RFC 3261 §21's text, else the name of its class.
pub fn reason_phrase(status: u16) -> &'static str {
    registered(status).unwrap_or(match status / 100 {
        1 => "Provisional",
        2 => "Success",
        3 => "Redirection",
        4 => "Request Failure",
        5 => "Server Failure",
        _ => "Global Failure",
    })
}

/// The phrase of a registered code.
fn registered(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3261 §21, every code and phrase as the RFC prints them.
    const RFC3261: &[(u16, &str)] = &[
        (100, "Trying"),
        (180, "Ringing"),
        (181, "Call Is Being Forwarded"),
        (182, "Queued"),
        (183, "Session Progress"),
        (200, "OK"),
        (300, "Multiple Choices"),
        (301, "Moved Permanently"),
        (302, "Moved Temporarily"),
        (305, "Use Proxy"),
        (380, "Alternative Service"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (402, "Payment Required"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (406, "Not Acceptable"),
        (407, "Proxy Authentication Required"),
        (408, "Request Timeout"),
        (410, "Gone"),
        (413, "Request Entity Too Large"),
        (414, "Request-URI Too Long"),
        (415, "Unsupported Media Type"),
        (416, "Unsupported URI Scheme"),
        (420, "Bad Extension"),
        (421, "Extension Required"),
        (423, "Interval Too Brief"),
        (480, "Temporarily Unavailable"),
        (481, "Call/Transaction Does Not Exist"),
        (482, "Loop Detected"),
        (483, "Too Many Hops"),
        (484, "Address Incomplete"),
        (485, "Ambiguous"),
        (486, "Busy Here"),
        (487, "Request Terminated"),
        (488, "Not Acceptable Here"),
        (491, "Request Pending"),
        (493, "Undecipherable"),
        (500, "Server Internal Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Server Time-out"),
        (505, "Version Not Supported"),
        (513, "Message Too Large"),
        (600, "Busy Everywhere"),
        (603, "Decline"),
        (604, "Does Not Exist Anywhere"),
        (606, "Not Acceptable"),
    ];

    #[test]
    fn every_rfc3261_code_has_its_phrase() {
        for (code, phrase) in RFC3261 {
            assert_eq!(reason_phrase(*code), *phrase, "{code}");
        }
    }

    #[test]
    fn unknown_codes_get_their_class_never_a_made_up_word() {
        assert_eq!(reason_phrase(199), "Provisional");
        assert_eq!(reason_phrase(299), "Success");
        assert_eq!(reason_phrase(399), "Redirection");
        assert_eq!(reason_phrase(499), "Request Failure");
        assert_eq!(reason_phrase(599), "Server Failure");
        assert_eq!(reason_phrase(699), "Global Failure");
        for code in 100..700 {
            assert_ne!(reason_phrase(code), "Error", "{code}");
        }
    }
}
