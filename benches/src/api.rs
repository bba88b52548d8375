//! Logging a user in through a running server's HTTP API, as the HTTP
//! benches (`referral-load`, `http-wrk`, `export-scale`) set up their users:
//! `POST /api/auth/code`, the code from the dev outbox (`GET /api/dev/sms`,
//! `REFERRAL_DEV_OUTBOX=1`), `POST /api/auth/verify`.

use serde::Deserialize;
use serde_json::json;

/// What a log-in answered: the access token and the user's invite code.
#[derive(Debug, Deserialize)]
pub struct Login {
    /// The bearer token of the user.
    pub access_token: String,
    /// The user's profile, as far as the benches read it.
    pub profile: LoginProfile,
}

/// The part of a log-in's profile the benches read.
#[derive(Debug, Deserialize)]
pub struct LoginProfile {
    /// The user's own invite code.
    pub invite_code: String,
}

#[derive(Deserialize)]
struct DevSms {
    code: String,
}

/// Logs `phone` (international form, `+` first) in through the API of the
/// server at `base`.
///
/// # Errors
/// A message naming the step that failed: the code request not answered
/// 202, the dev outbox off or failing, or verify refused.
pub async fn login(http: &reqwest::Client, base: &str, phone: &str) -> Result<Login, String> {
    let status = http
        .post(format!("{base}/api/auth/code"))
        .json(&json!({ "phone": phone }))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .status();
    if status != reqwest::StatusCode::ACCEPTED {
        return Err(format!("code for {phone}: {status}"));
    }
    let sms: DevSms = http
        .get(format!(
            "{base}/api/dev/sms?phone={}",
            phone.replace('+', "%2B")
        ))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("dev outbox (is REFERRAL_DEV_OUTBOX on?): {e}"))?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    http.post(format!("{base}/api/auth/verify"))
        .json(&json!({ "phone": phone, "code": sms.code }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("verify {phone}: {e}"))?
        .json()
        .await
        .map_err(|e| e.to_string())
}
