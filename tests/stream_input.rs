//! Property tests over what a streaming client controls (no dockerd
//! needed): SPDY frames (any bytes into the decoder never panic; frames
//! round-trip through one session's compression contexts), WebSocket
//! channel messages, port-forward port queries and the channel numbering
//! of ports, which must be refused rather than wrapped.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use dockercri::streaming::portforward::{channels, max_ports, query_ports, websocket_ports};
use dockercri::streaming::remotecommand::{self as rc, parse_sizes};
use dockercri::streaming::spdy::{Decoder, Encoder, Frame, Headers};
use dockercri::streaming::websocket::{self, MAX_BASE64_CHANNEL};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Cases per property; the whole file runs in a few seconds.
const CASES: u32 = 2000;

/// Decodes every whole frame of `wire`, fed in `chunk`-byte pieces as a
/// socket would; stops at the first error, as the session does.
fn decode_all(dec: &mut Decoder, wire: &[u8], chunk: usize) -> Result<Vec<Frame>, String> {
    let mut src = BytesMut::new();
    let mut frames = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        src.extend_from_slice(piece);
        loop {
            match dec.decode(&mut src) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(frames)
}

/// Header blocks as decoding gives them back: lowercase names, once each
/// (repeated names are NUL-joined on the wire), values without NUL.
fn headers() -> impl Strategy<Value = Headers> {
    btree_map("[a-z][a-z0-9-]{0,15}", "[ -~]{0,40}", 0..6)
        .prop_map(|m: BTreeMap<String, String>| m.into_iter().collect())
}

const ID: u32 = 0x7fff_ffff;

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (0..=ID, 0..=ID, 0u8..8, any::<u8>(), headers()).prop_map(
            |(id, assoc, priority, flags, headers)| Frame::SynStream {
                id,
                assoc,
                priority,
                flags,
                headers
            }
        ),
        (0..=ID, any::<u8>(), headers()).prop_map(|(id, flags, headers)| Frame::SynReply {
            id,
            flags,
            headers
        }),
        (0..=ID, any::<u8>(), headers()).prop_map(|(id, flags, headers)| Frame::Headers {
            id,
            flags,
            headers
        }),
        (0..=ID, any::<u32>()).prop_map(|(id, status)| Frame::RstStream { id, status }),
        (
            any::<u8>(),
            vec((any::<u8>(), 0..=0xff_ffffu32, any::<u32>()), 0..4)
        )
            .prop_map(|(flags, entries)| Frame::Settings { flags, entries }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (0..=ID, any::<u32>()).prop_map(|(last_good, status)| Frame::GoAway { last_good, status }),
        (0..=ID, 0..=ID).prop_map(|(id, delta)| Frame::WindowUpdate { id, delta }),
        (0..=ID, any::<u8>(), vec(any::<u8>(), 0..2048)).prop_map(|(id, flags, data)| {
            Frame::Data {
                id,
                flags,
                data: Bytes::from(data),
            }
        }),
        prop_oneof![Just(0u16), Just(5u16), 10..=u16::MAX].prop_map(|kind| Frame::Unknown { kind }),
    ]
}

