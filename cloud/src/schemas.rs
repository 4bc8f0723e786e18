//! The OpenAPI schema types the handlers name in their `#[utoipa::path]` annotations (ground
//! floor, so a domain never imports the document that lists it): mirrors of request types in
//! `sentra-protocol` (which has no utoipa) and in handler modules, carrying the limits the
//! handlers enforce, from the same constants; the error envelope; the security scheme names.
//! `openapi.rs` assembles the document from them.
#![allow(dead_code)]

use utoipa::ToSchema;

/// The security requirement of routes only an enrolled device may call: all four headers.
pub const DEVICE: &str = "device";
/// `Authorization: Bearer <api token>`.
pub const BEARER: &str = "bearer";

/// The error envelope every failure is answered with.
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    error: ErrorBody,
    /// `409 sequence_gap` and `sequence_fork` only: the seq the cloud expects next.
    expected_seq: Option<u64>,
    /// `409 sequence_fork` only: the first seq the cloud holds with other content.
    fork_seq: Option<u64>,
}

#[derive(ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: `unauthorized`, `invalid`, `not_found`, `taken`…
    code: String,
    /// For people.
    message: String,
}

/// A day, `YYYY-MM-DD`, 2000-01-01..=2099-12-31. Stated as a pattern without `format: date`:
/// a generator draws a `date` from years 0001..9999 and would throw away all but the 2000s
/// (a contract fuzzer's failed health check).
pub const DAY_PATTERN: &str = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";
/// A SHA-256 digest, lowercase hex.
pub const SHA256_PATTERN: &str = "^[0-9a-f]{64}$";
/// A UUID as PostgreSQL prints it.
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// Text for people: at least one visible character, no control characters.
pub const TEXT_PATTERN: &str =
    r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$";
/// An identifier: no control characters.
pub const ID_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]+$";

/// `POST /v1/enroll`.
#[derive(ToSchema)]
pub struct EnrollRequest {
    /// The one-time enrolment token from `sentra-cloud enrollment-token`.
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
    /// The device's ed25519 public key, hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub public_key: String,
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub hostname: String,
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub version: String,
    /// The device this box succeeds: a box of the same branch that died. It is revoked, and
    /// this box may fetch the branch's open state (`GET /v1/sync/successor`).
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub replaces: Option<String>,
}

/// `POST /v1/sync/push`: a device's outbox events (see `sentra_protocol::sync::PushBatch`).
#[derive(ToSchema)]
pub struct PushBatch {
    /// The sync protocol version; this cloud speaks 1.
    #[schema(minimum = 1, maximum = 1)]
    pub protocol: u32,
    /// Contiguous, ascending `seq`, all from the signing device.
    #[schema(value_type = Vec<Object>, max_items = 1000)]
    pub events: Vec<serde_json::Value>,
}

/// `PUT /v1/branches/{branch}/parts/{sku}`.
#[derive(ToSchema)]
pub struct PartRecord {
    /// Must equal `{sku}` in the path.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub sku: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub barcode: Option<String>,
    /// Rupiah.
    #[schema(minimum = 0)]
    pub price: i64,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub unit: String,
}

/// `PUT /v1/branches/{branch}/mechanics/{id}`.
#[derive(ToSchema)]
pub struct MechanicRecord {
    /// Must equal `{id}` in the path.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    pub active: bool,
}

/// `PUT /v1/branches/{branch}/staff/{id}`: a staff member; the PIN is hashed at once (argon2).
#[derive(ToSchema)]
pub struct StaffBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(value_type = String, pattern = "^(CASHIER|STOREKEEPER|MECHANIC_LEAD|MANAGER)$")]
    pub role: String,
    pub active: bool,
    /// 4 to 8 digits.
    #[schema(pattern = "^[0-9]{4,8}$", min_length = 4, max_length = 8)]
    pub pin: String,
}

