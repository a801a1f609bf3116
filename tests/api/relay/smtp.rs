//! SMTP delivery of notifications against a minimal SMTP server: what is sent, and refusals
//! told from outages.

use boxoffice::workers::notify::{Email, MailError, Notifier};
use secrecy::SecretString;
use std::sync::{Arc, Mutex};

/// Just enough of an SMTP server for lettre: accepts everything except
/// recipients at `gone@`, and keeps each message's DATA.
fn fake_smtp_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&messages);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let kept = Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut lines = BufReader::new(stream).lines();
                let _ = out.write_all(b"220 localhost ESMTP test\r\n");
                while let Some(Ok(line)) = lines.next() {
                    let command = line.to_ascii_uppercase();
                    let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
                        b"250 localhost\r\n"
                    } else if command.starts_with("RCPT TO") && command.contains("GONE@") {
                        b"550 5.1.1 no such user\r\n"
                    } else if command == "DATA" {
                        let _ = out.write_all(b"354 go ahead\r\n");
                        let mut data = String::new();
                        for line in lines.by_ref() {
                            let Ok(line) = line else { return };
                            if line == "." {
                                break;
                            }
                            data.push_str(&line);
                            data.push('\n');
                        }
                        kept.lock().unwrap().push(data);
                        b"250 queued\r\n"
                    } else if command == "QUIT" {
                        let _ = out.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if out.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, messages)
}

#[tokio::test]
async fn smtp_delivery_sends_real_smtp_and_tells_refusals_from_outages() {
    let (port, messages) = fake_smtp_server();
    let url = SecretString::from(format!("smtp://127.0.0.1:{port}"));
    let notifier = Notifier::from_settings(Some(&url), Some("boxoffice <tickets@example.com>"), None).unwrap();
    let email = |to: &str| Email {
        outbox_id: 42,
        to: to.into(),
        to_name: "Carol".into(),
        subject: "Your tickets for Rock Night".into(),
        body: "Section A, seat A-1 — 5000 JPY\n".into(),
    };

    notifier.probe().await.expect("the server answers");
    notifier.deliver(&email("carol@example.com")).await.expect("sent");
    let sent = messages.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let headers = sent[0].split("\n\n").next().unwrap();
    assert!(headers.contains("Subject: Your tickets for Rock Night"), "{headers}");
    assert!(headers.contains("Message-ID: <outbox-42@example.com>"), "{headers}");
    assert!(headers.contains("From: boxoffice <tickets@example.com>"), "{headers}");
    assert!(headers.contains("carol@example.com"), "{headers}");

    let refused = notifier.deliver(&email("gone@example.com")).await;
    assert!(matches!(refused, Err(MailError::Rejected(_))), "{refused:?}");
    let bad_address = notifier.deliver(&email("not an address")).await;
    assert!(matches!(bad_address, Err(MailError::Rejected(_))), "{bad_address:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = SecretString::from(format!("smtp://127.0.0.1:{closed}"));
    let down = Notifier::from_settings(Some(&url), Some("tickets@example.com"), None).unwrap();
    assert!(matches!(down.probe().await, Err(MailError::Unavailable(_))));
    let outage = down.deliver(&email("carol@example.com")).await;
    assert!(matches!(outage, Err(MailError::Unavailable(_))), "{outage:?}");
}