/// A query string of port-ish parameters, valid and not.
fn port_query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("port".to_string()),
        Just("ports".to_string()),
        Just("other".to_string()),
        "[a-z]{0,5}",
    ];
    let value = prop_oneof![
        "[0-9]{1,6}",
        "[0-9]{1,5}(,[0-9]{0,5}){0,3}",
        "[0-9]{1,5}%2[Cc][0-9]{1,5}",
        "[+-]?[0-9 ]{0,6}",
        ".{0,8}",
    ];
    vec((key, value, any::<bool>()), 0..12).prop_map(|params| {
        params
            .into_iter()
            .map(|(k, v, with_eq)| {
                if with_eq {
                    format!("{k}={v}")
                } else {
                    k.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        // Integration tests have no lib.rs to store regressions beside;
        // a failure prints its seed and the minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_into_the_spdy_decoder_never_panic(
        wire in vec(any::<u8>(), 0..4096),
        chunk in 1usize..64,
    ) {
        let _ = decode_all(&mut Decoder::new(), &wire, chunk);
    }

    #[test]
    fn mutated_spdy_sessions_never_panic(
        frames in vec(frame(), 1..8),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        chunk in 1usize..64,
    ) {
        let mut enc = Encoder::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let _ = decode_all(&mut Decoder::new(), &wire, chunk);
    }

    #[test]
    fn spdy_frames_round_trip_through_one_session(
        frames in vec(frame(), 1..16),
        chunk in 1usize..512,
    ) {
        let mut enc = Encoder::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let got = decode_all(&mut Decoder::new(), &wire, chunk).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn websocket_messages_round_trip_on_every_channel_the_framing_numbers(
        channel in any::<u8>(),
        data in vec(any::<u8>(), 0..512),
        base64 in any::<bool>(),
    ) {
        let channel = if base64 { channel % (MAX_BASE64_CHANNEL + 1) } else { channel };
        let msg = websocket::encode(base64, channel, &data);
        if let Message::Text(t) = &msg {
            prop_assert!(t.as_bytes()[0].is_ascii(), "one ASCII channel digit");
        }
        prop_assert_eq!(websocket::decode(base64, &msg), Some((channel, data)));
    }

    #[test]
    fn any_websocket_message_decodes_or_is_ignored(
        bytes in vec(any::<u8>(), 0..256),
        text in ".{0,64}",
        base64 in any::<bool>(),
    ) {
        let _ = websocket::decode(base64, &Message::binary(bytes));
        if let Some((channel, _)) = websocket::decode(base64, &Message::text(text)) {
            prop_assert!(!base64 || channel <= 0xff - b'0');
        }
    }

    #[test]
    fn port_queries_are_refused_or_name_valid_ports(query in port_query()) {
        if let Ok(Some(ports)) = query_ports(&query) {
            prop_assert!(ports.iter().all(|p| *p > 0), "{ports:?}");
            for p in &ports {
                prop_assert!(query.contains(&p.to_string()), "{p} not in {query}");
            }
        }
        for protocol in [rc::V4, rc::BASE64, ""] {
            let base64 = websocket::is_base64(protocol);
            if let Ok(ports) = websocket_ports(&query, &[], protocol) {
                prop_assert!(!ports.is_empty() && ports.len() <= max_ports(base64));
                for i in 0..ports.len() {
                    let numbered = channels(i, base64).map(|(d, e)| (usize::from(d), usize::from(e)));
                    prop_assert_eq!(numbered, Some((2 * i, 2 * i + 1)));
                }
            }
        }
    }

    #[test]
    fn requested_ports_are_refused_or_numbered(
        ports in vec(any::<i32>(), 0..300),
        base64 in any::<bool>(),
    ) {
        let protocol = if base64 { rc::BASE64 } else { rc::V4 };
        match websocket_ports("", &ports, protocol) {
            Ok(got) => {
                prop_assert!(got.len() <= max_ports(base64));
                prop_assert!(got.iter().zip(&ports).all(|(g, p)| i32::from(*g) == *p && *g > 0));
            }
            Err(why) => prop_assert!(!why.is_empty()),
        }
    }

    #[test]
    fn channel_numbering_never_wraps(index in any::<usize>(), small in 0usize..300, base64 in any::<bool>()) {
        for i in [index, small] {
            let max = usize::from(websocket::max_channel(base64));
            match channels(i, base64) {
                Some((data, error)) => {
                    prop_assert_eq!(usize::from(data), 2 * i);
                    prop_assert_eq!(usize::from(error), 2 * i + 1);
                    prop_assert!(i < max_ports(base64));
                }
                None => prop_assert!(i.checked_mul(2).is_none_or(|d| d + 1 > max)),
            }
        }
    }

    #[test]
    fn any_resize_bytes_parse_or_are_dropped_within_bounds(
        chunks in vec(vec(any::<u8>(), 0..2048), 0..8),
    ) {
        let mut buf = Vec::new();
        for c in chunks {
            buf.extend_from_slice(&c);
            let _ = parse_sizes(&mut buf);
            prop_assert!(buf.len() <= rc::MAX_PARTIAL_SIZE);
        }
    }
}