/// `PUT /v1/branches/{branch}/tariffs/{sku}`: whole rupiah within
/// `sentra_protocol::rental`'s bounds (a test keeps the figures here equal to them).
#[derive(ToSchema)]
pub struct TariffRecord {
    /// Must equal `{sku}` in the path.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub sku: String,
    /// Rupiah per booked day, before PPN.
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub daily_rate: i64,
    /// Rupiah taken at handover and settled against the rental invoice at return.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub deposit: i64,
    /// Rupiah per day late, before PPN.
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub late_fee_per_day: i64,
}

/// `PUT /v1/branches/{branch}/assets/{id}`.
#[derive(ToSchema)]
pub struct AssetRecord {
    /// Must equal `{id}` in the path.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub id: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub sku: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub plate: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
}

/// `PUT /v1/branches/{branch}/documents/{record}/{id}`: notes, checklist items, or both.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct DocEdit {
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub notes: String,
    /// Item name (1-80 characters, no surrounding spaces) → checked; null removes the item.
    #[serde(default)]
    pub checklist: Checklist,
}
/// `POST /v1/bookings`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// The branch of the asset, for a portal token (a device books at its own branch).
    #[schema(min_length = 1, max_length = 64)]
    pub branch: Option<String>,
    #[schema(min_length = 1, max_length = 64)]
    pub asset_id: String,
    #[schema(min_length = 1, max_length = 64)]
    pub sku: String,
    #[schema(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub from: String,
    #[schema(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub to: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub customer: String,
    pub tier: Option<Tier>,
}

#[derive(ToSchema, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Platinum,
    Gold,
    Silver,
    Basic,
}

/// `POST /v1/bookings/{id}/confirm`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub payment_ref: String,
}

/// `POST /v1/bookings/{id}/complete`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub returned_at: String,
    /// Rupiah.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub damage_charge: Option<i64>,
    /// Rupiah.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub late_charge: Option<i64>,
}

/// `POST /v1/waitlist`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    #[schema(min_length = 1, max_length = 64)]
    pub sku: String,
    #[schema(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub date: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub customer: String,
    pub tier: Option<Tier>,
}

/// `POST /v1/customers/{id}/identity`: the KTP photo and a selfie, base64 JPEG.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[schema(format = Byte, min_length = 4, max_length = 1048576)]
    pub ktp_image: String,
    #[schema(format = Byte, min_length = 4, max_length = 1048576)]
    pub selfie: String,
    /// The branch whose customer record this is: required of an operator token, optional
    /// for a device (its own branch), refused for a portal token.
    #[schema(max_length = 64)]
    pub branch: Option<String>,
}

/// `PUT /v1/customers/{id}` (portal token): the portal's customer record.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalCustomerBody {
    /// The name as on the customer's KTP: 1-120 characters with a letter or digit, no
    /// control characters.
    #[schema(
        min_length = 1,
        max_length = 120,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
}

/// `POST /v1/blobs/{sha256}/uploads`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartUpload {
    /// Bytes of the whole photo.
    #[schema(minimum = 1, maximum = 268435456)]
    pub size: u64,
}

/// `POST /v1/backups`: `sentra_protocol::backup::BackupRecord`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    /// SHA-256 of the backup file.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Bytes of the file.
    #[schema(minimum = 1, maximum = 268435456)]
    pub size: u64,
    /// When it was taken (RFC 3339), from 2020 to a day ahead of the cloud's clock.
    #[schema(format = DateTime)]
    pub taken_at: String,
    /// Outbox events in it.
    #[schema(minimum = 0)]
    pub events: i64,
}

/// `PUT /v1/devices/{id}/channel`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    /// `stable`, `canary` or another channel name.
    #[schema(min_length = 1, max_length = 32, pattern = "^[a-z0-9-]{1,32}$")]
    pub channel: String,
}

/// `POST /v1/fleet/rollouts/{id}/{action}` (optional).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutActionBody {
    /// Why, for the rollout's history; required to resume a halted rollout (what was fixed).
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub reason: Option<String>,
}

