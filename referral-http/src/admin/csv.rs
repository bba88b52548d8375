//! The CSV exports, streamed: [`CsvExport`] pulls one batch of rows from the
//! service at a time ([`referral_core::service::EXPORT_BATCH`] rows) and
//! hands it out as one chunk of the body, so memory stays one batch
//! whatever the number of rows. RFC 4180: a header row first, CRLF line
//! ends, a field quoted when it holds a comma, a quote or a line break
//! (quotes doubled), written by the `csv` crate.

use std::fmt;

use referral_core::{ReferralCursor, ReferralExportRow, RewardCursor, RewardExportRow, UserId};

use crate::api::Api;
use crate::dto::timestamp;
use crate::error::ApiError;

/// The columns of `referrals.csv`.
pub const REFERRAL_COLUMNS: [&str; 6] = [
    "referrer_id",
    "referrer_phone",
    "referee_id",
    "referee_phone",
    "invite_code",
    "activated_at",
];

/// The columns of `rewards.csv`.
pub const REWARD_COLUMNS: [&str; 12] = [
    "id",
    "user_id",
    "phone",
    "kind",
    "amount",
    "currency",
    "status",
    "conversion_id",
    "created_at",
    "approved_at",
    "paid_at",
    "payout_ref",
];

/// `text/csv; charset=utf-8; header=present`: the `Content-Type` of an export.
pub const CSV: &str = "text/csv; charset=utf-8; header=present";

/// Which export, and where its next batch starts.
#[derive(Debug)]
enum Next {
    Referrals(ReferralCursor),
    Rewards(RewardCursor),
}

/// An export being streamed: the body of a CSV answer, pulled chunk by
/// chunk with [`CsvExport::next_chunk`] (a framework crate turns it into its
/// streaming body). The first chunk (the header row and the first batch)
/// was read before the answer started, so an error there is an ordinary
/// error answer; an error on a later batch ends the body early (the
/// framework then cuts the connection, so a client never takes a short
/// export for a whole one), and is logged.
pub struct CsvExport {
    api: Api,
    operator: UserId,
    name: &'static str,
    ready: Option<Vec<u8>>,
    next: Option<Next>,
    rows: u64,
}

