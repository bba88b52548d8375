//! Every sender against a local mock provider: the exact requests each
//! provider documents, and what happens on a timeout, `429` with
//! `Retry-After`, `500`, `400` and a dropped connection.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use referral_core::sms::OtpSms;
use referral_core::{OtpCode, OtpLength, SmsError, SmsSender, TestClock};
use referral_sms::{
    MessageTemplate, ProviderError, RetryPolicy, SmsRuSender, TwilioCredentials, TwilioSender,
    WebhookSender, webhook_signature,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tw-auth-token-XYZ";
const KEY_SID: &str = "SK00000000000000000000000000000001";
const KEY_SECRET: &str = "tw-key-secret-XYZ";
const API_ID: &str = "SMSRU-API-ID-XYZ";
const SECRET: &[u8] = b"webhook-secret-XYZ";
const PHONE: &str = "+79991234567";
const CODE: &str = "4821";

fn sms() -> OtpSms {
    OtpSms {
        to: PHONE.parse().unwrap(),
        code: OtpCode::parse(CODE, OtpLength::default()).unwrap(),
        expires_in: Duration::from_secs(300),
    }
}

/// Fast retries; 3 attempts; 300 ms per request; 4 s in all.
fn policy() -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.request_timeout = Duration::from_millis(300);
    p.connect_timeout = Duration::from_millis(300);
    p.budget = Duration::from_secs(4);
    p.initial_backoff = Duration::from_millis(10);
    p.max_backoff = Duration::from_millis(50);
    p
}

fn form(request: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

fn twilio(server: &MockServer) -> TwilioSender {
    TwilioSender::builder(
        TwilioCredentials::auth_token(SID, TOKEN).unwrap(),
        "+15005550006".parse().unwrap(),
    )
    .base_url(server.uri())
    .retry_policy(policy())
    .build()
    .unwrap()
}

fn smsru(server: &MockServer) -> SmsRuSender {
    SmsRuSender::builder(API_ID)
        .unwrap()
        .base_url(server.uri())
        .retry_policy(policy())
        .build()
        .unwrap()
}

fn webhook(url: &str) -> WebhookSender {
    WebhookSender::builder(url, SECRET)
        .unwrap()
        .retry_policy(policy())
        .build()
        .unwrap()
}

fn twilio_path() -> String {
    format!("/2010-04-01/Accounts/{SID}/Messages.json")
}

fn provider_error(e: &SmsError) -> &ProviderError {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<ProviderError>())
        .unwrap_or_else(|| panic!("no ProviderError in {e:?}"))
}

const SMSRU_OK: &str = r#"{"status":"OK","status_code":100,"sms":{"79991234567":{"status":"OK","status_code":100,"sms_id":"000000-10000000"}},"balance":4122.56}"#;

// ---------------------------------------------------------------- Twilio

#[tokio::test]
async fn twilio_sends_the_documented_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(twilio_path()))
        .and(basic_auth(SID, TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(
            ResponseTemplate::new(201).set_body_string(r#"{"sid":"SM1","status":"queued"}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    twilio(&server).send(&sms()).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let fields = form(&requests[0]);
    assert_eq!(
        fields,
        BTreeMap::from([
            ("To".to_owned(), PHONE.to_owned()),
            ("From".to_owned(), "+15005550006".to_owned()),
            ("Body".to_owned(), sms().text()),
        ])
    );
}

#[tokio::test]
async fn twilio_with_an_api_key_a_messaging_service_and_a_template() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(twilio_path()))
        .and(basic_auth(KEY_SID, KEY_SECRET))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let sender = TwilioSender::builder(
        TwilioCredentials::api_key(SID, KEY_SID, KEY_SECRET).unwrap(),
        "MG0123456789abcdef0123456789abcdef".parse().unwrap(),
    )
    .base_url(server.uri())
    .template(MessageTemplate::parse("Код {code}, {minutes} мин").unwrap())
    .build()
    .unwrap();
    sender.send(&sms()).await.unwrap();
    let fields = form(&server.received_requests().await.unwrap()[0]);
    assert_eq!(
        fields,
        BTreeMap::from([
            ("To".to_owned(), PHONE.to_owned()),
            (
                "MessagingServiceSid".to_owned(),
                "MG0123456789abcdef0123456789abcdef".to_owned()
            ),
            ("Body".to_owned(), format!("Код {CODE}, 5 мин")),
        ])
    );
}

#[tokio::test]
async fn twilio_400_is_rejected_without_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string(
            r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let e = twilio(&server).send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Rejected(_)), "{e:?}");
    let p = provider_error(&e);
    assert_eq!(p.http_status(), Some(400));
    assert_eq!(p.provider_code(), Some("21211"));
    assert!(!p.may_have_been_accepted());
}

