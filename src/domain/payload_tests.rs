use super::*;
use serde_json::json;

const JAKARTA: Tz = chrono_tz::Asia::Jakarta;

fn fixture(name: &str) -> Value {
    let text = match name {
        "incoming-text" => include_str!("../../tests/fixtures/3dolphins/incoming-text.json"),
        "incoming-sticker" => include_str!("../../tests/fixtures/3dolphins/incoming-sticker.json"),
        "incoming-location" => {
            include_str!("../../tests/fixtures/3dolphins/incoming-location.json")
        }
        "incoming-image" => include_str!("../../tests/fixtures/3dolphins/incoming-image.json"),
        "incoming-minimal-keys" => {
            include_str!("../../tests/fixtures/3dolphins/incoming-minimal-keys.json")
        }
        "outgoing-text" => include_str!("../../tests/fixtures/3dolphins/outgoing-text.json"),
        "outgoing-file" => include_str!("../../tests/fixtures/3dolphins/outgoing-file.json"),
        "command-close" => include_str!("../../tests/fixtures/3dolphins/command-close.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("fixtures are valid JSON")
}

fn lenient_incoming(body: Value) -> MessageEvent {
    read_message(body, MessageShape::Incoming, Strictness::Lenient, JAKARTA).expect("attributable")
}

fn strict_outgoing(body: Value) -> Result<MessageEvent, Refusal> {
    read_message(body, MessageShape::Outgoing, Strictness::Strict, JAKARTA)
}

fn problem_fields(refusal: Refusal) -> Vec<String> {
    match refusal {
        Refusal::Invalid(problems) => problems.into_iter().map(|p| p.field).collect(),
        Refusal::UnsupportedCommand(problems) => {
            problems.into_iter().map(|p| format!("unsupported:{}", p.field)).collect()
        }
        Refusal::NotAnObject => vec!["<not an object>".into()],
    }
}

#[test]
fn every_incoming_fixture_is_read_without_warnings() {
    for name in ["incoming-text", "incoming-sticker", "incoming-location", "incoming-image", "incoming-minimal-keys"] {
        let event = lenient_incoming(fixture(name));
        assert_eq!(event.warnings, vec![], "{name}");
        assert_eq!(event.ticket_number, "7e1d2c3b4a5f60718293a4b5c6d7e8f9");
        assert!(event.created_date.is_some(), "{name}");
    }
}

#[test]
fn a_valid_event_is_forwarded_exactly_as_received() {
    let original = fixture("incoming-text");
    let event = lenient_incoming(original.clone());
    assert_eq!(Value::Object(event.body), original);
}

#[test]
fn a_sticker_becomes_the_text_sticker_keeping_its_media_link() {
    let event = lenient_incoming(fixture("incoming-sticker"));
    assert_eq!(event.message_type.as_deref(), Some("text"));
    assert_eq!(event.message.as_deref(), Some("Sticker"));
    assert_eq!(event.body["messageType"], "text");
    assert_eq!(event.body["message"], "Sticker");
    assert_eq!(event.body["mediaLink"], fixture("incoming-sticker")["mediaLink"]);
}

#[test]
fn channel_and_message_type_are_lower_cased_and_nothing_else_changes() {
    let mut body = fixture("incoming-location");
    body["channel"] = json!("WhatsApp");
    body["messageType"] = json!("Location");
    body["customerName"] = json!("DEWI Lestari");
    body["extra"] = json!({"Nested": 1});
    let event = lenient_incoming(body.clone());
    assert_eq!(event.warnings, vec![]);
    assert_eq!(event.body["channel"], "whatsapp");
    assert_eq!(event.body["messageType"], "location");
    assert_eq!(event.body["customerName"], "DEWI Lestari");
    assert_eq!(event.body["extra"], json!({"Nested": 1}));
    assert_eq!(event.body["createdDate"], body["createdDate"], "the original date string is kept");
}

#[test]
fn only_a_missing_or_empty_owner_or_ticket_number_is_refused_on_the_lenient_side() {
    for (field, value) in [
        ("owner", None),
        ("owner", Some(json!(""))),
        ("ticketNumber", Some(json!(42))),
        ("ticketNumber", Some(Value::Null)),
    ] {
        let mut body = fixture("incoming-text");
        match value {
            None => {
                body.as_object_mut().expect("object").remove(field);
            }
            Some(v) => body[field] = v,
        }
        let refusal = read_message(body, MessageShape::Incoming, Strictness::Lenient, JAKARTA).unwrap_err();
        assert_eq!(problem_fields(refusal), vec![field.to_string()]);
    }
    assert_eq!(
        read_message(json!([1, 2]), MessageShape::Incoming, Strictness::Lenient, JAKARTA),
        Err(Refusal::NotAnObject)
    );
}

#[test]
fn every_other_defect_is_accepted_and_flagged_on_the_lenient_side() {
    let documented =
        ["channel", "accountId", "contactId", "messageType", "message", "mediaLink", "customerName", "createdDate"];
    for field in documented {
        for (label, defect) in [("missing", None), ("null", Some(Value::Null)), ("number", Some(json!(12345)))] {
            let mut body = fixture("incoming-text");
            match defect.clone() {
                None => {
                    body.as_object_mut().expect("object").remove(field);
                }
                Some(v) => body[field] = v,
            }
            let event = lenient_incoming(body);
            let flagged: Vec<&str> = event.warnings.iter().map(|w| w.field.as_str()).collect();
            assert!(flagged.contains(&field), "{field} {label}: warnings {flagged:?}");
            if label == "number" && field != "createdDate" && field != "messageType" {
                assert_eq!(event.warnings.len(), 1, "{field}: {:?}", event.warnings);
            }
        }
    }
}

#[test]
fn numbers_are_kept_as_their_text() {
    let mut body = fixture("incoming-text");
    body["accountId"] = json!(6281234500001u64);
    let event = lenient_incoming(body);
    assert_eq!(event.account_id.as_deref(), Some("6281234500001"));
    let mut body = fixture("incoming-text");
    body["channel"] = json!(7);
    assert_eq!(lenient_incoming(body).body["channel"], json!(7), "a mistyped channel is not rewritten");
    assert_eq!(event.body["accountId"], json!(6281234500001u64), "forwarded as received");
}

#[test]
fn rule_breaks_are_flagged_with_the_field_that_broke_them() {
    let cases = [
        (json!({"messageType": "hologram"}), "messageType"),
        (json!({"messageType": "location", "message": "north"}), "message"),
        (json!({"messageType": "location", "message": "91.0,10"}), "message"),
        (json!({"messageType": "location", "message": "10,-181"}), "message"),
        (json!({"messageType": "image", "mediaLink": "ftp://x/y.png"}), "mediaLink"),
        (json!({"messageType": "video", "mediaLink": ""}), "mediaLink"),
        (json!({"createdDate": "24/11/2026"}), "createdDate"),
        (json!({"message": "a\u{0}b"}), "message"),
    ];
    for (patch, field) in cases {
        let mut body = fixture("incoming-text");
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let event = lenient_incoming(body);
        let flagged: Vec<&str> = event.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(flagged, vec![field], "{patch}");
    }
}

#[test]
fn an_unknown_message_type_is_kept_lower_cased() {
    let mut body = fixture("incoming-text");
    body["messageType"] = json!("Carousel");
    let event = lenient_incoming(body);
    assert_eq!(event.message_type.as_deref(), Some("carousel"));
    assert_eq!(event.body["messageType"], "carousel");
}

#[test]
fn nul_characters_are_removed_everywhere_including_nested_values_and_keys() {
    let mut body = fixture("incoming-text");
    body["message"] = json!("ha\u{0}lo");
    body["extra"] = json!({"k\u{0}ey": ["x\u{0}y"]});
    let event = lenient_incoming(body);
    assert_eq!(event.message.as_deref(), Some("halo"));
    assert_eq!(event.body["extra"], json!({"key": ["xy"]}));
    assert!(!serde_json::to_string(&event.body).expect("serialisable").contains("\\u0000"));
}

#[test]
fn the_strict_side_accepts_the_outgoing_fixtures() {
    for name in ["outgoing-text", "outgoing-file"] {
        let event = strict_outgoing(fixture(name)).expect(name);
        assert_eq!(event.warnings, vec![]);
    }
}

#[test]
fn the_strict_side_lists_every_problem() {
    let body = json!({
        "ticketNumber": "T1", "owner": "o", "channel": "", "messageType": "image",
        "message": "", "mediaLink": "not a url", "customerName": null, "createdDate": "soon"
    });
    let fields = problem_fields(strict_outgoing(body).unwrap_err());
    assert_eq!(fields, vec!["channel", "customerName", "mediaLink", "createdDate"]);
}

#[test]
fn on_the_strict_side_every_field_missing_empty_null_or_mistyped_is_named() {
    for field in ["channel", "messageType", "message", "mediaLink", "customerName"] {
        for (label, defect) in
            [("missing", None), ("null", Some(Value::Null)), ("number", Some(json!(7))), ("empty", Some(json!("")))]
        {
            if label == "empty" && field == "mediaLink" {
                continue; // empty mediaLink is valid on a text message
            }
            let mut body = fixture("outgoing-text");
            match defect {
                None => {
                    body.as_object_mut().expect("object").remove(field);
                }
                Some(v) => body[field] = v,
            }
            let fields = problem_fields(strict_outgoing(body).unwrap_err());
            assert!(fields.contains(&field.to_string()), "{field} {label}: {fields:?}");
        }
    }
}

#[test]
fn an_empty_message_is_allowed_only_for_media_types() {
    let mut body = fixture("outgoing-file");
    body["message"] = json!("");
    assert!(strict_outgoing(body).is_ok());
    let mut body = fixture("outgoing-text");
    body["message"] = json!("");
    assert_eq!(problem_fields(strict_outgoing(body).unwrap_err()), vec!["message"]);
}

#[test]
fn a_command_is_read_case_insensitively() {
    let mut body = fixture("command-close");
    body["event"] = json!("CLOSE");
    let command = read_command(body, Strictness::Strict).expect("valid");
    assert!(command.is_close());
    assert_eq!(command.body["event"], "close");
}

#[test]
fn an_unsupported_command_is_refused_strictly_and_flagged_leniently() {
    let mut body = fixture("command-close");
    body["event"] = json!("escalate");
    assert_eq!(problem_fields(read_command(body.clone(), Strictness::Strict).unwrap_err()), vec!["unsupported:event"]);
    let command = read_command(body, Strictness::Lenient).expect("accepted");
    assert!(!command.is_close());
    assert_eq!(command.warnings.len(), 1);
}

#[test]
fn location_and_url_rules() {
    assert!(is_location("-6.200000,106.816666"));
    assert!(is_location("90, -180"));
    assert!(!is_location("-6.2"));
    assert!(!is_location("NaN,1"));
    assert!(is_http_url("https://media.example.com/a.jpg"));
    assert!(!is_http_url("javascript:alert(1)"));
    assert!(!is_http_url("/relative.png"));
}

#[test]
fn an_absurdly_long_ticket_number_is_refused_since_it_cannot_be_indexed() {
    let mut body = fixture("incoming-text");
    body["ticketNumber"] = json!("T".repeat(MAX_TICKET_NUMBER_LEN + 1));
    let refusal = read_message(body, MessageShape::Incoming, Strictness::Lenient, JAKARTA).unwrap_err();
    assert_eq!(problem_fields(refusal), vec!["ticketNumber"]);
}

#[test]
fn an_absurdly_long_contact_id_is_flagged_and_not_indexed() {
    let mut body = fixture("incoming-text");
    body["contactId"] = json!("c".repeat(MAX_TICKET_NUMBER_LEN + 1));
    let event = lenient_incoming(body);
    assert_eq!(event.contact_id, None);
    assert_eq!(event.warnings[0].field, "contactId");
}