impl fmt::Debug for CsvExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsvExport")
            .field("name", &self.name)
            .field("operator", &self.operator)
            .field("rows", &self.rows)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl CsvExport {
    /// The export's file name (`referrals.csv`, `rewards.csv`), for
    /// `Content-Disposition`.
    #[must_use]
    pub fn file_name(&self) -> &'static str {
        self.name
    }

    /// The headers of the answer besides its status (200):
    /// `Content-Type` ([`CSV`]), `Content-Disposition` (an attachment with
    /// the file name) and `Cache-Control: no-store`.
    #[must_use]
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("content-type".to_owned(), CSV.to_owned()),
            (
                "content-disposition".to_owned(),
                format!("attachment; filename=\"{}\"", self.name),
            ),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ]
    }

    /// The referrals export, its first batch read.
    pub(crate) async fn referrals(api: &Api, operator: UserId) -> Result<Self, ApiError> {
        let mut export = Self::new(api, operator, "referrals.csv");
        let mut chunk = Writer::new(&REFERRAL_COLUMNS);
        export.referral_batch(&mut chunk, None).await?;
        export.ready = Some(chunk.finish()?);
        Ok(export)
    }

    /// The rewards export, its first batch read.
    pub(crate) async fn rewards(api: &Api, operator: UserId) -> Result<Self, ApiError> {
        let mut export = Self::new(api, operator, "rewards.csv");
        let mut chunk = Writer::new(&REWARD_COLUMNS);
        export.reward_batch(&mut chunk, None).await?;
        export.ready = Some(chunk.finish()?);
        Ok(export)
    }

    fn new(api: &Api, operator: UserId, name: &'static str) -> Self {
        tracing::info!(operator = %operator, export = name, "an operator started an export");
        Self {
            api: api.clone(),
            operator,
            name,
            ready: None,
            next: None,
            rows: 0,
        }
    }

    /// The next chunk of the body; `None` after the last one. After an
    /// `Err` the body must end (the export is cut short).
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, ApiError>> {
        if let Some(chunk) = self.ready.take() {
            return Some(Ok(chunk));
        }
        let next = self.next.take()?;
        let mut chunk = Writer::new(&[]);
        let read = match next {
            Next::Referrals(after) => self.referral_batch(&mut chunk, Some(after)).await,
            Next::Rewards(after) => self.reward_batch(&mut chunk, Some(after)).await,
        };
        match read.and_then(|()| chunk.finish()) {
            Ok(bytes) => Some(Ok(bytes)),
            Err(e) => {
                tracing::error!(export = self.name, rows = self.rows, error = %e,
                    "an export was cut short");
                self.next = None;
                Some(Err(e))
            }
        }
    }

    async fn referral_batch(
        &mut self,
        out: &mut Writer,
        after: Option<ReferralCursor>,
    ) -> Result<(), ApiError> {
        let batch = self.api.service().export_referrals(after).await?;
        for row in &batch.rows {
            out.referral(row)?;
        }
        self.advance(batch.rows.len(), batch.next.map(Next::Referrals));
        Ok(())
    }

    async fn reward_batch(
        &mut self,
        out: &mut Writer,
        after: Option<RewardCursor>,
    ) -> Result<(), ApiError> {
        let batch = self.api.service().export_rewards(after).await?;
        for row in &batch.rows {
            out.reward(row)?;
        }
        self.advance(batch.rows.len(), batch.next.map(Next::Rewards));
        Ok(())
    }

    fn advance(&mut self, rows: usize, next: Option<Next>) {
        self.rows += rows as u64;
        if next.is_none() {
            tracing::info!(operator = %self.operator, export = self.name, rows = self.rows,
                "an export was read to its end");
        }
        self.next = next;
    }
}

/// One chunk of CSV being written.
struct Writer(csv::Writer<Vec<u8>>);