#[tokio::test]
async fn twilio_401_is_misconfigured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string(r#"{"code":20003,"message":"Authenticate","status":401}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    let e = twilio(&server).send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Misconfigured(_)), "{e:?}");
    assert!(e.is_permanent());
}

#[tokio::test]
async fn twilio_429_waits_out_retry_after_then_sends() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    twilio(&server).send(&sms()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn twilio_retry_after_past_the_budget_fails_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "60"))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let e = twilio(&server).send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(provider_error(&e).http_status(), Some(429));
}

#[tokio::test]
async fn twilio_503_is_retried_up_to_the_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let e = twilio(&server).send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn twilio_500_is_not_retried_it_may_have_been_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let e = twilio(&server).send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert!(provider_error(&e).may_have_been_accepted());
}

#[tokio::test]
async fn twilio_timeout_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let e = twilio(&server).send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::TimedOut), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A server that reads each request whole, closes the first `drop_first`
/// connections without answering, and answers the rest with `answer`.
/// Returns its URL and the number of requests it read.
async fn dropping_server(drop_first: usize, answer: &'static str) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(0usize));
    let count = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            // Read the head and the body it announces.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = socket.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let n = {
                let mut c = count.lock().unwrap();
                *c += 1;
                *c
            };
            if n > drop_first {
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
            drop(socket);
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn twilio_dropped_connection_after_the_request_is_not_retried() {
    let (url, seen) = dropping_server(1, "{}").await;
    let sender = TwilioSender::builder(
        TwilioCredentials::auth_token(SID, TOKEN).unwrap(),
        "+15005550006".parse().unwrap(),
    )
    .base_url(url)
    .retry_policy(policy())
    .build()
    .unwrap();
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert!(provider_error(&e).may_have_been_accepted());
    assert_eq!(
        *seen.lock().unwrap(),
        1,
        "a second request could send a second SMS"
    );
}

#[tokio::test]
async fn refused_connections_are_retried_then_unavailable() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sender = TwilioSender::builder(
        TwilioCredentials::auth_token(SID, TOKEN).unwrap(),
        "+15005550006".parse().unwrap(),
    )
    .base_url(url)
    .retry_policy(policy())
    .build()
    .unwrap();
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    assert!(!provider_error(&e).may_have_been_accepted());
}

// ---------------------------------------------------------------- SMS.ru

#[tokio::test]
async fn smsru_sends_the_documented_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/send"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_string(SMSRU_OK))
        .expect(1)
        .mount(&server)
        .await;
    smsru(&server).send(&sms()).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests[0].url.query(),
        None,
        "the api_id must not be in the URL"
    );
    assert_eq!(
        form(&requests[0]),
        BTreeMap::from([
            ("api_id".to_owned(), API_ID.to_owned()),
            ("to".to_owned(), "79991234567".to_owned()),
            ("msg".to_owned(), sms().text()),
            ("json".to_owned(), "1".to_owned()),
        ])
    );
}

