//! The existing app end to end, in process: a phone login through the
//! referral routes opens the app's own cookie session, which the app's
//! routes and the referral routes both recognise; logging out ends it.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    let body = match body {
        Some(json) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let set_cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        set_cookie,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test]
async fn referral_login_opens_the_apps_session() {
    let app = referral_existing_app::app(referral_existing_app::state());
    let phone = "+79991234567";
    let (status, ..) = call(
        &app,
        "POST",
        "/referral/api/auth/code",
        None,
        Some(json!({ "phone": phone })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, _, sms, _) = call(
        &app,
        "GET",
        "/referral/api/dev/sms?phone=%2B79991234567",
        None,
        None,
    )
    .await;
    let code = sms["code"].as_str().expect("a code").to_owned();
    let (status, cookie, login, _) = call(
        &app,
        "POST",
        "/referral/api/auth/verify",
        None,
        Some(json!({ "phone": phone, "code": code })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert!(
        login.get("access_token").is_none(),
        "no bearer token: {login}"
    );
    assert_eq!(login["new_user"], true);
    let cookie = cookie.expect("a Set-Cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let sid = cookie.split(';').next().unwrap().to_owned();

    // The referral routes and the app's own route know the session.
    let (status, _, profile, _) =
        call(&app, "GET", "/referral/api/profile", Some(&sid), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["phone"], phone);
    let (status, _, _, me) = call(&app, "GET", "/me", Some(&sid), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        format!("signed in as {}", profile["id"].as_str().unwrap())
    );

    // No session, a forged one, a bearer token: 401 in the envelope.
    for cookie in [None, Some("sid=forged")] {
        let (status, _, body, _) = call(&app, "GET", "/referral/api/profile", cookie, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, ..) = call(&app, "GET", "/me", cookie, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // The app's logout ends the session for the referral routes too.
    let (status, ..) = call(&app, "POST", "/logout", Some(&sid), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = call(&app, "GET", "/referral/api/profile", Some(&sid), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The app's own routes and fallback are untouched by the mount.
    let (status, _, _, text) = call(&app, "GET", "/", None, None).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "an existing app"));
    let (status, _, body, _) = call(&app, "GET", "/nope", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}