impl Writer {
    /// A chunk, starting with `header` (none when empty).
    fn new(header: &[&str]) -> Self {
        let mut w = Self(
            csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new()),
        );
        if !header.is_empty() {
            // Writing into memory does not fail.
            let _ = w.0.write_record(header);
        }
        w
    }

    fn record<const N: usize>(&mut self, fields: [&str; N]) -> Result<(), ApiError> {
        self.0.write_record(fields).map_err(|e| {
            tracing::error!(error = %e, "a CSV row could not be written");
            ApiError::internal()
        })
    }

    fn referral(&mut self, r: &ReferralExportRow) -> Result<(), ApiError> {
        self.record([
            &r.referrer.to_string(),
            &r.referrer_phone.to_string(),
            &r.referee.to_string(),
            &r.referee_phone.to_string(),
            r.invite_code.as_str(),
            &timestamp(r.activated_at),
        ])
    }

    fn reward(&mut self, row: &RewardExportRow) -> Result<(), ApiError> {
        let r = &row.reward;
        let opt = |t: Option<String>| t.unwrap_or_default();
        self.record([
            &r.id.to_string(),
            &r.user.to_string(),
            &row.phone.to_string(),
            r.kind.as_str(),
            &r.amount.amount().to_string(),
            &r.amount.currency().to_string(),
            r.status.as_str(),
            &opt(r.conversion.as_ref().map(ToString::to_string)),
            &timestamp(r.created_at),
            &opt(r.approved_at.map(timestamp)),
            &opt(r.paid_at.map(timestamp)),
            &opt(r.payout_ref.as_ref().map(ToString::to_string)),
        ])
    }

    fn finish(self) -> Result<Vec<u8>, ApiError> {
        self.0.into_inner().map_err(|e| {
            tracing::error!(error = %e, "a CSV chunk could not be written");
            ApiError::internal()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{CsvExport, Writer};

    /// What Python's `csv` module reads back from `body`: one JSON array of
    /// rows.
    fn python_rows(body: &[u8]) -> serde_json::Value {
        use std::io::Write as _;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import csv, io, json, sys\n\
                 text = sys.stdin.buffer.read().decode('utf-8')\n\
                 print(json.dumps(list(csv.reader(io.StringIO(text, newline='')))))",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "python3 failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A field with a comma, a quote, a line break, a CR or nothing at all
    /// comes back from Python's `csv` reader exactly as written.
    #[test]
    fn fields_round_trip_through_python_csv() {
        let awkward = [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r\nlf",
            "",
            " spaced ",
            "\"",
            "=1+2",
        ];
        let mut w = Writer::new(&["x", "y"]);
        for field in awkward {
            w.record([field, "end"]).unwrap();
        }
        let body = w.finish().unwrap();
        assert!(body.starts_with(b"x,y\r\n"), "CRLF ends");
        let mut expected = vec![serde_json::json!(["x", "y"])];
        expected.extend(awkward.iter().map(|f| serde_json::json!([f, "end"])));
        assert_eq!(python_rows(&body), serde_json::Value::Array(expected));
    }

    /// A chunk after the first has no header row: chunks concatenate into
    /// one file.
    #[test]
    fn later_chunks_have_no_header() {
        let mut first = Writer::new(&["a"]);
        first.record(["1"]).unwrap();
        let mut second = Writer::new(&[]);
        second.record(["2,3"]).unwrap();
        let mut body = first.finish().unwrap();
        body.extend(second.finish().unwrap());
        assert_eq!(
            python_rows(&body),
            serde_json::json!([["a"], ["1"], ["2,3"]])
        );
    }

    /// An export of more rows than one store batch comes out as one chunk
    /// per batch (the header with the first), never as one body: with
    /// `EXPORT_BATCH + 1` referrals, two chunks, the second holding one row.
    #[tokio::test]
    async fn an_export_is_one_chunk_per_batch() {
        use referral_core::service::EXPORT_BATCH;
        use referral_core::{PhoneNumber, ReferralService, StubSmsSender};
        use referral_memory::MemoryStore;
        use std::sync::Arc;

        let store = Arc::new(MemoryStore::new());
        let sms = Arc::new(StubSmsSender::new());
        let service = ReferralService::builder(Arc::clone(&store), Arc::clone(&sms) as _)
            .operators(store)
            .build()
            .unwrap();
        let login = |i: usize| {
            let (service, sms) = (&service, &sms);
            async move {
                let phone: PhoneNumber = format!("+7999{i:07}").parse().unwrap();
                service.request_code(&phone).await.unwrap();
                let code = sms.latest(&phone).unwrap().code;
                service.verify_code(&phone, &code).await.unwrap().user
            }
        };
        let referrer = login(0).await;
        for i in 1..=EXPORT_BATCH + 1 {
            let referee = login(i).await;
            service
                .activate_invite(referee.id, &referrer.invite_code)
                .await
                .unwrap();
        }
        let secret: crate::JwtSecret = "a secret of at least thirty-two bytes".parse().unwrap();
        let auth = crate::JwtAuth::new(
            &secret,
            std::time::Duration::from_secs(60),
            Arc::new(referral_core::SystemClock),
        );
        let api = crate::Api::builder(service, auth).build();
        let mut export = CsvExport::referrals(&api, referrer.id).await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = export.next_chunk().await {
            chunks.push(chunk.unwrap());
        }
        let lines = |c: &[u8]| c.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(chunks.len(), 2);
        assert_eq!(lines(&chunks[0]), EXPORT_BATCH + 1, "header and one batch");
        assert_eq!(lines(&chunks[1]), 1);
        let rows = python_rows(&chunks.concat());
        assert_eq!(rows.as_array().map(Vec::len), Some(EXPORT_BATCH + 2));
    }
}