#[tokio::test]
async fn smsru_error_codes_are_mapped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"ERROR","status_code":200,"status_text":"Неправильный api_id"}"#,
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"OK","status_code":100,"sms":{"79991234567":{"status":"ERROR","status_code":207,"status_text":"На этот номер нельзя отправлять сообщения"}}}"#,
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let sender = smsru(&server);
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Misconfigured(_)), "{e:?}");
    assert_eq!(provider_error(&e).provider_code(), Some("200"));
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Rejected(_)), "{e:?}");
    assert_eq!(provider_error(&e).provider_code(), Some("207"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn smsru_temporarily_unavailable_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"ERROR","status_code":220,"status_text":"Сервис временно недоступен"}"#,
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(SMSRU_OK))
        .expect(1)
        .mount(&server)
        .await;
    smsru(&server).send(&sms()).await.unwrap();
}

#[tokio::test]
async fn smsru_500_and_timeouts_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(SMSRU_OK)
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let sender = smsru(&server);
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Unavailable(_)), "{e:?}");
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::TimedOut), "{e:?}");
}

#[tokio::test]
async fn smsru_429_with_retry_after_then_400() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let e = smsru(&server).send(&sms()).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(e.is_permanent(), "{e:?}");
}

// ---------------------------------------------------------------- webhook

#[tokio::test]
async fn webhook_sends_the_signed_json() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/sms"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    webhook(&format!("{}/hooks/sms", server.uri()))
        .send(&sms())
        .await
        .unwrap();
    let r = &server.received_requests().await.unwrap()[0];
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"phone": PHONE, "text": sms().text()})
    );
    let signature = r.headers.get("x-signature").unwrap().to_str().unwrap();
    assert_eq!(signature, webhook_signature(SECRET, &r.body));
    assert!(signature.starts_with("sha256="));
    let key = r.headers.get("idempotency-key").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(key).is_ok(), "{key}");
}

#[tokio::test]
async fn webhook_retries_500_and_timeouts_with_one_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    webhook(&server.uri()).send(&sms()).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let keys: Vec<_> = requests
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap().clone())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    // A new send is a new message: a new key.
    webhook(&server.uri()).send(&sms()).await.unwrap();
    let last = server.received_requests().await.unwrap().pop().unwrap();
    assert_ne!(last.headers.get("idempotency-key").unwrap(), &keys[0]);
}

#[tokio::test]
async fn webhook_retries_a_dropped_connection() {
    let (url, seen) = dropping_server(1, "").await;
    webhook(&url).send(&sms()).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), 2);
}

#[tokio::test]
async fn webhook_400_is_rejected_without_retry_and_401_is_misconfigured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string(format!("bad: {CODE}")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    let sender = webhook(&server.uri());
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Rejected(_)), "{e:?}");
    assert!(!format!("{e:?} {}", provider_error(&e)).contains(CODE));
    let e = sender.send(&sms()).await.unwrap_err();
    assert!(matches!(e, SmsError::Misconfigured(_)), "{e:?}");
}

#[tokio::test]
async fn webhook_retry_after_as_an_http_date() {
    let server = MockServer::start().await;
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("Retry-After", "Thu, 01 Jan 2026 00:00:01 GMT"),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let sender = WebhookSender::builder(&server.uri(), SECRET)
        .unwrap()
        .retry_policy(policy())
        .clock(Arc::new(TestClock::new(now)))
        .build()
        .unwrap();
    let started = Instant::now();
    sender.send(&sms()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
}

// ---------------------------------------------------------------- logs

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_carry_the_code_or_a_credential() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global (the only test that sets one): a thread-local default can miss
    // events whose callsites other tests' threads registered first.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("echo {CODE} {API_ID}")))
        .mount(&server)
        .await;
    let e1 = twilio(&server).send(&sms()).await.unwrap_err();
    let e2 = smsru(&server).send(&sms()).await.unwrap_err();
    let e3 = webhook(&server.uri()).send(&sms()).await.unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "{logs}");
    let errors = format!(
        "{e1:?} {e2:?} {e3:?} {} {} {}",
        provider_error(&e1),
        provider_error(&e2),
        provider_error(&e3)
    );
    for secret in [CODE, TOKEN, API_ID, std::str::from_utf8(SECRET).unwrap()] {
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
        assert!(!errors.contains(secret), "{secret} in an error: {errors}");
    }
}