/// A release version, `MAJOR.MINOR.PATCH[-PRE]` (`sentra_protocol::fleet::ReleaseVersion`).
pub const VERSION_PATTERN: &str = r"^[0-9]{1,18}\.[0-9]{1,18}\.[0-9]{1,18}(-[0-9A-Za-z.-]+)?$";

/// `POST /v1/devices/heartbeat` (see `sentra_protocol::fleet::Heartbeat`).
#[derive(ToSchema)]
pub struct Heartbeat {
    #[schema(
        max_length = 64,
        pattern = r"^[0-9]{1,18}\.[0-9]{1,18}\.[0-9]{1,18}(-[0-9A-Za-z.-]+)?$"
    )]
    pub version: String,
    pub uptime_secs: u64,
    pub update: UpdateReport,
    #[schema(required = false)]
    pub healthy: bool,
    #[schema(required = false)]
    pub backlog: Backlog,
    #[schema(required = false)]
    pub parked: u64,
    #[schema(required = false)]
    pub skew_ms: i64,
    #[schema(required = false)]
    pub resources: Resources,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub printer: Option<String>,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub scanner: Option<String>,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub broker: Option<String>,
    pub paired_clients: Option<u64>,
    /// The key id releases are verified with, or `none` (updates off).
    #[schema(max_length = 16, pattern = r"^([0-9a-f]{16}|none)$")]
    pub release_key: Option<String>,
    pub backup: Option<BackupStatus>,
    pub download: Option<DownloadProgress>,
}

/// How far the release download is (while `update.state` is `downloading`); `received_bytes`
/// is at most `total_bytes`.
#[derive(ToSchema)]
pub struct DownloadProgress {
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub received_bytes: u64,
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub total_bytes: u64,
}

/// The box's last good backup.
#[derive(ToSchema)]
pub struct BackupStatus {
    /// Seconds since it was made; null: never.
    pub age_secs: Option<u64>,
}

#[derive(ToSchema)]
pub struct UpdateReport {
    pub state: UpdateState,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub target_version: Option<String>,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub reason: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
pub enum UpdateState {
    Idle,
    Downloading,
    Installing,
    Restarting,
    Success,
    Failure,
    RolledBack,
}

/// Disk (the data directory's file system) and memory, in bytes.
#[derive(ToSchema)]
pub struct Resources {
    pub disk_total_bytes: Option<u64>,
    pub disk_free_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub mem_available_bytes: Option<u64>,
    pub store_bytes: Option<u64>,
}

#[derive(ToSchema)]
pub struct Backlog {
    pub count: u64,
    pub bytes: u64,
    pub oldest_age_secs: Option<u64>,
}

/// `POST /v1/payments/webhook` (verified by its HMAC header first).
#[derive(ToSchema)]
pub struct Webhook {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub event_id: String,
    #[schema(
        rename = "type",
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub kind: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    pub booking_id: String,
    /// Required for `payment.authorized`; empty or a reference otherwise.
    #[schema(
        max_length = 128,
        pattern = r"^$|^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub payment_ref: String,
}

/// Checklist items of a document edit: 1-100 a request.
#[derive(Default, serde::Deserialize)]
pub struct Checklist;

impl utoipa::PartialSchema for Checklist {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
        };
        let value = OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)))
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)));
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .min_properties(Some(1))
            .max_properties(Some(sentra_protocol::doc::MAX_CHECKLIST_ITEMS))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .min_length(Some(1))
                    .max_length(Some(sentra_protocol::doc::MAX_ITEM_CHARS))
                    .pattern(Some(r"^[^\s\x00](.*[^\s\x00])?$")),
            ))
            .additional_properties(Some(AdditionalProperties::RefOr(
                utoipa::openapi::RefOr::T(value.into()),
            )))
            .into()
    }
}

impl ToSchema for Checklist {}

/// `PATCH /v1/branches/{branch}/{customers|vehicles}/{id}`: field name → value, at least one.
pub struct Fields;

impl utoipa::PartialSchema for Fields {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .min_properties(Some(1))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for Fields {}
