//! SNS parsing and the canonical string, from the examples of AWS's documentation; the
//! signatures themselves are checked against published messages in `tests/sns.rs`.

use super::*;

fn notification(subject: Option<&str>) -> String {
    let subject = subject.map_or(String::new(), |s| {
        format!(r#""Subject":{},"#, Value::from(s))
    });
    format!(
        r#"{{"Type":"Notification","MessageId":"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324","TopicArn":"arn:aws:sns:us-west-2:123456789012:MyTopic",{subject}"Message":"Hello world!\nline two","Timestamp":"2012-05-02T00:54:06.655Z","SignatureVersion":"1","Signature":"AAAA","SigningCertURL":"https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem","UnsubscribeURL":"https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe"}}"#
    )
}

#[test]
fn a_notification_signs_its_subject_only_when_it_has_one() {
    let with = SnsMessage::parse(notification(Some("My First Message")).as_bytes()).expect("parse");
    assert_eq!(with.kind, SnsKind::Notification);
    assert_eq!(
        with.canonical(),
        "Message\nHello world!\nline two\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
         Subject\nMy First Message\nTimestamp\n2012-05-02T00:54:06.655Z\n\
         TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n"
    );
    let without = SnsMessage::parse(notification(None).as_bytes()).expect("parse");
    assert!(!without.canonical().contains("Subject"));
    assert_eq!(without.subscribe_url, None);
}

#[test]
fn a_confirmation_signs_its_token_and_subscribe_url() {
    let body = r#"{"Type":"SubscriptionConfirmation","MessageId":"165545c9","Token":"2336412f","TopicArn":"arn:aws:sns:us-west-2:123456789012:MyTopic","Message":"You have chosen to subscribe","SubscribeURL":"https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f","Timestamp":"2012-04-26T20:45:04.751Z","SignatureVersion":"2","Signature":"AAAA","SigningCertURL":"https://sns.us-west-2.amazonaws.com/x.pem"}"#;
    let message = SnsMessage::parse(body.as_bytes()).expect("parse");
    assert_eq!(message.kind, SnsKind::SubscriptionConfirmation);
    assert!(message.sha256);
    assert_eq!(
        message.canonical(),
        "Message\nYou have chosen to subscribe\nMessageId\n165545c9\n\
         SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f\n\
         Timestamp\n2012-04-26T20:45:04.751Z\nToken\n2336412f\n\
         TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nSubscriptionConfirmation\n"
    );
    assert_eq!(
        message.subscribe_url.as_deref(),
        Some("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f")
    );
}

#[test]
fn malformed_messages_are_refused_with_the_field_named() {
    let refused = |body: &str| SnsMessage::parse(body.as_bytes()).expect_err(body);
    assert_eq!(refused("[1]").code(), "malformed_message");
    assert_eq!(refused("not json").code(), "malformed_message");
    let no_token = notification(None).replace(
        r#""Type":"Notification""#,
        r#""Type":"SubscriptionConfirmation""#,
    );
    assert_eq!(
        refused(&no_token),
        VerifyError::MissingField("SubscribeURL".into())
    );
    let v3 = notification(None).replace(r#""SignatureVersion":"1""#, r#""SignatureVersion":"3""#);
    assert_eq!(refused(&v3).code(), "malformed_message");
    let numeric =
        notification(None).replace(r#""Message":"Hello world!\nline two""#, r#""Message":5"#);
    assert_eq!(refused(&numeric).code(), "malformed_message");
    let other = notification(None).replace("Notification", "Other");
    assert_eq!(refused(&other).code(), "malformed_message");
    let unsigned = notification(None).replace(r#""Signature":"AAAA","#, "");
    assert_eq!(
        refused(&unsigned),
        VerifyError::MissingField("Signature".into())
    );
}

#[test]
fn a_certificate_must_be_pem() {
    assert_eq!(
        certificate_der(b"hello").expect_err("not pem").code(),
        "certificate_invalid"
    );
}
