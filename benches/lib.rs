//! Shared fixtures for the benchmarks (the messages every parser is fed): an INVITE with SDP, its
//! 200 OK, a presence NOTIFY, and [`stream`] to lay them back to back as on a TLS connection.

/// A ~1 KB INVITE as it reaches the edge after two proxies: three Vias, two Record-Routes, SDP offer.
pub const INVITE: &[u8] = concat!(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n",
    "Via: SIP/2.0/TLS edge1.atlanta.example.com:5061;branch=z9hG4bK2d4790.1;received=192.0.2.10\r\n",
    "Via: SIP/2.0/TLS proxy.atlanta.example.com:5061;branch=z9hG4bK74bf9.1\r\n",
    "Via: SIP/2.0/TLS client.atlanta.example.com:5061;branch=z9hG4bK74bf9;received=192.0.2.101\r\n",
    "Max-Forwards: 68\r\n",
    "Record-Route: <sip:edge1.atlanta.example.com;transport=tls;lr>\r\n",
    "Record-Route: <sip:proxy.atlanta.example.com;transport=tls;lr>\r\n",
    "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n",
    "To: \"Bob\" <sip:bob@biloxi.example.com>\r\n",
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n",
    "CSeq: 31862 INVITE\r\n",
    "Contact: <sip:alice@client.atlanta.example.com:5061;transport=tls>\r\n",
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n",
    "Supported: replaces, timer, gruu, outbound\r\n",
    "User-Agent: Atlanta-Softphone/4.2.1 (Linux x86_64)\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 348\r\n",
    "\r\n",
    "v=0\r\n",
    "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n",
    "s=-\r\n",
    "c=IN IP4 192.0.2.101\r\n",
    "t=0 0\r\n",
    "m=audio 49172 RTP/AVP 0 8 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n",
)
.as_bytes();

/// The 200 OK to [`INVITE`]: same Vias and Record-Routes, To tag added, no body.
pub const OK_200: &[u8] = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/TLS edge1.atlanta.example.com:5061;branch=z9hG4bK2d4790.1;received=192.0.2.10\r\n",
    "Via: SIP/2.0/TLS proxy.atlanta.example.com:5061;branch=z9hG4bK74bf9.1\r\n",
    "Via: SIP/2.0/TLS client.atlanta.example.com:5061;branch=z9hG4bK74bf9;received=192.0.2.101\r\n",
    "Record-Route: <sip:edge1.atlanta.example.com;transport=tls;lr>\r\n",
    "Record-Route: <sip:proxy.atlanta.example.com;transport=tls;lr>\r\n",
    "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n",
    "To: \"Bob\" <sip:bob@biloxi.example.com>;tag=8321234356\r\n",
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n",
    "CSeq: 31862 INVITE\r\n",
    "Contact: <sip:bob@client.biloxi.example.com:5061;transport=tls>\r\n",
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n",
    "Supported: replaces, timer\r\n",
    "Server: Biloxi-PBX/7.0\r\n",
    "Content-Length: 0\r\n",
    "\r\n",
)
.as_bytes();

/// A presence NOTIFY (RFC 3856) with a PIDF body, as a presence server sends it towards the edge.
pub const NOTIFY: &[u8] = concat!(
    "NOTIFY sip:alice@client.atlanta.example.com:5061;transport=tls SIP/2.0\r\n",
    "Via: SIP/2.0/TLS edge1.biloxi.example.com:5061;branch=z9hG4bK4b43c2ff8.1\r\n",
    "Via: SIP/2.0/TLS pres.biloxi.example.com:5061;branch=z9hG4bK4b43c2ff8;received=198.51.100.7\r\n",
    "Max-Forwards: 69\r\n",
    "Route: <sip:edge1.atlanta.example.com;transport=tls;lr>\r\n",
    "From: <sip:bob@biloxi.example.com>;tag=ffd2\r\n",
    "To: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=xfg9\r\n",
    "Call-ID: 2010128@client.atlanta.example.com\r\n",
    "CSeq: 8775 NOTIFY\r\n",
    "Contact: <sip:pres.biloxi.example.com:5061;transport=tls>\r\n",
    "Event: presence\r\n",
    "Subscription-State: active;expires=3600\r\n",
    "Allow-Events: presence, dialog\r\n",
    "User-Agent: Biloxi-Presence/2.3\r\n",
    "Content-Type: application/pidf+xml\r\n",
    "Content-Length: 423\r\n",
    "\r\n",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n",
    "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n",
    "    entity=\"sip:bob@biloxi.example.com\">\r\n",
    "  <tuple id=\"a8098a.672364762364\">\r\n",
    "    <status>\r\n",
    "      <basic>open</basic>\r\n",
    "    </status>\r\n",
    "    <contact priority=\"0.8\">sip:bob@client.biloxi.example.com</contact>\r\n",
    "    <note xml:lang=\"en\">In a meeting until 3pm</note>\r\n",
    "    <timestamp>2026-11-22T04:20:00Z</timestamp>\r\n",
    "  </tuple>\r\n",
    "</presence>\r\n",
)
.as_bytes();

/// The three messages repeated back to back (INVITE, 200 OK, NOTIFY, ...) until at least `min_len`
/// octets, ending on a message boundary.
pub fn stream(min_len: usize) -> Vec<u8> {
    let round = INVITE.len() + OK_200.len() + NOTIFY.len();
    let mut out = Vec::with_capacity(min_len + round);
    while out.len() < min_len {
        for msg in [INVITE, OK_200, NOTIFY] {
            out.extend_from_slice(msg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content-Length must match the body exactly, or the framing bench would cut wrong frames.
    #[test]
    fn content_length_matches_body() {
        for msg in [INVITE, OK_200, NOTIFY] {
            let head_end = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = std::str::from_utf8(&msg[..head_end]).unwrap();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_eq!(declared, msg.len() - head_end, "{head}");
        }
    }

    #[test]
    fn stream_is_whole_rounds() {
        let round = INVITE.len() + OK_200.len() + NOTIFY.len();
        let s = stream(1 << 20);
        assert!(s.len() >= 1 << 20);
        assert_eq!(s.len() % round, 0);
    }
}
